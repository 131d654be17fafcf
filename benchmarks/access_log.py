"""Requests a uvicorn server served, counted from its access log.

The embedded Prefect server writes uvicorn's access log to its log file (the state dir's
``prefect-server.log``) when started with ``PREFECT_SERVER_LOGGING_LEVEL=INFO``: one line per
answered HTTP request (``uvicorn.access``) and per accepted websocket (``uvicorn.error``),
logged by the server itself.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r'uvicorn\.(?:access|error) - \S+ - '
                  r'"(?:(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+"|WebSocket (?P<ws>\S+)" \[accepted\])')
IDENTIFIER = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def endpoint(method: str, path: str) -> str:
    """``METHOD /path`` with ids and the query left out, to group requests."""
    return f"{method} {IDENTIFIER.sub('/{id}', path.split('?', 1)[0])}"


class AccessLog:
    """A server's access log, read from a byte offset on."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """The log's current end, to count from."""
        return self.path.stat().st_size

    def since(self, offset: int) -> Counter[str]:
        """Requests logged after ``offset``, by endpoint (websockets as ``WS /path``)."""
        counts: Counter[str] = Counter()
        with self.path.open("rb") as log:
            log.seek(offset)
            for line in log.read().decode(errors="replace").splitlines():
                if match := LINE.search(line):
                    if match["ws"]:
                        counts[endpoint("WS", match["ws"])] += 1
                    else:
                        counts[endpoint(match["method"], match["path"])] += 1
        return counts


def http_requests(counts: Counter[str]) -> int:
    """The HTTP requests among ``counts`` (websocket connections left out)."""
    return sum(value for name, value in counts.items() if not name.startswith("WS "))
