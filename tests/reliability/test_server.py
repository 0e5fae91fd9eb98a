"""`dnn serve` against hostile and careless clients, over real sockets on 127.0.0.1, each case bounded in count and
time: requests past their time are stopped and free their slots; clients that trickle their headers or body, or
open more connections than the limit, are dropped while /health still answers; the log says so a few times, not
once per connection."""

from __future__ import annotations

import dataclasses
import json
import logging
import select
import shutil
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
import httpx  # noqa: E402
import torch  # noqa: E402

from dnn.cli import main  # noqa: E402
from dnn.serve import ServeLimits, create_app, serve_in_thread  # noqa: E402

LIMITS = ServeLimits(max_tokens=10**7, max_concurrency=4, timeout_s=1.0, max_connections=16, header_timeout_s=0.5,
                     body_timeout_s=0.5, keep_alive_s=2.0)  # fmt: skip
SLACK = 3.0  # seconds a 2-core machine shared with other work may add to any deadline below
EOS_ID = 3
PARAGRAPH = "The quick brown fox jumps over the lazy dog. A recurrent network reads one character at a time.\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs trained through the command line: a character language model and a date translator."""
    root = tmp_path_factory.mktemp("reliability_runs")
    text = root / "paragraph.txt"
    text.write_text(PARAGRAPH * 8, encoding="utf-8")
    small = ["model.hidden_size=16", "model.embedding_size=8", "train.threads=1", "train.max_steps=3"]
    specs = {
        "charlm": ["charlm-pydoc", "data.source=null", f"data.train={text}", "model.num_layers=1",
                   "train.batch_size=4", "data.length=20"],
        "dates": ["dates-attention", "data.sizes=[64,16,16]", "train.batch_size=16"],
    }  # fmt: skip
    for name, (recipe, *overrides) in specs.items():
        assert main(["train", recipe, *overrides, *small, "--run-dir", str(root / name), "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def server(runs):
    app = create_app([runs / "charlm", runs / "dates"], LIMITS)
    with serve_in_thread(app) as base:
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "/health never became 200"
            time.sleep(0.05)
        yield base, app


def health(base: str) -> int:
    return httpx.get(f"{base}/health", timeout=SLACK).status_code


def address(base: str) -> tuple[str, int]:
    url = urlsplit(base)
    assert url.hostname == "127.0.0.1"
    return url.hostname, url.port


class Messages(logging.Handler):
    """The records that pass a logger's filters (a handler on the logger itself sees nothing a filter held)."""

    def __init__(self, *names: str):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger(name) for name in names]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self):
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        for logger in self.loggers:
            logger.removeHandler(self)


# ---------------------------------------------------------------------------------------------- cancellation


def test_requests_past_their_time_are_stopped_and_normal_requests_are_served_at_once(server, monkeypatch):
    """Four requests that would each keep a worker for minutes (the issue: 30-60 s each, then 40 s of 429s) time
    out; a normal request right after is served, not refused for want of a slot."""
    base, app = server
    model = app.state.dnn.runs["dates"].run.model
    original = model.decode_step

    def never_ending(prev_token, state):  # a slow translator that never says <eos>: decodes to max_len (~5 s)
        time.sleep(0.05)
        logits, state, attention = original(prev_token, state)
        return logits.index_fill(-1, torch.tensor([EOS_ID]), float("-inf")), state, attention

    monkeypatch.setattr(model, "decode_step", never_ending)
    slow = [("/runs/charlm/generate", {"prompt": "The ", "length": 100_000})] * 2 + [
        ("/runs/dates/translate", {"text": "May 1, 2000. " * 8, "beam_size": 16})
    ] * 2

    def post(request):
        path, body = request
        return httpx.post(base + path, json=body, timeout=30)

    start = time.monotonic()
    with ThreadPoolExecutor(len(slow)) as pool:
        answers = list(pool.map(post, slow))
    timed_out = time.monotonic()
    assert [r.status_code for r in answers] == [503] * 4, [r.text for r in answers]
    assert all("was stopped" in r.json()["detail"] for r in answers)
    assert timed_out - start < LIMITS.timeout_s + SLACK

    refused = 0
    while True:
        r = httpx.post(f"{base}/runs/charlm/generate", json={"prompt": "The ", "length": 5}, timeout=30)
        if r.status_code == 200:
            break
        assert r.status_code == 429, r.text
        refused += 1
        assert time.monotonic() - timed_out < SLACK, f"still {refused} refusals after {SLACK} s"
        time.sleep(0.02)
    served = time.monotonic() - timed_out

    # each stopped request lets go at its next decoding step (here up to 50 ms away): every slot is free soon after,
    # not when the work would have ended (about 5 s for a translation, minutes for the generations)
    def in_flight() -> int:
        return httpx.get(f"{base}/health", timeout=5).json()["in_flight"]

    while in_flight() and time.monotonic() - timed_out < SLACK:
        time.sleep(0.01)
    freed = time.monotonic() - timed_out
    print(f"4 requests past {LIMITS.timeout_s} s: a normal one served {served:.3f} s later ({refused} × 429); "
          f"every slot free {freed:.3f} s after the timeouts")  # fmt: skip
    assert in_flight() == 0


