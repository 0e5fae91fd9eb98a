"""A local HTTP server for the dataset tests: serves bytes by file name on 127.0.0.1, honours Range requests, and
can cut a transfer short or ignore Range, as real servers do. Bounded: a daemon thread, short socket timeouts,
shut down when the ``with`` block ends."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    timeout = 5

    def do_GET(self):  # noqa: N802 — http.server's name
        server = self.server
        name = self.path.rsplit("/", 1)[-1]
        asked = self.headers.get("Range")
        server.requests.append((name, asked))
        data = server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = int(asked.split("=")[1].split("-")[0]) if asked and not server.ignore_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut_after.pop(name, None)
        if cut is not None:  # send part of the body, then drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@contextmanager
def serve(files: dict[str, bytes], ignore_range: bool = False, cut_after: dict[str, int] | None = None):
    """``with serve({"a.gz": data}) as (server, url)``: ``url/a.gz`` serves ``data``; ``server.requests`` lists
    ``(file name, Range header)`` per request; ``cut_after={"a.gz": n}`` drops the first transfer after n bytes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.files, server.requests, server.ignore_range = files, [], ignore_range
    server.cut_after = dict(cut_after or {})
    with running(server) as url:
        yield server, url


@contextmanager
def running(server: ThreadingHTTPServer):
    """``with running(server) as url``: ``server`` answers on 127.0.0.1 in a thread, and is shut down after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
