"""Running the app: ``dnn serve`` in the foreground, or a server in a background thread (tests, notebooks).

Both run uvicorn with the connection limits of :class:`~dnn.serve.limits.ServeLimits` (:func:`uvicorn_config`):

- at most ``max_connections`` connections open at once, so a flood of connections cannot use up the process's
  file descriptors: one more closes the connection idle the longest — waiting for a request's headers, or kept
  alive after a response — with a 503 and ``retry-after: 1`` first, so that a client whose request was on its way
  but not yet read (a burst of connections can arrive before it is) reads an answer, not a reset; or, if every
  connection has a request in progress, the new one is answered 503 and closed as soon as it is accepted
  (uvicorn's own ``limit_concurrency``, set one above, answers 503 to a request beyond it);
- a request's headers must arrive within ``header_timeout_s`` of the connection (or of its first byte, on a kept-alive
  connection), else the connection is closed: uvicorn has no such timeout, and h11 waits as long as a client
  trickling its headers byte by byte likes (:class:`GuardedH11Protocol`);
- its body within ``body_timeout_s`` (408; :class:`~dnn.serve.middleware.BodyLimit`);
- an idle kept-alive connection is closed after ``keep_alive_s`` (uvicorn's ``timeout_keep_alive``).

The HTTP/1.1 protocol is always h11 (uvicorn's httptools protocol, where installed, is not guarded), and
websockets are off (the app has none). Warnings are rate-limited (:class:`RateLimitedLog`): a flood of bad clients
writes one line per kind of trouble every few seconds, not one per connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from dnn.checks import int_in
from dnn.errors import ConfigError
from dnn.serve.access import check_token, is_loopback, new_token
from dnn.serve.limits import ServeLimits

__all__ = ["GuardedH11Protocol", "RateLimitedLog", "access", "listen", "serve", "serve_in_thread", "uvicorn_config"]

log = logging.getLogger("dnn.serve")
FLOOD_LOGGERS = ("uvicorn.error", "asyncio", "dnn.serve")  # not uvicorn.access: one line per request is its job
SPARE_DESCRIPTORS = 64  # files, sockets and pipes the process needs besides its connections
WILDCARDS = ("0.0.0.0", "::", "")  # a host that binds every address of the machine


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); a port in use is a one-line ConfigError."""
    int_in("--port", port, 0, 65535, expected="an integer from 0 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --host/--port"
        ) from None


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RateLimitedLog(logging.Filter):
    """Lets through at most one warning (or worse) of each kind — logger, level and message template — every
    ``interval`` seconds; the next one let through says how many were held back. Lower levels pass."""

    def __init__(self, interval: float = 10.0):
        super().__init__()
        self.interval = interval
        self.last: dict[tuple, float] = {}
        self.held: Counter = Counter()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(key, -self.interval) < self.interval:
                self.held[key] += 1
                return False
            if len(self.last) > 1000:  # messages formatted before logging: each its own kind; forget them
                self.last.clear()
            self.last[key] = now
            held = self.held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval:g} s not shown)"
        return True


@contextmanager
def rate_limited_logs(interval: float = 10.0) -> Iterator[RateLimitedLog]:
    """Within the block, the loggers a flood of bad clients writes to (:data:`FLOOD_LOGGERS`) are rate-limited."""
    limiter = RateLimitedLog(interval)
    loggers = [logging.getLogger(name) for name in FLOOD_LOGGERS]
    for logger in loggers:
        logger.addFilter(limiter)
    try:
        yield limiter
    finally:
        for logger in loggers:
            logger.removeFilter(limiter)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit and a header timeout (see the module docstring); the limits
    are class attributes, set per server by :meth:`within`, as is ``idle``: the connections without a request in
    progress (waiting for a request's headers, or kept alive after a response), idle the longest first."""

    max_connections: int = ServeLimits.max_connections
    header_timeout_s: float = ServeLimits.header_timeout_s
    idle: dict[GuardedH11Protocol, None] = {}  # an ordered set; replaced per server by within()
    _head_timer: asyncio.TimerHandle | None = None  # armed while a request's headers are awaited

    @classmethod
    def within(cls, limits: ServeLimits) -> type[GuardedH11Protocol]:
        """The protocol class keeping to ``limits``."""
        attributes = {"max_connections": limits.max_connections, "header_timeout_s": limits.header_timeout_s,
                      "idle": {}}  # fmt: skip
        return type(cls.__name__, (cls,), attributes)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            if not self.idle:  # every connection is busy with a request: no room
                log.warning("refused a connection: %d are open, each with a request (max_connections)",
                            self.max_connections)  # fmt: skip
                transport.write(FULL)
                transport.close()
                return
            longest = next(iter(self.idle))
            log.warning("closed the connection idle the longest: %d are open, the limit (max_connections)",
                        self.max_connections)  # fmt: skip
            longest._disarm()
            longest.idle.pop(longest, None)
            longest.transport.write(FULL)  # a request already on its way is answered 503 (retry), not reset
            longest.transport.close()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of a request on a kept-alive connection
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers were read: its body is the middleware's to time
            self._disarm()
            self.idle.pop(self, None)

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()  # may start a pipelined request: a new cycle
        if self.cycle is cycle and not self.transport.is_closing():
            self.idle.setdefault(self, None)  # kept alive: idle from now on (uvicorn's keep-alive timer runs)

    def connection_lost(self, exc) -> None:
        self._disarm()
        self.idle.pop(self, None)
        super().connection_lost(exc)

    def _arm(self) -> None:
        """Start the header timer (idle from now on, unless it was idle already: a trickle keeps its place)."""
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)
        self.idle.setdefault(self, None)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _headers_too_slow(self) -> None:
        self._head_timer = None
        self.idle.pop(self, None)
        if not self.transport.is_closing():
            log.warning("closed a connection: its request headers did not arrive within %g s (header_timeout_s)",
                        self.header_timeout_s)  # fmt: skip
            self.transport.close()