# ---------------------------------------------------------------------------------------------- slow clients


def _open(base: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address(base), timeout=SLACK)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _closed_by_server(sock: socket.socket) -> tuple[bool, bytes]:
    """Whether the server has closed ``sock`` (all it sent, read), without waiting."""
    data = b""
    while select.select([sock], [], [], 0)[0]:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def _trickle(socks: list[socket.socket], head: bytes, seconds: float, every: float = 0.05) -> dict[int, float]:
    """Send ``head`` one byte per ``every`` seconds on each socket, for at most ``seconds``; when each was closed
    by the server (seconds from now), by index."""
    start = time.monotonic()
    closed: dict[int, float] = {}
    sent = 0
    while len(closed) < len(socks) and time.monotonic() - start < seconds:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            if _closed_by_server(sock)[0]:
                closed[i] = time.monotonic() - start
                continue
            try:
                sock.send(head[sent % len(head) : sent % len(head) + 1])
            except (BlockingIOError, ConnectionResetError, BrokenPipeError):
                pass
        sent += 1
        time.sleep(every)
    return closed


SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000  # never ends


def test_clients_trickling_their_headers_are_dropped_and_health_still_answers(server):
    base, _ = server
    count = LIMITS.max_connections // 2
    with Messages("dnn.serve", "uvicorn.error") as messages:
        socks = _open(base, count)
        kept_alive = socket.create_connection(address(base), timeout=SLACK)  # one request, then a trickled second
        kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept_alive.recv(4096).startswith(b"HTTP/1.1 200")
        kept_alive.setblocking(False)
        socks.append(kept_alive)
        checker = ThreadPoolExecutor(1).submit(lambda: (time.sleep(0.2), health(base))[1])  # while they trickle
        try:
            closed = _trickle(socks, SLOW_HEAD, seconds=LIMITS.header_timeout_s + SLACK)
        finally:
            for sock in socks:
                sock.close()
        assert checker.result(timeout=SLACK) == 200
        assert health(base) == 200
    print(f"{len(socks)} trickling clients dropped after {min(closed.values()):.2f}-{max(closed.values()):.2f} s")
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow clients were never dropped"
    assert all(LIMITS.header_timeout_s * 0.8 <= t for t in closed.values())
    timeouts = [r for r in messages.records if "did not arrive" in r.getMessage()]
    assert 1 <= len(timeouts) <= 2, [r.getMessage() for r in messages.records]  # rate-limited, not one per client


def _wait_closed(socks: list[socket.socket], seconds: float) -> dict[int, bytes]:
    """Read each socket until the server closes it, for at most ``seconds``: what each closed one received."""
    start, closed, received = time.monotonic(), {}, {}
    while len(closed) < len(socks) and time.monotonic() - start < seconds:
        for i, sock in enumerate(socks):
            if i not in closed:
                done, data = _closed_by_server(sock)
                received[i] = received.get(i, b"") + data
                if done:
                    closed[i] = received[i]
        time.sleep(0.01)
    return closed


