"""Running the app: ``dnn serve`` in the foreground, or a server in a background thread (tests, notebooks)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dnn.errors import ConfigError
from dnn.serve.limits import ServeLimits

__all__ = ["listen", "serve", "serve_in_thread"]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); a port in use is a one-line ConfigError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be an integer from 0 to 65535, got {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --host/--port"
        ) from None


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(run_dirs: Sequence[str | os.PathLike], host: str = "127.0.0.1", port: int = 8000,
          limits: ServeLimits | None = None) -> None:  # fmt: skip
    """Serve ``run_dirs`` on ``host:port`` until interrupted (what ``dnn serve`` runs)."""
    import uvicorn

    from dnn.serve.app import create_app

    app = create_app(run_dirs, limits)
    sock = listen(host, port)
    address = url(host, sock.getsockname()[1])
    print(f"dnn serve: {len(run_dirs)} run(s) at {address}/ (API schema: {address}/docs); Ctrl-C stops", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn has shut down gracefully and passes the signal on: stopping is no error
        pass
    print("dnn serve: stopped", flush=True)


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread on ``host:port`` (0: a free port); yield its base URL and stop
    the server on exit."""
    import uvicorn

    sock = listen(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
