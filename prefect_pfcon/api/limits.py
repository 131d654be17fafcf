"""Request size limits: a body over its limit is refused with 413 before it is read."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "The data value transmitted exceeds the capacity limit."


class BodySizeLimit:
    """ASGI middleware: 413 for a body larger than ``max_form_bytes`` (urlencoded and other
    bodies, read whole into memory) or ``max_upload_bytes`` (multipart, spooled to disk)."""

    def __init__(self, app: ASGIApp, max_form_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_form_bytes = max_form_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.max_upload_bytes if multipart else self.max_form_bytes
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, send)
        except BodyTooLarge:
            await _refuse(send)


class BodyTooLarge(Exception):
    """A body (sent without a length, or longer than it said) went over its limit."""


async def _refuse(send: Send) -> None:
    body = json.dumps({"message": TOO_LARGE}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