def test_connections_over_the_limit_close_the_longest_idle_and_health_gets_through(server):
    base, _ = server
    n = LIMITS.max_connections
    with Messages("dnn.serve", "uvicorn.error") as messages:
        socks = _open(base, 3 * n)  # none sends anything
        try:
            assert health(base) == 200  # a client that sends its request at once gets through the flood
            closed = _wait_closed(socks, seconds=LIMITS.header_timeout_s / 2)
            assert set(range(2 * n)) <= set(closed), "the oldest idle connections should make room for new ones"
            assert len(_wait_closed(socks, seconds=LIMITS.header_timeout_s + SLACK)) == 3 * n
        finally:
            for sock in socks:
                sock.close()
    kinds = {r.msg for r in messages.records}
    assert len(messages.records) <= 2 * len(kinds), [r.getMessage() for r in messages.records]


def test_the_connection_closed_to_make_room_is_answered_503_not_reset(server):
    """In a burst, the connection idle the longest may be a client whose request has not been read yet: it must read
    an answer it can act on (503, retry-after), not find its connection reset."""
    base, _ = server
    oldest = socket.create_connection(address(base), timeout=SLACK)
    try:
        time.sleep(0.05)  # accepted first: the longest idle
        others = _open(base, LIMITS.max_connections)  # one over the limit
        try:
            closed = _wait_closed([oldest], seconds=LIMITS.header_timeout_s / 2)
            assert 0 in closed, "the longest idle connection should make room"
            answer = closed[0]
            assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in answer.lower(), answer
        finally:
            for sock in others:
                sock.close()
    finally:
        oldest.close()
    assert health(base) == 200


def test_when_every_connection_has_a_request_in_progress_one_more_gets_503(server):
    base, _ = server
    head = (b"POST /runs/charlm/generate HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n")  # fmt: skip  # and no body: busy until the body timeout
    busy = _open(base, LIMITS.max_connections)
    try:
        for sock in busy:
            sock.sendall(head)
        time.sleep(0.1)
        with socket.create_connection(address(base), timeout=SLACK) as extra:
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer, answer
        closed = _wait_closed(busy, seconds=LIMITS.body_timeout_s + SLACK)
        assert len(closed) == len(busy) and all(a.startswith(b"HTTP/1.1 408") for a in closed.values())
    finally:
        for sock in busy:
            sock.close()
    assert health(base) == 200


def test_a_client_trickling_its_body_gets_408_and_is_dropped(server):
    base, _ = server
    with socket.create_connection(address(base), timeout=LIMITS.body_timeout_s + SLACK) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /runs/charlm/generate HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n" + b'{"prompt": "')  # fmt: skip
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.5 s" in answer, answer
    assert LIMITS.body_timeout_s * 0.8 <= waited < LIMITS.body_timeout_s + SLACK
    assert health(base) == 200


def test_the_uvicorn_server_keeps_to_the_limits(server):
    """What `dnn serve` runs: keep-alive timeout, connection limit and the guarded protocol (a header timeout)."""
    from dnn.serve.server import GuardedH11Protocol, uvicorn_config

    config = uvicorn_config(server[1], LIMITS)
    assert config.timeout_keep_alive == LIMITS.keep_alive_s
    assert config.limit_concurrency == LIMITS.max_connections + 1
    assert issubclass(config.http, GuardedH11Protocol) and config.http.header_timeout_s == LIMITS.header_timeout_s
    assert config.http.max_connections == LIMITS.max_connections


