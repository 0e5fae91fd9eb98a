"""A request body over the limit is refused with 413 — counted as it arrives, so neither a false Content-Length
nor a chunked upload gets more than ``max_bytes`` into the server."""

from __future__ import annotations

import json

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware: read the whole body (at most ``max_bytes``) before the app sees the request.

    A declared ``Content-Length`` over the limit is refused before reading; otherwise the body is read chunk by
    chunk and refused as soon as the count passes the limit. The app then receives the buffered body.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, declared.decode("latin-1"))
        messages, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(send, f"more than {size}")
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send, size: str) -> None:
        detail = f"request body of {size} bytes is over the limit of {self.max_bytes} bytes (--max-body-bytes)"
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
