"""The local Prefect server (SQLite) of the embedded default: Prefect's own server app (API,
UI and background services, as ``prefect server start`` builds it), served by uvicorn in a
thread of this process.

In-process rather than a child process: Prefect's code and its imports are held once (the
whole service holds about 130 MB less, ``benchmarks/README.md``), and the server lives and
dies with the service (a ``kill -9`` leaves nothing behind). It has its own thread and event
loop, so the API's and the runner's event loops never wait on it; all three share one
interpreter lock, which costs throughput when many jobs run at once.

It is ours alone: it is started only on a free port, and counts as ready only once its own
uvicorn listens there and answers, so ``up`` never talks to another process's server.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time

import httpx
import uvicorn

LOOPBACK = "127.0.0.1"
PORT_WAIT_SECONDS = 5.0  # a previous server of ours may still be closing after a crash
STOP_SECONDS = 20.0


class PrefectServerError(RuntimeError):
    """The local Prefect server cannot be started, or stopped before it was ready."""


class LocalPrefectServer:
    """Prefect's server app on loopback ``port``, served in a thread of this process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def api_url(self) -> str:
        """The server's API URL (what ``PREFECT_API_URL`` should be)."""
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Build Prefect's app and serve it in the ``prefect-server`` thread; refuse if the
        port is taken.

        Its logs go through Prefect's logging configuration (``PREFECT_SERVER_LOGGING_LEVEL``,
        to this process's standard error), its access log on ``uvicorn.access`` included.
        """
        if not _port_free_soon(self.port, PORT_WAIT_SECONDS):
            raise PrefectServerError(
                f"port {self.port} on {LOOPBACK} is already in use by another process; "
                "stop it or choose another --prefect-port"
            )
        # Prefect's server modules are imported only here: a service on an external server
        # (PREFECT_API_URL) never holds them
        from prefect.server.api.server import create_app
        from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT

        from prefect_pfcon.embedded.prefect_server import use_queueing_sqlite

        use_queueing_sqlite()

        config = uvicorn.Config(
            create_app(final=True), host=LOOPBACK, port=self.port,
            timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
            log_config=None,  # Prefect's own (``setup_logging``), as create_app left it
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="prefect-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        try:
            self._server.run()
        except BaseException as failure:  # uvicorn ends a failed bind with SystemExit
            self._failure = failure

    async def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until our server listens on the port and answers its health check."""
        assert self._server is not None and self._thread is not None, "start() first"
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if not self._thread.is_alive():
                    reason = f" ({self._failure!r})" if self._failure else ""
                    raise PrefectServerError(
                        f"the Prefect server stopped before it was ready{reason}; see the log above"
                    )
                if self._server.started:
                    try:
                        if (await client.get(f"{self.api_url}/health", timeout=2)).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"Prefect server not ready after {timeout:.0f} s")

    def stop(self) -> None:
        """Stop serving (requests in progress finish, Prefect's services stop) and wait for it."""
        if self._server is None or self._thread is None or not self._thread.is_alive():
            return
        self._server.should_exit = True
        self._thread.join(timeout=STOP_SECONDS)


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