def test_many_slow_clients_at_once_leave_the_server_answering(server):
    """A bounded flood: 5 waves of 2×max_connections connections trickling headers; /health answers after each."""
    base, _ = server
    stop = threading.Event()
    statuses: list[int] = []

    def probe():
        while not stop.is_set():
            try:
                statuses.append(health(base))
            except httpx.HTTPError:
                statuses.append(0)
            time.sleep(0.1)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        for _ in range(5):
            socks = _open(base, 2 * LIMITS.max_connections)
            try:
                _trickle(socks, SLOW_HEAD, seconds=0.3)
            finally:
                for sock in socks:
                    sock.close()
            assert health(base) == 200
    finally:
        stop.set()
        thread.join(SLACK)
    print(f"/health during 5 waves of {2 * LIMITS.max_connections} slow clients: {statuses}")
    # every probe was answered: 200, or 503 in the moments the connection limit is full (by design); never a
    # refused or hung connection. How many probes land in those moments depends on how busy the machine is.
    assert statuses and set(statuses) <= {200, 503}, statuses  # and after each wave it answered 200 (above)


@pytest.mark.slow
def test_dnn_serve_under_a_flood_of_slow_clients_keeps_answering_and_its_stderr_stays_small(runs):
    """The issue's case through the command line: more slow connections (1100) than the process may open files
    (1024); `dnn serve` keeps accepting, /health answers throughout, and stderr holds a few lines, not one each."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    cmd = [sys.executable, "-m", "dnn.cli", "serve", str(runs / "charlm"), "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=few_files)
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if health(base) == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "dnn serve did not start"
            time.sleep(0.1)
        statuses = []
        for _wave in range(11):
            for _ in range(100):
                sock = socket.create_connection(("127.0.0.1", port), timeout=SLACK)
                sock.sendall(SLOW_HEAD[:20])
                socks.append(sock)
            statuses.append(health(base))
        print(f"/health after each of 11 waves of 100 slow connections: {statuses}")
        assert statuses == [200] * 11
    finally:
        for sock in socks:
            sock.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    lines = [line for line in err.decode().splitlines() if "GET /health" not in line]  # the access log: fine
    print(f"stderr: {len(err)} bytes, {len(lines)} lines besides the access log")
    assert proc.returncode == 0 and len(lines) < 20, "\n".join(lines[-20:])


# ---------------------------------------------------------------------------------------------- who is answered


def _client_from(source: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (another loopback address: another client)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)


@pytest.fixture(scope="module")
def second_address():
    """127.0.0.2: on Linux all of 127/8 is this machine, so a client can come from another address."""
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 here: no second loopback address for a second client")
    return "127.0.0.2"


def test_a_flooding_client_leaves_a_normal_one_served(server, second_address):
    """The issue: eight connections flooding generate left a normal translate with 429 on 84 of 85 tries. Eight
    connections from one address flood for a few seconds; every request of a normal client from another address is
    served, within the time limit, and the flood still gets its share."""
    base, app = server
    stop = threading.Event()
    flood: Counter = Counter()

    def flooder():
        with _client_from(second_address) as http:
            while not stop.is_set():
                r = http.post(f"{base}/runs/charlm/generate", json={"prompt": "The ", "length": 50})
                flood[r.status_code] += 1

    threads = [threading.Thread(target=flooder) for _ in range(8)]
    for thread in threads:
        thread.start()
    normal: list[tuple[int, float]] = []
    try:
        time.sleep(0.5)  # the flood holds every slot
        with _client_from("127.0.0.1") as http:
            for _ in range(10):
                start = time.monotonic()
                r = http.post(f"{base}/runs/dates/translate", json={"text": "May 1, 2000", "beam_size": 2})
                normal.append((r.status_code, time.monotonic() - start))
                time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    print(f"normal client: {[s for s, _ in normal]}, slowest {max(t for _, t in normal):.2f} s; flood: {dict(flood)}")
    assert [s for s, _ in normal] == [200] * 10
    assert max(t for _, t in normal) < 2 * LIMITS.timeout_s + SLACK  # a wait for a slot, then the work
    assert flood[200] > 0 and set(flood) <= {200, 429}  # the flood is served too, and refused at once beyond its share
    assert all(not t.is_alive() for t in threads) and app.state.dnn.in_flight == 0


def test_dns_rebinding_over_a_real_socket_is_400_and_a_lone_surrogate_is_422_without_a_traceback(server):
    base, app = server
    host, port = address(base)
    with Messages("dnn.serve", "uvicorn.error", "uvicorn.access") as messages:
        for path, body in (("/runs", b""), ("/runs/dates/translate", b'{"text": "May 1, 2000"}')):
            method = b"POST" if body else b"GET"
            request = (method + b" " + path.encode() + b" HTTP/1.1\r\nHost: evil.example:" + str(port).encode()
                       + b"\r\ncontent-type: application/json\r\ncontent-length: " + str(len(body)).encode()
                       + b"\r\n\r\n" + body)  # fmt: skip
            with socket.create_connection((host, port), timeout=SLACK) as sock:
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(4096):  # until the server closes: it says connection: close
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400") and b"not this server's name" in answer, answer
            assert b"dates" not in answer.partition(b"\r\n\r\n")[2]
        for path, body in (("/runs/dates/translate", {"text": "\ud800abc"}),
                           ("/runs/charlm/generate", {"prompt": "The \udfff", "length": 5})):  # fmt: skip
            r = httpx.post(base + path, content=json.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code == 422 and "not valid Unicode" in r.json()["detail"], r.text
    errors = [r for r in messages.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert app.state.dnn.in_flight == 0


def _big_run(runs, root, megabytes: float):
    """A copy of the charlm run whose metrics.jsonl is ``megabytes`` MB (a long run, logged every step)."""
    run = root / "long"
    shutil.copytree(runs / "charlm", run)
    line = {"kind": "train", "step": 0, "epoch": 0, "loss": 1.0, "grad_norm": 0.5, "lr": 0.001, "items_per_s": 1e3}
    with open(run / "metrics.jsonl", "w") as f:
        size = step = 0
        while size < megabytes * 1e6:
            step += 1
            line["step"] = step
            size += f.write(json.dumps(line) + "\n")
    return run


def test_a_flood_of_curves_of_a_huge_metrics_file_keeps_the_server_answering(runs, tmp_path, second_address):
    """The issue: with a 55 MB metrics.jsonl, 20 /curves at once took 57 s, /health up to 3 s, 3 of 8 translations
    failed and the server grew by 220 MB. Now a /curves reads at most 4 MiB inside a slot; 20 at once from one client
    get 200 or 429 at once, /health answers fast and another client's translations are all served."""
    import resource

    run = _big_run(runs, tmp_path, 55)
    app = create_app([run, runs / "dates"], dataclasses.replace(LIMITS, max_connections=64))  # 20 at once and more
    with serve_in_thread(app) as base:
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        grown_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        health_times: list[float] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                start = time.monotonic()
                assert health(base) == 200
                health_times.append(time.monotonic() - start)
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        start = time.monotonic()
        try:
            with _client_from(second_address) as http, ThreadPoolExecutor(20) as pool:
                curves = list(pool.map(lambda _: http.get(f"{base}/runs/long/curves"), range(20)))
            flood_took = time.monotonic() - start
            with _client_from("127.0.0.1") as http:
                translations = [http.post(f"{base}/runs/dates/translate", json={"text": "May 1, 2000"}).status_code
                                for _ in range(8)]  # fmt: skip
        finally:
            stop.set()
            prober.join(SLACK)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown_before) / 1024  # kB → MB (Linux)
    statuses = Counter(r.status_code for r in curves)
    print(f"20 /curves of a 55 MB file: {dict(statuses)} in {flood_took:.2f} s; /health at most "
          f"{max(health_times):.3f} s; translations {translations}; peak memory +{grown:.0f} MB")  # fmt: skip
    assert set(statuses) <= {200, 429} and statuses[200] >= 1
    assert all(r.json()["sampled"] for r in curves if r.status_code == 200)
    assert flood_took < LIMITS.timeout_s + SLACK
    assert max(health_times) < 1.0
    assert translations == [200] * 8
    assert grown < 150
    assert (run / "metrics.jsonl").stat().st_size > 55e6  # read, not changed
