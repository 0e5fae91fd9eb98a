"""Who `dnn serve` answers: a request addressed to another name (DNS rebinding) is 400 on every route before it is
read; with a token, a request without it is 401, except the page, its files and the API schema; invalid Unicode is
422, not a 500 with a traceback. Each answer is checked with its status, its time and what it left: nothing run,
nothing echoed."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from dnn.cli import main  # noqa: E402
from dnn.errors import ConfigError  # noqa: E402
from dnn.serve import ServeLimits, create_app  # noqa: E402
from dnn.serve.access import host_name, is_loopback  # noqa: E402
from dnn.serve.server import access  # noqa: E402

LIMITS = ServeLimits(max_body_bytes=100_000, max_tokens=40, max_concurrency=2, timeout_s=20)
TOKEN = "a-token-of-the-user-0123456789"
SECONDS = 2.0  # a refusal comes at once; this is room for a loaded machine
ROUTES = [
    ("GET", "/", None), ("GET", "/health", None), ("GET", "/runs", None), ("GET", "/docs", None),
    ("GET", "/static/app.js", None), ("GET", "/runs/dates/curves", None), ("GET", "/runs/dates/report", None),
    ("POST", "/runs/dates/translate", {"text": "May 1, 2000"}),
    ("POST", "/runs/sentiment/predict", {"text": "a great film"}),
    ("POST", "/runs/charlm/generate", {"prompt": "The ", "length": 5}),
]  # fmt: skip
PUBLIC = {"/", "/docs", "/static/app.js"}


def wait_healthy(client: TestClient, headers: dict | None = None) -> None:
    deadline = time.monotonic() + 30
    while client.get("/health", headers=headers).status_code != 200:
        assert time.monotonic() < deadline, "/health never became 200"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def app(runs):
    return create_app([runs.dates, runs.sentiment, runs.charlm], LIMITS, allow_hosts=["dnn.example.lan"])


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:  # TestClient connects to "testserver", which is the server's own address here
        wait_healthy(c)
        yield c


def send(client: TestClient, method: str, path: str, body, **headers) -> httpx.Response:
    start = time.monotonic()
    r = client.request(method, path, json=body, headers=headers)
    r.elapsed_s = time.monotonic() - start
    return r


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil",
                                  "dnn.example.lan.evil.example", "0x7f000001", "[::2]:80"])  # fmt: skip
def test_a_request_addressed_to_another_name_is_400_on_every_route(client, app, host):
    """DNS rebinding: a page at evil.example, its name pointed at 127.0.0.1, got 200 on /runs and every predict
    route."""
    runs_served = [s.predictor for s in app.state.dnn.runs.values()]
    for method, path, body in ROUTES:
        r = send(client, method, path, body, host=host)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        detail = r.json()["detail"]
        assert "is not this server's name" in detail and "--allow-host" in detail and "\n" not in detail
        assert "dates" not in detail and "sentiment" not in detail  # nothing of the runs
        assert r.elapsed_s < SECONDS
    assert app.state.dnn.in_flight == 0  # nothing ran
    assert [s.predictor for s in app.state.dnn.runs.values()] == runs_served


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1:8000", "[::1]:8000", "::1", "localhost.",
                                  "testserver", "dnn.example.lan", "DNN.example.lan:443"])  # fmt: skip
def test_the_servers_own_names_and_allowed_hosts_are_answered(client, host):
    r = send(client, "GET", "/runs", None, host=host)
    assert r.status_code == 200 and [run["name"] for run in r.json()] == ["dates", "sentiment", "charlm"]


def test_host_names_are_compared_without_port_case_or_brackets():
    assert host_name("[::1]:8000") == "::1" and host_name("Example.COM:80") == "example.com"
    assert host_name("localhost.") == "localhost" and host_name("::1") == "::1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.5")


# ---------------------------------------------------------------------------------------------- the token


@pytest.fixture(scope="module")
def locked(runs):
    app = create_app([runs.dates, runs.sentiment, runs.charlm], LIMITS, token=TOKEN)
    with TestClient(app) as c:
        wait_healthy(c, {"Authorization": f"Bearer {TOKEN}"})
        yield c, app


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-the-same-size-x", f"Basic {TOKEN}",
                                           f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer"])  # fmt: skip
def test_with_a_token_a_request_without_it_is_401_and_learns_nothing(locked, authorization):
    client, app = locked
    headers = {} if authorization is None else {"authorization": authorization}
    for method, path, body in ROUTES:
        r = send(client, method, path, body, **headers)
        if path in PUBLIC:  # the page, its script and the schema: nothing of the runs
            assert r.status_code == 200, (path, r.text[:200])
            continue
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "needs its token" in r.json()["detail"] and TOKEN not in r.text and "dates" not in r.text
        assert r.elapsed_s < SECONDS
    assert app.state.dnn.in_flight == 0


def test_with_the_token_every_route_answers(locked, runs):
    client, _ = locked
    bearer = {"authorization": f"Bearer {TOKEN}"}
    for method, path, body in ROUTES:
        r = send(client, method, path, body, **bearer)
        if path.endswith("/report"):  # the test run may have no report: not served, but the token was accepted
            assert r.status_code in (200, 404), r.text
            continue
        assert r.status_code == 200, (path, r.text[:200])
        assert TOKEN not in r.text


def test_a_report_opened_as_a_page_carries_the_token_in_its_address(locked, runs):
    client, _ = locked
    report = runs.dates / "report.html"
    had = report.exists()
    if not had:
        report.write_text("<!doctype html><title>r</title><p>dates report</p>")
    try:
        assert client.get(f"/runs/dates/report?token={TOKEN}").status_code == 200
        assert client.get("/runs/dates/report?token=wrong-token-of-the-same-size-x").status_code == 401
        assert client.get(f"/runs/dates/curves?token={TOKEN}").status_code == 401  # only the report, a page
        r = client.get("/runs/dates/report", headers={"authorization": f"Bearer {TOKEN}"})
        assert "sandbox" in r.headers["content-security-policy"] and r.headers["referrer-policy"] == "no-referrer"
    finally:
        if not had:
            report.unlink()


def test_the_page_reads_the_token_from_its_address_and_sends_it():
    from dnn.serve.app import STATIC

    script = (STATIC / "app.js").read_text()
    assert "location.hash" in script and "Authorization: `Bearer ${TOKEN}`" in script
    assert 'fetch("/health", { headers: authorized({}) })' in script and "history.replaceState" in script


def test_a_server_beyond_loopback_makes_a_token_and_a_given_one_must_be_long():
    assert access("127.0.0.1", None) == (None, None) and access("localhost", None) == (None, None)
    for host in ("0.0.0.0", "::", "192.168.1.5"):
        token, said = access(host, None)
        assert token is not None and len(token) >= 16 and "made now" in said
    assert access("0.0.0.0", None)[0] != access("0.0.0.0", None)[0]
    assert access("127.0.0.1", TOKEN) == (TOKEN, "every request needs the token given (--token or DNN_SERVE_TOKEN)")
    for bad in ("short", "a token with spaces in it", "x" * 15):
        with pytest.raises(ConfigError, match="--token must be at least 16 characters"):
            access("0.0.0.0", bad)


def test_dnn_serve_refuses_a_short_token_before_it_starts(capsys, runs):
    start = time.monotonic()
    assert main(["serve", str(runs.dates), "--token", "hunter2", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnn: error: --token must be at least 16") and err.count("\n") == 1
    assert "hunter2" not in err and time.monotonic() - start < 30


def test_dnn_serve_with_a_token_says_so_and_keeps_to_it(runs):
    """Through the command line on 127.0.0.1: the start says a token is needed; without it 401, with it 200; a
    request addressed to another name 400, one to an --allow-host name 200."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DNN_SERVE_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "dnn.cli", "serve", str(runs.sentiment), "--port", str(port), "--allow-host",
           "dnn.example.lan"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", headers=bearer, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "dnn serve did not start"
            time.sleep(0.1)
        assert httpx.get(f"{base}/runs", timeout=5).status_code == 401
        assert httpx.get(f"{base}/runs", headers=bearer, timeout=5).status_code == 200
        assert httpx.get(f"{base}/runs", headers={**bearer, "Host": "evil.example"}, timeout=5).status_code == 400
        assert httpx.get(f"{base}/runs", headers={**bearer, "Host": f"dnn.example.lan:{port}"}, timeout=5).is_success
        assert httpx.get(f"{base}/", timeout=5).status_code == 200  # the page itself is public
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "every request needs the token given (--token or DNN_SERVE_TOKEN)" in out and f"#token={TOKEN}" in out


