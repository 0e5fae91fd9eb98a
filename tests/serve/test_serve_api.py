"""The HTTP API against tiny trained runs (httpx through Starlette's TestClient): every endpoint returns what the
run's own predictor returns, and every limit holds — 413, 422, 429, 503 on timeout, /health before and after
loading."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from dnn.data.images import load_image  # noqa: E402
from dnn.run import load_run  # noqa: E402
from dnn.serve import ServeLimits, create_app, inference  # noqa: E402
from dnn.serve.files import read_curves  # noqa: E402
from dnn.serve.runs import load_served  # noqa: E402

LIMITS = ServeLimits(max_body_bytes=100_000, max_tokens=40, max_pixels=64 * 64, max_concurrency=2, timeout_s=20)


def wait_healthy(client: TestClient, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = client.get("/health")
        if r.status_code == 200:
            return r.json()
        time.sleep(0.02)
    raise AssertionError(f"/health never became 200: {r.status_code} {r.text}")


@pytest.fixture(scope="module")
def client(all_runs):
    with TestClient(create_app(all_runs, LIMITS)) as c:
        wait_healthy(c)
        yield c


@pytest.fixture(scope="module")
def loaded(runs):
    """The runs loaded directly (the reference the API must agree with)."""
    return {name: load_run(getattr(runs, name)) for name in ("dates", "digits", "charlm", "sentiment", "tagger")}


def one_line_422(response, *words: str) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail, detail
    for word in words:
        assert word in detail, detail
    return detail


# ---------------------------------------------------------------------------------------------- health and runs


def test_health_is_503_until_every_run_is_loaded(runs):
    release = threading.Event()

    def slow_load(path):
        assert release.wait(20)
        return load_run(path)

    with TestClient(create_app([runs.dates, runs.charlm], LIMITS, load=slow_load)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading" and r.json()["total"] == 2
        assert c.post("/runs/dates/translate", json={"text": "May 1, 2000"}).status_code == 503
        assert c.get("/runs").status_code == 503
        release.set()
        assert wait_healthy(c) == {"status": "ok", "loaded": 2, "total": 2, "in_flight": 0}
        assert c.post("/runs/dates/translate", json={"text": "May 1, 2000"}).status_code == 200


def test_a_run_that_fails_to_load_is_named_by_health(runs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(runs.dates, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with TestClient(create_app([runs.digits, broken], LIMITS)) as c:
        deadline = time.monotonic() + 20
        while c.get("/health").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert str(broken) in r.json()["detail"] and "\n" not in r.json()["detail"]
        assert "failed to load" in c.post("/runs/digits/predict", json={"image": "x"}).json()["detail"]


def test_a_folder_that_is_not_a_run_or_two_runs_with_one_name_fail_at_once(runs, tmp_path):
    from dnn.errors import CheckpointError, ConfigError

    with pytest.raises(CheckpointError, match="not a run directory"):
        create_app([tmp_path])
    twin = tmp_path / "x" / "dates"
    shutil.copytree(runs.dates, twin)
    with pytest.raises(ConfigError, match="two runs are named 'dates'"):
        create_app([runs.dates, twin])


def test_runs_lists_name_task_model_panel_and_metrics(client, loaded):
    listed = {r["name"]: r for r in client.get("/runs").json()}
    assert list(listed) == ["dates", "digits", "charlm", "sentiment", "tagger"]
    panels = {name: r["panel"] for name, r in listed.items()}
    assert panels == {"dates": "translate", "digits": "image", "charlm": "generate", "sentiment": "classify",
                      "tagger": "tag"}  # fmt: skip
    for name, r in listed.items():
        run = loaded[name]
        assert r["task"] == run.cfg.data.task and r["model"] == run.cfg.model.name
        assert r["steps"] == run.results["steps"] == 3
        assert r["parameters"] == sum(p.numel() for p in run.model.parameters())
        head = r["headline"]
        assert head["value"] == pytest.approx(run.results[head["split"]][head["metric"]], abs=1e-4)
        assert r["curves"] == f"/runs/{name}/curves"
    assert listed["digits"]["headline"]["metric"] == "accuracy"
    assert listed["digits"]["classes"] == [str(i) for i in range(10)]
    assert listed["sentiment"]["classes"] == ["neg", "pos"]


def test_curves_and_report(client, runs):
    curves = client.get("/runs/dates/curves").json()
    assert curves["train"]["step"] == [3] and len(curves["train"]["loss"]) == 1
    assert "exact_match" in curves["eval"]
    assert client.get("/runs/nope/curves").status_code == 404
    had = (runs.digits / "report.html").is_file()
    if not had:  # the report writer (dnn.inspect) may or may not have written one: serve whatever is there
        (runs.digits / "report.html").write_text("<!doctype html><title>report</title><p>digits</p>")
    try:
        r = client.get("/runs/digits/report")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text == (runs.digits / "report.html").read_text()
        assert client.get("/runs").json()[1]["report"] == "/runs/digits/report"
    finally:
        if not had:
            (runs.digits / "report.html").unlink()
    if not (runs.charlm / "report.html").is_file():
        assert client.get("/runs/charlm/report").status_code == 404


def test_report_and_curves_never_follow_a_symbolic_link_out_of_the_run(runs, tmp_path):
    run = tmp_path / "linked"
    shutil.copytree(runs.dates, run)
    secret = tmp_path / "secret.html"
    secret.write_text("<p>not the run's</p>")
    (run / "report.html").unlink(missing_ok=True)
    (run / "report.html").symlink_to(secret)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(runs.dates / "metrics.jsonl")  # even a real metrics file, elsewhere
    with TestClient(create_app([run], LIMITS)) as c:
        wait_healthy(c)
        for route in ("report", "curves"):
            r = c.get(f"/runs/linked/{route}")
            assert r.status_code == 404 and "not the run's" not in r.text, r.text
        listed = c.get("/runs").json()[0]
        assert listed["report"] is None and listed["curves"] is None  # not offered either
    via_link = tmp_path / "via"  # a run reached through a link to its folder is still served (its files are inside)
    via_link.symlink_to(runs.dates, target_is_directory=True)
    with TestClient(create_app([via_link], LIMITS)) as c:
        wait_healthy(c)
        assert c.get("/runs/dates/curves").status_code == 200


def test_curves_are_thinned_and_json_safe(tmp_path):
    lines = [{"kind": "train", "step": s, "epoch": 0, "loss": 1 / s, "lr": 0.1} for s in range(1, 1001)]
    lines[10]["loss"] = float("nan")  # a diverged interval: null in JSON, which has no NaN
    lines += [{"kind": "eval", "split": "valid", "step": 500, "accuracy": 0.5},
              {"kind": "eval", "split": "valid", "step": 1000, "accuracy": 0.75}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curves = read_curves(tmp_path, max_points=100)
    assert len(curves["train"]["step"]) <= 101 and curves["train"]["step"][-1] == 1000
    assert curves["train"]["step"][:3] == [1, 11, 21] and curves["train"]["loss"][1] is None
    assert curves["eval"] == {"step": [500, 1000], "accuracy": [0.5, 0.75]}


def test_the_page_and_its_files_are_served_with_no_outside_source(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in r.text
    schema = client.get("/openapi.json").json()
    assert {"/health", "/runs", "/runs/{name}/predict", "/runs/{name}/translate", "/runs/{name}/generate"} <= set(
        schema["paths"]
    )
    docs = client.get("/docs")
    assert docs.status_code == 200 and "https://" not in docs.text and "http://" not in docs.text  # works offline
    for path in schema["paths"]:
        assert f"<code>{path}</code>" in docs.text
    assert "beam_size" in docs.text and "temperature" in docs.text  # the request fields, with their limits
    from html.parser import HTMLParser

    HTMLParser().feed(docs.text)


# ---------------------------------------------------------------------------------------------- the endpoints


def test_translate_returns_the_predictors_tokens_and_attention_matrix(client, loaded):
    r = client.post("/runs/dates/translate", json={"text": "the 7th of April, 1957", "beam_size": 3})
    assert r.status_code == 200, r.text
    got = r.json()
    want = loaded["dates"].predictor.translate(["the 7th of April, 1957"], beam_size=3)[0]
    assert got["output"] == want["output"] and got["output_tokens"] == want["output_tokens"]
    assert got["source_tokens"] == list("the 7th of April, 1957")
    attention = np.array(got["attention"])  # (T_out, S)
    assert attention.shape == (len(got["output_tokens"]), len(got["source_tokens"]))
    np.testing.assert_allclose(attention, np.array(want["attention"]), atol=1e-4)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-3)


def test_predict_classifies_text_with_the_runs_probabilities(client, loaded):
    got = client.post("/runs/sentiment/predict", json={"text": "a great film"}).json()
    want = loaded["sentiment"].predictor.predict_proba(["a great film"])[0]
    assert got["classes"] == ["neg", "pos"]
    np.testing.assert_allclose(got["probabilities"], want.tolist(), atol=1e-4)
    assert got["label"] == ["neg", "pos"][int(want.argmax())]


def test_predict_tags_text(client, loaded):
    got = client.post("/runs/tagger/predict", json={"text": "the cat sat on 3 mats"}).json()
    want = loaded["tagger"].predictor.predict_texts(["the cat sat on 3 mats"])[0]
    assert got == {"tokens": want["tokens"], "tags": want["tags"]}


def test_predict_classifies_an_image_and_returns_the_first_layers_feature_maps(client, loaded, digit_png):
    got = client.post("/runs/digits/predict", json={"image": "data:image/png;base64," + digit_png}).json()
    run = loaded["digits"]
    import base64

    x = load_image(io.BytesIO(base64.b64decode(digit_png)), 8, grayscale=True).unsqueeze(0)  # (1, 1, 8, 8)
    want = run.predictor.predict_tensor(x)[0]
    np.testing.assert_allclose(got["probabilities"], want.tolist(), atol=1e-4)
    assert got["label"] == str(int(want.argmax()))
    maps = got["feature_maps"]
    with torch.no_grad():
        c1 = run.model.features[0](run.predictor.normalize(x))[0]  # LeNet-5's C1: (6, 28, 28)
    assert maps["layer"] == "features.0" and maps["shape"] == [6, 28, 28]
    np.testing.assert_allclose(np.array(maps["maps"]), c1.numpy(), atol=1e-3)
    none = client.post("/runs/digits/predict", json={"image": digit_png, "feature_maps": 0}).json()
    assert "feature_maps" not in none and none["probabilities"] == got["probabilities"]


def test_feature_maps_of_concurrent_requests_are_each_their_own(runs, png):
    served = load_served("digits", runs.digits)
    images = [png(np.full((8, 8), 40 * k, dtype=np.uint8)) for k in range(4)]
    alone = [inference.predict(served, LIMITS, image=image)["feature_maps"]["maps"] for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: inference.predict(served, LIMITS, image=images[i % 4]), range(40)))
    for i, out in enumerate(together):
        assert out["feature_maps"]["maps"] == alone[i % 4]


def test_generate_continues_the_prompt_like_the_runs_generator(client, loaded):
    body = {"prompt": "The ", "length": 30, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 3}
    got = client.post("/runs/charlm/generate", json=body).json()
    want = loaded["charlm"].predictor.generate("The ", 30, 0.7, 5, 0.9, 3)
    assert got["text"] == want and got["prompt"] == "The " and got["text"] == "The " + got["continuation"]
    greedy = [client.post("/runs/charlm/generate", json={"prompt": "a", "length": 10, "temperature": 0}).json()
              for _ in range(2)]  # fmt: skip
    assert greedy[0] == greedy[1] and len(greedy[0]["continuation"]) >= 10
    assert client.post("/runs/charlm/generate", json={"length": 5}).status_code == 200  # an empty prompt is fine


# ---------------------------------------------------------------------------------------------- the limits


def test_a_body_over_the_limit_is_413_declared_or_streamed(client):
    big = b'{"text": "' + b"a" * LIMITS.max_body_bytes + b'"}'
    r = client.post("/runs/dates/translate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"text": "'
        for _ in range(LIMITS.max_body_bytes // 10_000 + 1):
            yield b"a" * 10_000
        yield b'"}'

    r = client.post("/runs/dates/translate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/runs/dates/translate", json={"text": "May 1, 2000"}).status_code == 200


BAD_REQUESTS = [
    ("dates", "translate", {"text": ""}, ["text", "empty"]),
    ("dates", "translate", {"text": "   "}, ["empty"]),
    ("dates", "translate", {"text": "x" * 41}, ["41 tokens", "40", "--max-tokens"]),
    ("sentiment", "predict", {"text": " ".join(["film"] * 41)}, ["41 tokens"]),
    ("charlm", "generate", {"prompt": "y" * 41}, ["prompt", "41 tokens"]),
    ("charlm", "generate", {"length": 41}, ["length", "--max-tokens"]),
    ("nope", "translate", {"text": "x"}, ["unknown run 'nope'", "dates"]),
    ("dates", "translate", {"text": "x", "beam_size": 0}, ["beam_size"]),
    ("dates", "translate", {"text": "x", "beam_size": 17}, ["beam_size"]),
    ("dates", "translate", {"text": "x", "beam_size": "2"}, ["beam_size"]),
    ("dates", "translate", {"text": "x", "beam": 2}, ["beam"]),
    ("dates", "translate", {}, ["text", "required"]),
    ("charlm", "generate", {"temperature": -1}, ["temperature"]),
    ("charlm", "generate", {"top_p": 0}, ["top_p"]),
    ("charlm", "generate", {"top_k": 0}, ["top_k"]),
    ("charlm", "generate", {"length": True}, ["length"]),
    ("charlm", "generate", {"length": 0}, ["length"]),
    ("charlm", "generate", {"length": 10**30}, ["length"]),
    ("charlm", "generate", {"temperature": 1e-45}, ["temperature", "0 (greedy) or at least"]),
    ("charlm", "generate", {"temperature": float("nan")}, ["temperature", "finite"]),
    ("charlm", "generate", {"temperature": float("inf")}, ["temperature"]),
    ("charlm", "generate", {"temperature": 101}, ["temperature"]),
    ("charlm", "generate", {"top_p": 1e-300}, ["top_p"]),
    ("charlm", "generate", {"top_p": float("nan")}, ["top_p"]),
    ("charlm", "generate", {"top_p": 1.5}, ["top_p"]),
    ("charlm", "generate", {"top_k": 10**7}, ["top_k"]),
    ("charlm", "generate", {"top_k": 2.5}, ["top_k"]),
    ("charlm", "generate", {"seed": -1}, ["seed"]),
    ("charlm", "generate", {"seed": 2**63}, ["seed"]),
    ("charlm", "generate", {"seed": "1"}, ["seed"]),
    ("digits", "predict", {"image": "AAAA", "feature_maps": 65}, ["feature_maps"]),
    ("digits", "predict", {"image": "AAAA", "feature_maps": -1}, ["feature_maps"]),
    ("dates", "generate", {"prompt": "x"}, ["seq2seq run", "/translate"]),
    ("digits", "predict", {"text": "x"}, ["image"]),
    ("sentiment", "predict", {"image": "AAAA"}, ["text"]),
    ("digits", "predict", {"image": "%%% not base64"}, ["base64"]),
    ("digits", "predict", {"image": "aGVsbG8="}, ["not an image"]),
    ("digits", "predict", {"image": ""}, ["empty"]),
]


@pytest.mark.parametrize("name, endpoint, body, words", BAD_REQUESTS)
def test_a_bad_input_is_422_with_a_one_line_reason(client, name, endpoint, body, words):
    raw = json.dumps(body).encode()  # NaN and Infinity as a careless client sends them (httpx would refuse)
    r = client.post(f"/runs/{name}/{endpoint}", content=raw, headers={"content-type": "application/json"})
    one_line_422(r, *words)


@pytest.mark.parametrize("body", [{"temperature": 0.001}, {"temperature": 100}, {"top_p": 1e-6}, {"top_k": 10**6},
                                  {"seed": 2**63 - 1}, {"temperature": 1, "top_p": 1}])  # fmt: skip
def test_the_edges_of_every_range_are_served(client, body):
    r = client.post("/runs/charlm/generate", json={"prompt": "The ", "length": 5, **body})
    assert r.status_code == 200, r.text


def test_a_dnn_error_raised_by_the_library_is_422_not_500(client, monkeypatch):
    from dnn.errors import ConfigError, DataError

    predictor = client.app.state.dnn.runs["charlm"].predictor
    for err in (ConfigError("temperature must be finite, got 1e-45"), DataError("prompt: no tokens")):

        def fail(*args, err=err, **kwargs):
            raise err

        monkeypatch.setattr(predictor, "generate", fail)
        one_line_422(client.post("/runs/charlm/generate", json={"prompt": "x"}), str(err))


def test_bad_json_and_too_many_pixels_are_422(client, png):
    r = client.post("/runs/dates/translate", content=b"{not json", headers={"content-type": "application/json"})
    one_line_422(r, "JSON")
    detail = one_line_422(client.post("/runs/digits/predict", json={"image": png(np.zeros((65, 64)))}), "--max-pixels")
    assert "64×65 = 4,160 pixels" in detail
    assert client.post("/runs/digits/predict", json={"image": png(np.zeros((64, 64)))}).status_code == 200


def _blocking(served, method: str, entered: threading.Event, release: threading.Event):
    """Make ``served.predictor.<method>`` wait for ``release`` (after setting ``entered``) before it runs."""
    original = getattr(served.predictor, method)

    def wrapper(*args, **kwargs):
        entered.set()
        release.wait(20)
        return original(*args, **kwargs)

    setattr(served.predictor, method, wrapper)
    return original


def test_more_requests_than_the_concurrency_limit_get_429_at_once(runs):
    app = create_app([runs.dates], ServeLimits(max_concurrency=1, timeout_s=20))
    with TestClient(app) as c:
        wait_healthy(c)
        entered, release = threading.Event(), threading.Event()
        _blocking(app.state.dnn.runs["dates"], "translate", entered, release)
        first = {}
        worker = threading.Thread(
            target=lambda: first.update(r=c.post("/runs/dates/translate", json={"text": "May 1, 2000"}))
        )
        worker.start()
        assert entered.wait(20)
        start = time.monotonic()
        r = c.post("/runs/dates/translate", json={"text": "May 2, 2000"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "limit 1" in r.json()["detail"]
        assert time.monotonic() - start < 2  # refused at once, not queued
        assert c.get("/health").status_code == 200
        release.set()
        worker.join(20)
        assert first["r"].status_code == 200
        assert c.post("/runs/dates/translate", json={"text": "May 3, 2000"}).status_code == 200


def test_a_request_past_the_timeout_is_503_and_the_server_stays_up(runs):
    # 1.5 s: far past a real translation of one date (~0.03 s): the last request passes on a loaded CI machine
    app = create_app([runs.dates], ServeLimits(max_concurrency=1, timeout_s=1.5))
    with TestClient(app) as c:
        wait_healthy(c)
        entered, release = threading.Event(), threading.Event()
        original = _blocking(app.state.dnn.runs["dates"], "translate", entered, release)
        start = time.monotonic()
        r = c.post("/runs/dates/translate", json={"text": "May 1, 2000"})
        assert r.status_code == 503 and "--timeout" in r.json()["detail"]
        assert 1.5 <= time.monotonic() - start < 5
        assert c.get("/health").status_code == 200
        # the late worker still holds its slot: no pile of abandoned work behind the limit
        assert c.post("/runs/dates/translate", json={"text": "May 1, 2000"}).status_code == 429
        app.state.dnn.runs["dates"].predictor.translate = original
        release.set()  # the late result is discarded
        deadline = time.monotonic() + 20
        while c.get("/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.post("/runs/dates/translate", json={"text": "May 1, 2000"}).status_code == 200


def test_a_request_past_its_time_is_stopped_and_its_slot_freed_at_once(runs):
    """The deadline stops decoding at its next step: a generation that would take minutes ends with the 503."""
    limits = ServeLimits(max_concurrency=2, timeout_s=1.0, max_tokens=10**7)
    app = create_app([runs.charlm], limits)
    with TestClient(app) as c:
        wait_healthy(c)
        long = {"prompt": "The ", "length": 100_000}
        with ThreadPoolExecutor(2) as pool:
            slow = list(pool.map(lambda _: c.post("/runs/charlm/generate", json=long), range(2)))
        assert [r.status_code for r in slow] == [503, 503] and "was stopped" in slow[0].json()["detail"]
        start = time.monotonic()
        while c.get("/health").json()["in_flight"] and time.monotonic() - start < 10:
            time.sleep(0.01)
        freed = time.monotonic() - start
        r = c.post("/runs/charlm/generate", json={"prompt": "The ", "length": 5})
        assert r.status_code == 200 and freed < 2, (r.status_code, freed)


def test_the_deadline_stops_only_the_thread_that_works_within_it(runs):
    served = load_served("charlm", runs.charlm)
    handles = inference.watch_deadlines(served.run.model)
    try:
        start = time.monotonic()
        with pytest.raises(inference.Cancelled, match="limit of 0.1 s"), inference.within(inference.Deadline(0.1)):
            served.predictor.generate("The ", 100_000)
        assert time.monotonic() - start < 2
        deadline = inference.Deadline(60)
        threading.Timer(0.1, deadline.cancel).start()
        with pytest.raises(inference.Cancelled, match="cancelled"), inference.within(deadline):
            served.predictor.generate("The ", 100_000)
        expired = inference.Deadline(0.01)
        time.sleep(0.02)
        with ThreadPoolExecutor(1) as pool:  # another thread knows nothing of this one's deadline
            assert pool.submit(served.predictor.generate, "The ", 5).result(timeout=20).startswith("The ")
        with pytest.raises(inference.Cancelled):
            with inference.within(expired):
                pass
        assert served.predictor.generate("The ", 5).startswith("The ")  # no deadline left behind
    finally:
        for handle in handles:
            handle.remove()
