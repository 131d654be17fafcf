"""A client of a running service's operator routes (``/api/v1/ops/...``), for the command line.

It logs in as a pfcon client does (``POST /api/v1/auth-token/``) with ``PFCON_USER`` and
``PFCON_PASSWORD``, at ``PFCON_URL`` (default ``http://127.0.0.1:30006``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:30006"
TIMEOUT_SECONDS = 30.0


class OpsClient:
    """Authenticated GETs against one service."""

    def __init__(self, url: str | None = None, user: str | None = None, password: str | None = None) -> None:
        self._url = (url or os.environ.get("PFCON_URL") or DEFAULT_URL).rstrip("/")
        self._user = user or os.environ.get("PFCON_USER", "pfcon")
        self._password = password or os.environ.get("PFCON_PASSWORD", "pfcon1234")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON answer of ``GET <url><path>``; ``httpx.HTTPStatusError`` on an error answer."""
        with httpx.Client(base_url=self._url, timeout=TIMEOUT_SECONDS) as client:
            login = client.post("/api/v1/auth-token/", json={"pfcon_user": self._user,
                                                            "pfcon_password": self._password})
            login.raise_for_status()
            answer = client.get(path, params={key: value for key, value in (params or {}).items() if value is not None},
                                headers={"Authorization": f"Bearer {login.json()['token']}"})
            answer.raise_for_status()
            return answer.json()

    def get_or_exit(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """``get``, exiting the command with a one-line message if there is no good answer."""
        try:
            return self.get(path, params)
        except httpx.HTTPStatusError as exc:
            sys.exit(f"prefect-pfcon: {exc.response.status_code} {exc.response.text}")
        except httpx.HTTPError as exc:
            sys.exit(f"prefect-pfcon: cannot reach the service: {exc}")