# ---------------------------------------------------------------------------------------------- Unicode


@pytest.mark.parametrize(
    "path, body",
    [
        ("/runs/dates/translate", '{"text": "\\ud800abc"}'),
        ("/runs/dates/translate", '{"text": "May 1, \\udfff2000", "beam_size": 2}'),
        ("/runs/charlm/generate", '{"prompt": "The \\ud83d", "length": 5}'),
        ("/runs/sentiment/predict", '{"text": "good \\udc80 film"}'),
        ("/runs/dates/translate", '{"text": "May 1", "\\ud800": 1}'),
        ("/runs/dates/translate", b'{"text": "May \xff 1"}'),
        ("/runs/dates/translate", b'{"text": "May \xed\xa0\x80 1"}'),  # a surrogate encoded in UTF-8: not UTF-8
    ],
)  # fmt: skip
def test_invalid_unicode_is_422_in_one_line_not_a_500_with_a_traceback(client, app, caplog, path, body):
    """The issue: a lone surrogate was a 500 with a 60-line traceback in the log."""
    with caplog.at_level(logging.WARNING):
        start = time.monotonic()
        r = client.post(path, content=body if isinstance(body, bytes) else body.encode(),
                        headers={"content-type": "application/json"})  # fmt: skip
        took = time.monotonic() - start
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert ("Unicode" in detail or "not UTF-8" in detail) and "\n" not in detail and len(detail) < 200, detail
    assert took < SECONDS and app.state.dnn.in_flight == 0
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not errors, errors