_FULL_BODY = b'{"detail": "too many connections are open; try again"}'
FULL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\n"
        b"content-length: " + str(len(_FULL_BODY)).encode() + b"\r\n\r\n" + _FULL_BODY)  # fmt: skip


def uvicorn_config(app, limits: ServeLimits, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration of ``app`` within the connection limits of ``limits``."""
    return uvicorn.Config(
        app, log_level=log_level, http=GuardedH11Protocol.within(limits), ws="none",
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # a float is as good as an int here
        limit_concurrency=limits.max_connections + 1,  # uvicorn refuses at ≥; the protocol already keeps to the limit
    )  # fmt: skip


def check_descriptors(limits: ServeLimits) -> None:
    """Raise the soft limit of open files if ``max_connections`` needs it; a ConfigError if the hard limit is too
    low."""
    needed = limits.max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"max_connections {limits.max_connections} needs {needed} file descriptors; this process may open "
            f"{hard} (ulimit -n): serve fewer connections"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _limits_of(app) -> ServeLimits:
    # probe: any ASGI app may be served; only one built by create_app has state.dnn with its limits
    state = getattr(getattr(app, "state", None), "dnn", None)
    # probe: state is None for an app not built by create_app; then the default limits hold
    return getattr(state, "limits", None) or ServeLimits()


def access(host: str, token: str | None) -> tuple[str | None, str | None]:
    """The token the server bound to ``host`` requires (None: none) and what to say of it at start (None:
    nothing): ``token`` if given (checked), else a new one when ``host`` reaches beyond this machine."""
    if token is not None:
        return check_token(token), "every request needs the token given (--token or DNN_SERVE_TOKEN)"
    if is_loopback(host):
        return None, None
    return new_token(), "every request needs this token, made now (give your own with --token or DNN_SERVE_TOKEN)"


def serve(run_dirs: Sequence[str | os.PathLike], host: str = "127.0.0.1", port: int = 8000,
          limits: ServeLimits | None = None, device: str = "auto", precision: str = "fp32",
          allow_hosts: Sequence[str] = (), token: str | None = None) -> None:  # fmt: skip
    """Serve ``run_dirs`` on ``host:port`` until interrupted (what ``dnn serve`` runs): the models on ``device``,
    every request under ``precision``'s autocast (entered in the worker thread that runs it).

    Only requests to this server's own names are answered (``host``, the address connected to, a loopback name,
    ``allow_hosts``); bound beyond loopback, or given a ``token``, only requests with the token
    (:mod:`dnn.serve.access`): one made here unless given, printed at start."""
    from dnn.serve.app import create_app

    limits = limits or ServeLimits()
    check_descriptors(limits)
    token, about_token = access(host, token)
    from functools import partial

    from dnn.device import autocast, check_precision, resolve_device
    from dnn.run import load_run

    where = resolve_device(device, where="--device")  # a device that is not there: one line before the server starts
    check_precision(where, precision, where="--precision")
    names = [host, *allow_hosts]
    if host in WILDCARDS:  # every address of the machine: its own name too (the token guards it)
        names.append(socket.gethostname())
    app = create_app(run_dirs, limits, load=partial(load_run, device=device),
                     context=partial(autocast, where, precision), allow_hosts=names, token=token)  # fmt: skip
    sock = listen(host, port)
    address = url(socket.gethostname() if host in WILDCARDS else host, sock.getsockname()[1])
    print(f"dnn serve: {len(run_dirs)} run(s) at {address}/ (API schema: {address}/docs); Ctrl-C stops", flush=True)
    if not is_loopback(host):
        print(f"dnn serve: listening on {host}, beyond this machine: anyone who can reach it and has the token can "
              "use the runs; answered only when addressed to this machine's address or name (--allow-host adds one)",
              flush=True)  # fmt: skip
    if about_token is not None:
        print(f"dnn serve: {about_token}: open {address}/#token={token} or send 'Authorization: Bearer {token}'",
              flush=True)  # fmt: skip
    try:
        config = uvicorn_config(app, limits, log_level="info")
        with rate_limited_logs():
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn has shut down gracefully and passes the signal on: stopping is no error
        pass
    print("dnn serve: stopped", flush=True)


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30.0,
                    limits: ServeLimits | None = None) -> Iterator[str]:  # fmt: skip
    """Run ``app`` with uvicorn in a daemon thread on ``host:port`` (0: a free port), within the connection limits
    of ``limits`` (default: the app's own, as :func:`dnn.serve.create_app` was given them); yield its base URL and
    stop the server on exit."""
    sock = listen(host, port)
    server = uvicorn.Server(uvicorn_config(app, limits or _limits_of(app), log_level="warning"))
    with rate_limited_logs():
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dnn-serve-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        try:
            yield url(host, sock.getsockname()[1])
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()
