"""The run files `dnn serve` sends — report.html and the curves of metrics.jsonl: never through a hard link, a
symbolic link or anything but a regular file; read in bounded time and memory inside the concurrency and time
limits; an error names the file and never quotes it."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from dnn.serve import ServeLimits, create_app, files  # noqa: E402
from dnn.serve.files import MAX_CURVES_BYTES, NotServed, read_curves, read_report  # noqa: E402

LIMITS = ServeLimits(max_concurrency=2, timeout_s=20)
SECRET = "SECRET-FIRST-LINE of a file outside the run: ssh-rsa AAAA..."
SECONDS = 3.0


def wait_healthy(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "/health never became 200"
        time.sleep(0.02)


@pytest.fixture
def run(runs, tmp_path):
    """A copy of the dates run (its own files, one link each) and a secret file beside it."""
    copy = tmp_path / "copied"
    shutil.copytree(runs.dates, copy)
    (copy / "report.html").write_text("<!doctype html><title>report</title><p>the run's own report</p>")
    (tmp_path / "secret.txt").write_text(SECRET + "\nmore\n")
    return copy


def served(run, limits: ServeLimits = LIMITS):
    client = TestClient(create_app([run], limits))
    client.__enter__()
    wait_healthy(client)
    return client


def before(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("name", ["report.html", "metrics.jsonl"])
@pytest.mark.parametrize("how", ["hard link to a file outside", "hard link from outside", "symbolic link", "fifo"])
def test_a_run_file_that_is_a_link_or_a_fifo_is_404_and_never_quoted(run, tmp_path, name, how):
    """The issue: a hard-linked report.html was served (200); a hard-linked metrics.jsonl gave a 500 quoting its
    first line."""
    secret = tmp_path / "secret.txt"
    path = run / name
    path.unlink()
    if how == "hard link to a file outside":
        os.link(secret, path)
    elif how == "hard link from outside":  # the run's own file, also linked elsewhere: any of its names could change it
        path.write_text(SECRET + "\n")
        os.link(path, tmp_path / "elsewhere")
    elif how == "symbolic link":
        path.symlink_to(secret)
    else:
        os.mkfifo(path)
    state = before(run)
    client = served(run)
    try:
        route = "report" if name == "report.html" else "curves"
        start = time.monotonic()
        r = client.get(f"/runs/copied/{route}")
        assert r.status_code == 404, r.text
        assert time.monotonic() - start < SECONDS  # a FIFO is not waited on
        assert "SECRET" not in r.text and "ssh-rsa" not in r.text and f"copied/{name}" in r.json()["detail"]
        listed = client.get("/runs").json()[0]
        assert listed[route] is None  # not offered either
        assert client.get("/health").json()["in_flight"] == 0  # the slot was given back
    finally:
        client.__exit__(None, None, None)
    assert before(run) == state and secret.read_text().startswith(SECRET)  # nothing written, nothing lost


def test_a_damaged_metrics_file_gives_the_curves_of_its_good_lines_never_its_text(run):
    lines = [json.dumps({"kind": "train", "step": s, "loss": 1 / s, "lr": 0.1}) for s in range(1, 51)]
    lines.insert(0, SECRET)
    lines.insert(20, '{"kind": "train", "loss": ' + SECRET)  # a train line by its look, cut: not JSON
    lines.append('"a string, not an object"')
    lines.append('{"kind": "train", "step": "51", "loss": 0.1}')  # a step that is no integer: skipped
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"kind": "train", "st')  # cut short at the end
    client = served(run)
    try:
        r = client.get("/runs/copied/curves")
    finally:
        client.__exit__(None, None, None)
    assert r.status_code == 200 and "SECRET" not in r.text
    curves = r.json()
    assert curves["train"]["step"] == list(range(1, 51)) and curves["sampled"] is False


def test_a_report_is_sent_whole_with_a_sandbox_and_a_large_one_is_refused(run):
    html = "<!doctype html><title>report</title><style>p{color:red}</style><p>" + "é" * 1000 + "</p>"
    (run / "report.html").write_text(html, encoding="utf-8")
    client = served(run)
    try:
        r = client.get("/runs/copied/report")
    finally:
        client.__exit__(None, None, None)
    assert r.status_code == 200 and r.text == html and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert read_report(run, max_bytes=len(html.encode())) == html.encode()
    with pytest.raises(NotServed, match=r"copied/report\.html: 2,\d+ bytes, more than the 100 the server sends"):
        read_report(run, max_bytes=100)


def _metrics(path, megabytes: float) -> tuple[int, int]:
    """A metrics.jsonl of about ``megabytes`` MB: train lines with an eval line every 100 steps; (last step, evals)."""
    line = {"kind": "train", "step": 0, "epoch": 0, "loss": 1.0, "grad_norm": 0.5, "lr": 0.001, "items_per_s": 1000.0}
    size, step, evals = 0, 0, 0
    with open(path, "w") as f:
        while size < megabytes * 1e6:
            step += 1
            line["step"], line["loss"] = step, 1 / step
            size += f.write(json.dumps(line) + "\n")
            if step % 100 == 0:
                evals += 1
                size += f.write(json.dumps({"kind": "eval", "split": "valid", "step": step, "accuracy": 0.5}) + "\n")
    return step, evals


def test_a_huge_metrics_file_is_sampled_in_bounded_time_and_reads(run, monkeypatch):
    """The issue: a 55 MB metrics.jsonl took 2.4 s a request and 220 MB of the server's memory; at most
    MAX_CURVES_BYTES (4 MiB) of it are read now, whatever its size."""
    last, _ = _metrics(run / "metrics.jsonl", 20)
    read = []
    original = files._read
    monkeypatch.setattr(files, "_read", lambda fd, offset, size: read.append(size) or original(fd, offset, size))
    start = time.monotonic()
    curves = read_curves(run)
    took = time.monotonic() - start
    assert sum(read) <= MAX_CURVES_BYTES and curves["sampled"] is True
    steps = curves["train"]["step"]
    assert 100 <= len(steps) <= 401 and steps == sorted(steps)
    assert steps[0] < last * 0.01 and steps[-1] > last * 0.99  # the whole run, start to end
    assert len(curves["eval"]["step"]) > 10 and curves["eval"]["accuracy"][0] == 0.5
    assert took < SECONDS, f"{took:.2f} s"


def test_a_small_metrics_file_is_read_whole_and_thinned(run):
    last, evals = _metrics(run / "metrics.jsonl", 2)
    curves = read_curves(run, max_points=100)
    assert curves["sampled"] is False and curves["train"]["step"][-1] == last and len(curves["train"]["step"]) <= 101
    assert curves["eval"]["step"][-1] == evals * 100


def test_curves_and_report_take_a_slot_and_keep_to_the_time_limit(run, monkeypatch):
    """The issue: /curves ran outside --max-concurrency and --timeout (20 at once took 57 s)."""
    client = served(run, ServeLimits(max_concurrency=1, timeout_s=1.0))
    try:
        entered, release = threading.Event(), threading.Event()

        def stuck(run_dir, *args):
            entered.set()
            release.wait(10)
            return {"train": {}, "eval": {}, "sampled": False}

        monkeypatch.setattr(files, "read_curves", stuck)
        first = {}
        worker = threading.Thread(target=lambda: first.update(r=client.get("/runs/copied/curves")))
        worker.start()
        assert entered.wait(10)
        start = time.monotonic()
        for route in ("curves", "report"):  # the same client already holds the only slot
            r = client.get(f"/runs/copied/{route}")
            assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
        assert time.monotonic() - start < SECONDS
        release.set()
        worker.join(10)
        assert first["r"].status_code == 200

        def endless(run_dir, *args):  # reads forever, a chunk at a time, as read_curves does within its deadline
            while True:
                files.check_deadline()
                time.sleep(0.01)

        monkeypatch.setattr(files, "read_curves", endless)
        start = time.monotonic()
        r = client.get("/runs/copied/curves")
        assert r.status_code == 503 and "--timeout" in r.json()["detail"]
        assert 1.0 <= time.monotonic() - start < 1.0 + SECONDS
        deadline = time.monotonic() + SECONDS
        while client.get("/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/health").json()["in_flight"] == 0  # the read stopped and gave its slot back
    finally:
        client.__exit__(None, None, None)
