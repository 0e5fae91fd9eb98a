"""A real server on loopback: N concurrent clients for a bounded time (every response 200 or 429, none lost or
malformed, /health fine afterwards), body limits over real sockets, and `dnn serve` through the command line."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from dnn.cli import main  # noqa: E402
from dnn.serve import ServeLimits, create_app, serve_in_thread  # noqa: E402

CLIENTS = 8
SECONDS = 3.0
EXPECTED_KEYS = {"translate": {"output", "source_tokens", "output_tokens", "attention"},
                 "predict": {"label", "probabilities", "classes"}, "generate": {"text", "continuation"}}  # fmt: skip


def wait_healthy(base: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("/health never became 200")


@pytest.fixture(scope="module")
def server(runs):
    limits = ServeLimits(max_body_bytes=50_000, max_tokens=100, max_concurrency=2, timeout_s=20)
    with serve_in_thread(create_app([runs.dates, runs.sentiment, runs.charlm], limits)) as base:
        wait_healthy(base)
        yield base


def test_concurrent_clients_get_200_or_429_and_nothing_is_lost(server):
    requests = [
        ("translate", "/runs/dates/translate", {"text": "June 5, 1999", "beam_size": 2}),
        ("predict", "/runs/sentiment/predict", {"text": "a great film"}),
        ("generate", "/runs/charlm/generate", {"prompt": "The ", "length": 40}),
    ]
    sent = Counter()
    outcomes: list[tuple[int, str]] = []
    problems: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS

    def client(k: int) -> None:
        with httpx.Client(base_url=server, timeout=30) as http:
            i = k
            while time.monotonic() < stop:
                kind, path, body = requests[i % len(requests)]
                i += 1
                with lock:
                    sent[kind] += 1
                try:
                    r = http.post(path, json=body)
                    data = r.json()
                except (httpx.HTTPError, ValueError) as err:
                    with lock:
                        problems.append(f"{kind}: {type(err).__name__}: {err}")
                    continue
                ok = (r.status_code == 200 and EXPECTED_KEYS[kind] <= set(data)) or (
                    r.status_code == 429 and "too many requests" in data.get("detail", "")
                )
                with lock:
                    outcomes.append((r.status_code, kind))
                    if not ok:
                        problems.append(f"{kind}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
    statuses = Counter(status for status, _ in outcomes)
    print(f"load: {CLIENTS} clients, {SECONDS:g} s: {sum(sent.values())} requests, statuses {dict(statuses)}")
    assert not problems, problems[:5]
    assert len(outcomes) == sum(sent.values())  # every request got an answer
    assert set(statuses) <= {200, 429} and statuses[200] > 0
    health = httpx.get(f"{server}/health", timeout=5)
    assert health.status_code == 200 and health.json()["in_flight"] == 0


def _raw_post(base: str, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict]:
    """POST over a plain socket (http.client), the body sent as ``chunks``; the status and JSON answer."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", path)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        try:
            for chunk in chunks:
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered 413 and closed before the whole body was sent
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_bodies_over_the_limit_are_413_over_a_real_socket(server):
    big = b'{"text": "' + b"a" * 60_000 + b'"}'
    status, data = _raw_post(server, "/runs/dates/translate", {"Content-Type": "application/json",
                             "Content-Length": str(len(big))}, [big])  # fmt: skip
    assert status == 413 and "50000" in data["detail"]
    chunked = [f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in (big[i : i + 8192] for i in range(0, len(big), 8192))]
    status, data = _raw_post(server, "/runs/dates/translate", {"Content-Type": "application/json",
                             "Transfer-Encoding": "chunked"}, [*chunked, b"0\r\n\r\n"])  # fmt: skip
    assert status == 413
    small = json.dumps({"text": "May 1, 2000"}).encode()
    chunks = [f"{len(small):x}\r\n".encode() + small + b"\r\n", b"0\r\n\r\n"]
    status, data = _raw_post(server, "/runs/dates/translate", {"Content-Type": "application/json",
                             "Transfer-Encoding": "chunked"}, chunks)  # fmt: skip
    assert status == 200 and data["source"] == "May 1, 2000"
    assert httpx.get(f"{server}/health", timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------- the command


def test_dnn_serve_help_and_user_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--max-body-bytes", "--max-tokens", "--max-pixels", "--max-concurrency",
                 "--timeout", "example:", "dnn serve runs/"):  # fmt: skip
        assert flag in out
    assert main(["serve", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"dnn: error: {tmp_path}: not a run directory (config.yaml is missing)"
    assert main(["serve", str(tmp_path), "--max-concurrency", "0"]) == 2
    assert "--max-concurrency" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the serve extra were not installed
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dnn: error: dnn serve needs the serve extra") and "pip install 'dnn[serve]'" in err


def test_dnn_serve_serves_runs_until_interrupted(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dnn.cli", "serve", str(runs.dates), "--port", str(port), "--max-concurrency", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, seconds=60)
        names = [r["name"] for r in httpx.get(f"{base}/runs", timeout=5).json()]
        assert names == ["dates"]
        r = httpx.post(f"{base}/runs/dates/translate", json={"text": "May 1, 2000"}, timeout=30)
        assert r.status_code == 200 and r.json()["source_tokens"][0] == "M"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"dnn serve: 1 run(s) at http://127.0.0.1:{port}/" in out and "dnn serve: stopped" in out
