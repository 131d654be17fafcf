"""A local Prefect server (SQLite), run as a child process of the embedded default
(``prefect server start`` through ``prefect_server``).

It is ours alone: it is started only on a free port, and counts as ready only once the
child itself listens there and answers, so ``up`` never talks to another process's server.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1
LOOPBACK = "127.0.0.1"
PORT_WAIT_SECONDS = 5.0  # a previous server of ours may still be closing after a crash
TCP_LISTEN = "0A"  # socket state in /proc/net/tcp
# concurrency leases kept in files under PREFECT_HOME (Prefect keeps them in memory by default):
# a restart then keeps the slots of running plugins (and their expiry), never leaks them
LEASE_STORAGE = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"
FILE_LEASES = "prefect.server.concurrency.lease_storage.filesystem"


class PrefectServerError(RuntimeError):
    """The local Prefect server cannot be started, or stopped before it was ready."""


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by ``kill -9``."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalPrefectServer:
    """``prefect server start`` on loopback, started and stopped by us."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """The server's API URL (what ``PREFECT_API_URL`` should be)."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """The Prefect UI."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server process, logging to ``log_path``; refuse if the port is taken.

        The child has its own session, so a terminal's Ctrl-C reaches only ``up``, which
        stops the server last; it still gets SIGTERM if ``up`` dies.
        """
        if not _port_free_soon(self.port, PORT_WAIT_SECONDS):
            raise PrefectServerError(
                f"port {self.port} on {LOOPBACK} is already in use by another process; "
                "stop it or choose another --prefect-port"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "prefect_pfcon.embedded.prefect_server",
                   "--host", LOOPBACK, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={LEASE_STORAGE: FILE_LEASES, **os.environ},
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )

    async def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until our child listens on the port and answers its health check."""
        assert self._process is not None, "start() first"
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if (code := self._process.poll()) is not None:
                    raise PrefectServerError(
                        f"the Prefect server exited (code {code}): {_last_line(self.log_path)} "
                        f"(see {self.log_path})"
                    )
                if _listens(self._process.pid, self.port):
                    try:
                        if (await client.get(f"{self.api_url}/health", timeout=2)).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.3)
        raise TimeoutError(f"Prefect server not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        """Stop the server process we started."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _port_free_soon(port: int, seconds: float) -> bool:
    """Whether the server could bind ``port`` on loopback now or within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((LOOPBACK, port))
                return True
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on loopback ``port`` (Linux)."""
    address = f"{int.from_bytes(socket.inet_aton(LOOPBACK), sys.byteorder):08X}:{port:04X}"
    with open("/proc/net/tcp") as table:
        inodes = {
            fields[9] for line in table
            if len(fields := line.split()) > 9 and fields[1] == address and fields[3] == TCP_LISTEN
        }
    if not inodes:
        return False
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _last_line(path: Path, tail_bytes: int = 4096) -> str:
    with path.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - tail_bytes))
        lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
