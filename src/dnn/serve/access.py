"""Who may use the server: the ``Host`` check, and the token a server bound beyond loopback requires.

``Host`` (DNS rebinding): a web page the user visits can make its own name resolve to 127.0.0.1 and then call
the API as if it were the page's own site; the browser then sends that name as ``Host``. So a request is answered
only if its ``Host`` names this server: the address the client connected to, ``localhost``, ``127.0.0.1``,
``::1``, or a name given with ``--allow-host`` (the port is not compared). Anything else is 400 before the request
is read. (A request without ``Host``, which no browser sends, passes.)

The token: when ``token`` is set (``dnn serve --token``, or generated when bound beyond loopback), every request
but the page, its static files and the API schema (``/``, ``/static/…``, ``/docs``, ``/openapi.json``: nothing of
the runs) needs ``Authorization: Bearer <token>``, else 401. The page reads the token from its address
(``http://host:port/#token=…``: a fragment, never sent to the server or written to a log), keeps it for the tab,
and sends it with every request; the report, opened as a page, carries it as ``?token=`` (its only reader is the
server whose log already printed it). Tokens are compared in constant time and never written in an answer.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs

from dnn.errors import ConfigError
from dnn.serve.middleware import refuse

__all__ = ["LOOPBACK_NAMES", "Access", "check_token", "is_loopback", "new_token"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PUBLIC = frozenset({"/", "/docs", "/openapi.json", "/favicon.ico"})
REPORT = re.compile(r"^/runs/[^/]+/report$")
MIN_TOKEN = 16
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # what a bearer header and a URL fragment carry unchanged


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """A token given by the user, or a one-line ConfigError (too short to be secret, or not header-safe)."""
    if len(token) < MIN_TOKEN or not TOKEN_CHARS.match(token):
        raise ConfigError(f"--token must be at least {MIN_TOKEN} characters of letters, digits and ._~+/=- (got "
                          f"{len(token)} characters); leave it out and dnn serve makes one")  # fmt: skip
    return token


def host_name(value: str) -> str:
    """The name of a ``Host`` header, lower case, without its port or brackets: ``[::1]:8000`` → ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class Access:
    """ASGI middleware: the ``Host`` check, then the token (see the module docstring)."""

    def __init__(self, app, allow_hosts: Iterable[str] = (), token: str | None = None):
        self.app = app
        self.allowed = LOOPBACK_NAMES | {host_name(h) for h in allow_hosts}
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host")
        if host is not None:
            name = host_name(host.decode("latin-1"))
            server = scope.get("server")
            if name not in self.allowed and (server is None or name != host_name(str(server[0]))):
                shown = host.decode("latin-1")[:100]
                return await refuse(
                    send,
                    400,
                    f"Host {shown!r} is not this server's name: dnn serve answers "
                    "only requests to its own address (start it with --allow-host NAME to add one)",
                )
        if self.token is not None and not self._public(scope) and not self._authorized(scope, headers):
            return await refuse(send, 401, "this server needs its token: send 'Authorization: Bearer <token>', or "
                                 "open the address with #token=… that dnn serve printed at start",
                                 [(b"www-authenticate", b'Bearer realm="dnn serve"')])  # fmt: skip
        return await self.app(scope, receive, send)

    @staticmethod
    def _public(scope) -> bool:
        path = scope.get("path", "")
        return path in PUBLIC or path.startswith("/static/")

    def _authorized(self, scope, headers: dict[bytes, bytes]) -> bool:
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            return True
        if scope.get("method") == "GET" and REPORT.match(scope.get("path", "")):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return any(hmac.compare_digest(t.encode("latin-1"), self.token) for t in query.get("token", [])[:1])
        return False
