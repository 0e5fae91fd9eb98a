"""Every kind of run through the predictor contract: ``GET /runs`` describes each run by its predictor (modality,
options, what it explains) and ``POST /runs/{name}/run`` answers it as its predictor does — captioning, video,
the adding problem and speech, which had nothing to try before, and the older kinds too. Options are checked by
the predictor alone (422 with its one-line message), files are bounded before they are decoded, and the files of a
request are gone once it is answered."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from fastapi.testclient import TestClient  # noqa: E402
from serve_kinds import ADDING_EXAMPLE, KINDS, gif_bytes, kind_runs, wav_bytes  # noqa: E402

from dnn.errors import ConfigError, DataError  # noqa: E402
from dnn.run import load_run  # noqa: E402
from dnn.serve import ServeLimits, create_app  # noqa: E402
from dnn.serve.uploads import MAX_AUDIO_SECONDS, MAX_FRAMES, MAX_INPUTS  # noqa: E402

LIMITS = ServeLimits(max_body_bytes=300_000, max_tokens=40, max_pixels=64 * 64, max_concurrency=2, timeout_s=30)


@pytest.fixture(scope="session")
def kinds(tmp_path_factory):
    return kind_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def client(kinds):
    with TestClient(create_app(kinds.all, LIMITS)) as c:
        wait_healthy(c)
        yield c


@pytest.fixture(scope="module")
def loaded(kinds):
    """The runs loaded directly: the reference the API must agree with."""
    return {name: load_run(getattr(kinds, name)) for name in KINDS}


def wait_healthy(client: TestClient, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health").text
        time.sleep(0.02)


def upload(path, name: str | None = None) -> dict:
    return {"file": base64.b64encode(path.read_bytes()).decode(), "name": name or path.name}


def one_line_422(response, detail: str | None = None, *words: str) -> str:
    assert response.status_code == 422, response.text
    got = response.json()["detail"]
    assert isinstance(got, str) and got and "\n" not in got, got
    assert detail is None or got == detail, got
    for word in words:
        assert word in got, got
    return got


def inputs_of(kinds) -> dict:
    """Per kind: (what the API is sent, what the predictor reads)."""
    f = kinds.files
    return {"caption": (upload(f.png), str(f.png)), "video": (upload(f.gif), str(f.gif)),
            "adding": (ADDING_EXAMPLE, ADDING_EXAMPLE), "speech": (upload(f.wav), str(f.wav))}  # fmt: skip


# ---------------------------------------------------------------------------------------------- the description


def test_each_run_is_described_by_its_predictor(client, loaded):
    listed = {r["name"]: r for r in client.get("/runs").json()}
    assert list(listed) == list(KINDS)
    want_modality = {"caption": "image", "video": "video", "adding": "text", "speech": "audio"}
    for name, run in listed.items():
        predictor = loaded[name].predictor
        assert run["panel"] == "run" and run["modality"] == want_modality[name] == predictor.modality
        assert (run["kind"], run["what"], run["inputs"], run["outputs"], run["explains"]) == (
            predictor.kind, predictor.what, predictor.inputs, predictor.outputs, predictor.explains)  # fmt: skip
        assert run["options"] == json.loads(json.dumps([o.describe() for o in predictor.options]))
    assert [o["name"] for o in listed["speech"]["options"]] == ["beam_size"]
    beam = listed["speech"]["options"][0]
    assert (beam["type"], beam["default"], beam["low"], beam["high"]) == ("int", 1, 1, 16)
    assert [o["name"] for o in listed["caption"]["options"]] == ["beam_size", "length_penalty"]
    assert listed["adding"]["options"] == [] and listed["adding"]["explains"] == ""
    assert listed["video"]["explains"] and listed["caption"]["explains"] and listed["speech"]["explains"]
    assert {n: r["accept"] for n, r in listed.items()} == {"caption": "image/*", "video": ".gif,.npy", "adding": None,
                                                           "speech": ".wav,.flac,.ogg"}  # fmt: skip


# ---------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("name", KINDS)
def test_the_generic_route_answers_each_kind_as_its_predictor_does(client, loaded, kinds, name):
    sent, local = inputs_of(kinds)[name]
    predictor = loaded[name].predictor
    r = client.post(f"/runs/{name}/run", json={"inputs": [sent], "explain": bool(predictor.explains)})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["run"] == name and got["kind"] == predictor.kind and len(got["rows"]) == 1
    row, want = got["rows"][0], predictor.predict([local], **predictor.check({}))[0]
    shown = sent if isinstance(sent, str) else sent["name"]
    assert row["input"] == shown  # the client's name, never the server's temporary path
    assert set(row) == set(want)
    for key, value in want.items():
        if key in ("input", "file"):
            continue
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, abs=1e-4), key
        elif key == "attention":
            np.testing.assert_allclose(np.array(row[key]), np.array(value), atol=1e-4)
        else:
            assert row[key] == json.loads(json.dumps(value)), key
    if name == "adding":
        assert got["explanation"] is None and row["target"] == pytest.approx(1.2)
        return
    picture = got["explanation"]
    assert picture["explains"] == predictor.explains and shown in picture["title"]
    png = base64.b64decode(picture["png"])
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.size == (picture["width"], picture["height"])
        assert img.width > 100 and img.height > 100


def test_several_inputs_and_options_are_the_predictors(client, loaded, kinds):
    f = kinds.files
    body = {"inputs": [upload(f.npy), upload(f.gif, "same clip.gif")]}
    rows = client.post("/runs/video/run", json=body).json()["rows"]
    want = loaded["video"].predictor.predict([str(f.npy), str(f.gif)])
    assert [r["input"] for r in rows] == ["clip.npy", "same clip.gif"]
    assert [r["label"] for r in rows] == [w["label"] for w in want]
    speech = loaded["speech"].predictor
    got = client.post("/runs/speech/run", json={"inputs": [upload(f.wav)], "options": {"beam_size": 3}}).json()
    assert got["rows"][0]["text"] == speech.predict([str(f.wav)], beam_size=3)[0]["text"]
    caption = loaded["caption"].predictor
    options = {"beam_size": 2, "length_penalty": 0.5}
    got = client.post("/runs/caption/run", json={"inputs": [upload(f.png)], "options": options}).json()
    assert got["rows"][0]["caption"] == caption.predict([str(f.png)], **options)[0]["caption"]
    adding = client.post("/runs/adding/run", json={"inputs": ["0.5* 0.25*", "1 0.1* 0.2 0.3*"]}).json()["rows"]
    assert [r["target"] for r in adding] == [0.75, 0.4] and [r["length"] for r in adding] == [2, 4]


def test_the_older_runs_answer_the_generic_route_too(runs):
    with TestClient(create_app([runs.dates, runs.digits, runs.sentiment, runs.charlm], LIMITS)) as c:
        wait_healthy(c)
        listed = {r["name"]: r for r in c.get("/runs").json()}
        panels = {n: (r["panel"], r["modality"]) for n, r in listed.items()}
        assert panels == {"dates": ("translate", "text"), "digits": ("image", "image"),
                          "sentiment": ("classify", "text"), "charlm": ("generate", "text")}  # fmt: skip
        dates = c.post("/runs/dates/run", json={"inputs": ["May 1, 2000"], "options": {"beam_size": 2},
                                                "explain": True}).json()  # fmt: skip
        assert dates["rows"][0]["output"] and dates["explanation"]["width"] > 0
        sentiment = c.post("/runs/sentiment/run", json={"inputs": ["a great film"]}).json()
        assert sentiment["rows"][0]["label"] in ("neg", "pos")
        # the older generate endpoint keeps the predictor's rules between options, as the command line does
        generator = c.app.state.dnn.runs["charlm"].predictor
        with pytest.raises(ConfigError) as said:
            generator.check({"temperature": 0, "top_k": 5})
        r = c.post("/runs/charlm/generate", json={"prompt": "The ", "temperature": 0, "top_k": 5})
        one_line_422(r, str(said.value), "--top-k")
        r = c.post("/runs/charlm/run", json={"inputs": ["The "], "options": {"temperature": 0, "top_k": 5}})
        one_line_422(r, str(said.value))


# ---------------------------------------------------------------------------------------------- bad requests


OPTION_ERRORS = [
    ("speech", {"beam": 2}),
    ("speech", {"beam_size": 17}),
    ("speech", {"beam_size": 0}),
    ("speech", {"beam_size": "2"}),
    ("speech", {"beam_size": 2.5}),
    ("caption", {"length_penalty": 6}),
    ("caption", {"length_penalty": 0.5}),  # a rule between options: length penalty needs a beam search
    ("adding", {"beam_size": 2}),
    ("video", {"top_k": 5}),
]


@pytest.mark.parametrize("name, options", OPTION_ERRORS)
def test_an_unknown_or_out_of_range_option_is_422_with_the_predictors_one_line(client, loaded, kinds, name, options):
    predictor = loaded[name].predictor
    with pytest.raises(ConfigError) as said:
        predictor.check(options)
    sent = inputs_of(kinds)[name][0]
    one_line_422(client.post(f"/runs/{name}/run", json={"inputs": [sent], "options": options}), str(said.value))


def test_unknown_and_out_of_range_options_say_what_the_run_takes(client, kinds):
    sent = inputs_of(kinds)["speech"][0]
    r = client.post("/runs/speech/run", json={"inputs": [sent], "options": {"beam": 2}})
    one_line_422(r, "--beam does not apply to a speech run (it takes --beam-size)")
    r = client.post("/runs/speech/run", json={"inputs": [sent], "options": {"beam_size": 17}})
    one_line_422(r, "--beam-size: must be an integer from 1 to 16, got 17")


BAD_FORMS = [
    ("speech", {"inputs": ["three"]}, ["inputs[0]", "audio files", '{"file": <base64>']),
    ("adding", {"inputs": [{"file": "AAAA"}]}, ["inputs[0]", "texts", "string"]),
    ("adding", {"inputs": [ADDING_EXAMPLE], "explain": True}, ["regression run", "draws no picture"]),
    ("adding", {"inputs": ["0.3 0.7 0.1"]}, ["marked"]),
    ("adding", {"inputs": []}, ["inputs", "at least 1"]),
    ("adding", {"inputs": [ADDING_EXAMPLE] * (MAX_INPUTS + 1)}, ["inputs", f"at most {MAX_INPUTS}"]),
    ("adding", {"inputs": [3]}, ["inputs.0", "a text or"]),
    ("adding", {"inputs": [ADDING_EXAMPLE], "options": []}, ["options"]),
    ("adding", {"input": [ADDING_EXAMPLE]}, ["input"]),
    ("adding", {"inputs": [" ".join(["0.1"] * 41)]}, ["inputs[0]", "41 tokens", "--max-tokens"]),
    ("speech", {"inputs": [{"file": "%%% not base64"}]}, ["inputs[0]", "not valid base64"]),
    ("speech", {"inputs": [{"file": ""}]}, ["inputs[0]", "empty"]),
    ("speech", {"inputs": [{"file": "aGVsbG8="}]}, ["inputs[0]", "not audio"]),
    ("caption", {"inputs": [{"file": "aGVsbG8="}]}, ["inputs[0]", "not an image"]),
    ("video", {"inputs": [{"file": "aGVsbG8="}]}, ["inputs[0]", "not an image"]),
    ("video", {"inputs": [{"file": "AAAA", "other": 1}]}, ["other"]),
    ("nope", {"inputs": ["x"]}, ["unknown run 'nope'"]),
]


@pytest.mark.parametrize("name, body, words", BAD_FORMS)
def test_an_input_of_the_wrong_form_is_422_in_one_line(client, name, body, words):
    one_line_422(client.post(f"/runs/{name}/run", json=body), None, *words)


def b64(data: bytes, name: str) -> dict:
    return {"file": base64.b64encode(data).decode(), "name": name}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_files_over_the_limits_are_refused_before_they_are_decoded(client):
    big = b64(b"\0" * LIMITS.max_body_bytes, "big.wav")
    r = client.post("/runs/speech/run", json={"inputs": [big]})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((65, 64), np.uint8)).save(buffer, format="PNG")
    r = client.post("/runs/caption/run", json={"inputs": [b64(buffer.getvalue(), "big.png")]})
    one_line_422(r, "inputs[0]: 64×65 = 4,160 pixels, over the limit of 4,096 (--max-pixels)")
    frames = npy_bytes(np.zeros((MAX_FRAMES + 1, 1, 1), np.float32))
    one_line_422(client.post("/runs/video/run", json={"inputs": [b64(frames, "long.npy")]}), None, "1,001 frames")
    wide = npy_bytes(np.zeros((2, 64, 33), np.float32))
    one_line_422(client.post("/runs/video/run", json={"inputs": [b64(wide, "wide.npy")]}), None, "--max-pixels")
    gif = gif_bytes(np.stack([np.zeros((64, 33)), np.ones((64, 33))]))  # two frames that differ (none merged)
    one_line_422(client.post("/runs/video/run", json={"inputs": [b64(gif, "wide.gif")]}), None, "--max-pixels")
    flat = npy_bytes(np.zeros((4, 12), np.float32))
    one_line_422(client.post("/runs/video/run", json={"inputs": [b64(flat, "flat.npy")]}), None, "(T, H, W)")
    long = wav_bytes(MAX_AUDIO_SECONDS + 1, rate=1000)
    r = client.post("/runs/speech/run", json={"inputs": [b64(long, "long.wav")]})
    one_line_422(r, None, "61.0 s of audio", f"limit of {MAX_AUDIO_SECONDS:g} s")


# ---------------------------------------------------------------------------------------------- temporary files


def test_a_requests_files_exist_while_it_runs_and_are_removed_after(client, kinds, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    predictor = client.app.state.dnn.runs["video"].predictor
    original, seen = predictor.predict, []

    def watching(paths, **options):
        seen.extend(paths)
        assert all(os.path.isfile(p) and str(p).startswith(str(scratch)) for p in paths)
        assert oct(os.stat(os.path.dirname(os.path.dirname(paths[0]))).st_mode & 0o777) == "0o700"
        return original(paths, **options)

    monkeypatch.setattr(predictor, "predict", watching)
    body = {"inputs": [upload(kinds.files.gif, "../../etc/passwd.gif"), upload(kinds.files.npy)], "explain": True}
    r = client.post("/runs/video/run", json=body)
    assert r.status_code == 200, r.text
    assert [row["input"] for row in r.json()["rows"]] == ["passwd.gif", "clip.npy"]
    assert len(seen) == 2 and not any(os.path.exists(p) for p in seen) and os.listdir(scratch) == []

    def failing(paths, **options):
        raise DataError(f"{paths[0]}: cannot read the clip (broken)")

    monkeypatch.setattr(predictor, "predict", failing)
    r = client.post("/runs/video/run", json={"inputs": [upload(kinds.files.gif)]})
    one_line_422(r, "clip.gif: cannot read the clip (broken)")  # the client's name, not the server's folder
    assert os.listdir(scratch) == []


def test_the_generic_route_holds_a_slot_and_stops_at_its_time_like_the_others(kinds, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = create_app([kinds.adding, kinds.video], ServeLimits(max_concurrency=1, timeout_s=1.5))
    with TestClient(app) as c:
        wait_healthy(c)
        predictor = app.state.dnn.runs["video"].predictor
        entered, release = threading.Event(), threading.Event()
        original = predictor.predict

        def blocking(paths, **options):
            entered.set()
            release.wait(20)
            return original(paths, **options)

        monkeypatch.setattr(predictor, "predict", blocking)
        first = {}
        worker = threading.Thread(
            target=lambda: first.update(r=c.post("/runs/video/run", json={"inputs": [upload(kinds.files.npy)]}))
        )
        worker.start()
        assert entered.wait(20)
        r = c.post("/runs/adding/run", json={"inputs": [ADDING_EXAMPLE]})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        worker.join(20)
        assert first["r"].status_code == 503 and "--timeout" in first["r"].json()["detail"]
        release.set()
        deadline = time.monotonic() + 20
        while c.get("/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.post("/runs/adding/run", json={"inputs": [ADDING_EXAMPLE]}).status_code == 200
        assert os.listdir(tmp_path) == []  # the late request's files went with it


# ---------------------------------------------------------------------------------------------- the older routes


def test_the_older_routes_take_their_limits_from_the_predictors_schema():
    from dnn.serve.app import GenerateRequest, TranslateRequest
    from dnn.tasks.language import TextGenerator
    from dnn.tasks.seq2seq import Seq2SeqPredictor

    def limits(model, field):
        info = model.model_fields[field]
        bounds = {type(m).__name__: m for m in info.metadata}
        return info.default, bounds["Ge"].ge, bounds["Le"].le

    beam = next(o for o in Seq2SeqPredictor.options if o.name == "beam_size")
    assert limits(TranslateRequest, "beam_size") == (beam.default, beam.low, beam.high)
    for name in ("seed", "top_k", "top_p"):
        option = next(o for o in TextGenerator.options if o.name == name)
        assert limits(GenerateRequest, name) == (option.default, option.low, option.high)
