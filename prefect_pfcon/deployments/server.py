"""A local Prefect server (SQLite), run as a child process of the embedded default
(``prefect server start`` through ``prefect_server``)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx


PR_SET_PDEATHSIG = 1


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
        """Start the server process, logging to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "prefect_pfcon.deployments.prefect_server",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                preexec_fn=_die_with_parent,
            )

    async def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until the server answers its health check."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"Prefect server exited; see {self.log_path}")
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
