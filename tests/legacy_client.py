"""Drive a service with python-pfconclient 3.3.0's own ``Client`` methods (the legacy API).

Run as a script with that client first on ``PYTHONPATH`` (it cannot be installed beside
4.0.0): reads ``{"url", "user", "password", "initial_wait", "calls": [[method, *args], ...]}``
as JSON on stdin, calls each method in turn and prints ``{"client": {"version", "file"},
"results": [...]}`` as JSON on stdout. An argument ``{"base64": ...}`` is passed as bytes, a
bytes result comes back as one; a refused request is ``{"error": code, "message": body}``.
The client's own progress lines go to stderr.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from importlib.metadata import version
from typing import Any

import pfconclient
from pfconclient.client import Client
from pfconclient.exceptions import PfconRequestException


def decoded(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    return value


def encoded(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def main() -> None:
    spec = json.load(sys.stdin)
    results = []
    with contextlib.redirect_stdout(sys.stderr):
        token = Client.get_auth_token(spec["url"] + "auth-token/", spec["user"], spec["password"])
        client = Client(spec["url"], token)
        client.initial_wait = spec["initial_wait"]
        for method, *args in spec["calls"]:
            try:
                results.append(encoded(getattr(client, method)(*map(decoded, args))))
            except PfconRequestException as exc:
                results.append({"error": exc.code, "message": str(exc)})
    client_info = {"version": version("python-pfconclient"), "file": pfconclient.__file__}
    print(json.dumps({"client": client_info, "results": results}))


if __name__ == "__main__":
    main()
