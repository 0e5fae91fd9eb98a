"""A request body over the limit is refused with 413 — counted as it arrives, so neither a false Content-Length
nor a chunked upload gets more than ``max_bytes`` into the server — and a body that does not arrive within
``timeout_s`` is refused with 408, so a client trickling its body cannot hold a connection and a request open. A
body that is not UTF-8 (what JSON must be) is refused with 422 before anything parses it.

(The HTTP server has no such timeout of its own: h11 waits for a body as long as the client likes. The headers,
which arrive before any middleware runs, are timed by the server's protocol: see :mod:`dnn.serve.server`.)
"""

from __future__ import annotations

import asyncio
import json

__all__ = ["BodyLimit", "refuse"]


class BodyLimit:
    """ASGI middleware: read the whole body (at most ``max_bytes``, within ``timeout_s`` seconds) before the app
    sees the request.

    A declared ``Content-Length`` over the limit is refused before reading; otherwise the body is read chunk by
    chunk and refused as soon as the count passes the limit, or once ``timeout_s`` has passed since the headers
    (408). Both answers close the connection. The app then receives the buffered body.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float = 30.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, 413, self._too_big(declared.decode("latin-1")))
        messages: list[dict] = []
        try:
            outcome = await asyncio.wait_for(self._read(receive, messages), self.timeout_s)
        except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on; not yet in 3.10
            size = sum(len(m.get("body", b"")) for m in messages)
            detail = (f"the request body was not received within {self.timeout_s:g} s ({size} bytes arrived); "
                      "send it at once")  # fmt: skip
            return await self._refuse(send, 408, detail)
        if outcome == "gone":  # the client went away
            return None
        if outcome is not None:
            return await self._refuse(send, 413, self._too_big(outcome))
        body = b"".join(m.get("body", b"") for m in messages)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            detail = f"the request body is not UTF-8 (byte 0x{body[err.start]:02x} at {err.start}); send JSON in UTF-8"
            return await self._refuse(send, 422, detail)
        del body

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    async def _read(self, receive, messages: list[dict]) -> str | None:
        """Append the body's messages to ``messages``; None once all are read, "gone" if the client went away,
        else the size read so far (over the limit)."""
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return "gone"
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return f"more than {size}"
            messages.append(message)
            if not message.get("more_body", False):
                return None

    def _too_big(self, size: str) -> str:
        return f"request body of {size} bytes is over the limit of {self.max_bytes} bytes (--max-body-bytes)"

    async def _refuse(self, send, status: int, detail: str) -> None:
        await refuse(send, status, detail)


async def refuse(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer ``status`` with ``{"detail": detail}`` and close the connection (what is left of the body unread)."""
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), *(headers or [])]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