def test_valid_unicode_beyond_the_basic_plane_is_served(client):
    r = client.post("/runs/charlm/generate", json={"prompt": "The 😀 é ", "length": 3})
    assert r.status_code == 200 and r.json()["prompt"] == "The 😀 é "


def test_bound_beyond_loopback_dnn_serve_makes_a_token_says_so_and_requires_it(runs, monkeypatch, capsys):
    """`dnn serve --host 0.0.0.0` offered no authentication at all. (Nothing is bound beyond loopback here: the
    listening socket is swapped for one on 127.0.0.1 and uvicorn is not run; the app it would serve is checked.)"""
    import uvicorn

    from dnn.serve import server

    apps = []
    real_listen = server.listen
    monkeypatch.setattr(server, "listen", lambda host, port: real_listen("127.0.0.1", 0))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: apps.append(self.config.app))
    assert main(["serve", str(runs.sentiment), "--host", "0.0.0.0", "--port", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    token = out.partition("#token=")[2].split()[0]
    assert len(token) >= 16 and "made now" in out and "beyond this machine" in out, out
    assert f"Authorization: Bearer {token}" in out
    (app,) = apps
    own_name = socket.gethostname()
    with TestClient(app) as c:
        bearer = {"authorization": f"Bearer {token}"}
        wait_healthy(c, bearer)
        assert c.get("/runs").status_code == 401
        assert c.get("/runs", headers={"authorization": "Bearer " + "x" * len(token)}).status_code == 401
        assert c.get("/runs", headers=bearer).status_code == 200
        assert c.get("/runs", headers={**bearer, "host": f"{own_name}:8000"}).status_code == 200
        assert c.get("/runs", headers={**bearer, "host": "evil.example"}).status_code == 400
        assert c.get("/").status_code == 200
