"""Every kind of run on every surface: a tiny run of each registered predictor kind × {predict, inspect INPUT,
eval --data, export}. Each cell works, with its output checked, or is a one-line refusal (exit 2) saying why —
and the refusals of eval and export are the ones the README lists. (The server's panels: tests/serve.)

Also: no code outside ``dnn.tasks`` switches on a predictor's ``kind`` string (the contract is asked instead)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dnn.cli import main
from dnn.tasks.registry import predictor_classes
from dnn.train import train

ROOT = Path(__file__).resolve().parents[2]
T1 = ["train.threads=1"]
SPEECH = shutil.which("espeak-ng") is not None


def _reviews(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(40):
            writer.writerow(
                [f"the film was {'good great' if i % 2 else 'bad awful'} {i % 7}", "pos" if i % 2 else "neg"]
            )
    return path


def _conll(path: Path) -> Path:
    words = ["the", "cat", "sat", "on", "mat"]
    text = "".join("".join(f"{words[(i + j) % 5]} {'DET' if (i + j) % 5 == 0 else 'W'}\n" for j in range(4)) + "\n"
                   for i in range(30))  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path


# kind → (recipe, overrides given the data folder, the input a user gives, whether it is a text)
SPECS = {
    "image": ("digits-lenet5", lambda d: ["train.max_steps=2", "data.image_size=8", *T1], "digit.png", False),
    "classify": ("sentiment-lstm", lambda d: [f"data.train={_reviews(d / 'reviews.csv')}", "data.min_freq=1",
                 "train.max_steps=2", "model.hidden_size=8", "model.embedding_size=8", *T1], "a good film", True),
    "tag": ("tagging-bilstm", lambda d: [f"data.train={_conll(d / 'tags.conll')}", "data.min_freq=1",
            "train.max_steps=2", "model.hidden_size=8", "model.embedding_size=8", *T1], "the cat sat", True),
    "translate": ("dates-attention", lambda d: ["data.sizes=[32,8,8]", "train.max_steps=2", "train.batch_size=8",
                  "model.hidden_size=8", "model.embedding_size=8", *T1], "March 3, 2021", True),
    "generate": ("charlm-pydoc", lambda d: ["data.source=null", f"data.train={d / 'book.txt'}", "model.num_layers=1",
                 "train.max_steps=2", "train.batch_size=2", "data.length=10", "model.hidden_size=8",
                 "model.embedding_size=8", *T1], "The ", True),
    "transcribe": ("speech-digits", lambda d: ["data.sizes=[8,4,4]", "train.batch_size=4", "model.hidden_size=8",
                   "model.conv_channels=8", "model.num_layers=1", "train.max_steps=1", f"data.cache={d / 'speech'}",
                   *T1], "one.wav", False),
    "regress": ("adding-lstm", lambda d: ["data.sizes=[16,8,8]", "data.length=10", "model.hidden_size=8",
                "train.max_steps=2", "train.batch_size=8", *T1], "0.3 0.7* 0.1 0.5*", True),
    "caption": ("caption-digits", lambda d: ["data.sizes=[16,8,8]", "data.width=24", "data.max_digits=2",
                "model.channels=[4,8]", "model.feature_size=8", "model.embedding_size=8", "model.hidden_size=8",
                "model.attention_hidden_size=8", "train.max_steps=2", "train.batch_size=8", *T1], "scene.png", False),
    "video": ("video-moving-digits", lambda d: ["data.sizes=[16,8,8]", "data.frames=4", "data.frame_size=12",
              "data.distractors=0", "model.channels=[4,8]", "model.frame_features=8", "model.hidden_size=8",
              "train.max_steps=2", "train.batch_size=8", *T1], "clip.npy", False),
}  # fmt: skip
KINDS = [kind for kind in SPECS if kind != "transcribe" or SPEECH]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, SimpleNamespace]:
    root = tmp_path_factory.mktemp("kinds")
    (root / "book.txt").write_text("The cat sat on the mat. The dog ran to the house.\n" * 20, encoding="utf-8")
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(root / "digit.png")
    canvas = np.zeros((16, 24), np.uint8)
    canvas[4:12, 3:9] = 255
    Image.fromarray(canvas).save(root / "scene.png")
    clip = np.zeros((4, 12, 12), np.float32)
    for t in range(4):
        clip[t, 4:8, 1 + 2 * t : 5 + 2 * t] = 1.0
    np.save(root / "clip.npy", clip)
    out = {}
    for kind in KINDS:
        recipe, overrides, given, is_text = SPECS[kind]
        run = root / kind
        train(recipe, overrides(root), run_dir=run, progress=False)
        if kind == "transcribe":  # a recording of the run's own test data, as a user would bring one
            (folder,) = (root / "speech").iterdir()
            shutil.copy(sorted((folder / "wav" / "test").glob("*.wav"))[0], root / "one.wav")
        item = given if is_text else str(root / given)
        out[kind] = SimpleNamespace(run=run, input=item, text=is_text, root=root)
    return out


def _one_line_refusal(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("dnn: error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_every_registered_kind_is_in_the_matrix():
    assert {cls.kind for cls in predictor_classes()} == set(SPECS)


@pytest.mark.parametrize("kind", KINDS)
def test_predict(kinds, kind, capsys):
    k = kinds[kind]
    assert main(["predict", str(k.run), k.input, *(["--text"] if k.text else [])]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    if kind == "generate":  # the prompt and its continuation, line breaks and all
        assert out.startswith("The ") and len(out) > len("The ")
        return
    assert len(lines) == 1 and lines[0].strip()
    if kind in ("image", "classify", "video"):
        _, label, probability = lines[0].split("\t")
        assert label and 0.0 <= float(probability) <= 1.0
    elif kind == "tag":
        assert [pair.split("/")[0] for pair in lines[0].split()] == ["the", "cat", "sat"]
    elif kind == "regress":
        assert lines[0].endswith("(the marked values sum to 1.2000)")
    elif kind in ("transcribe", "caption"):
        assert lines[0].split("\t")[0] == k.input


def test_predict_refuses_an_option_the_run_does_not_take(kinds, capsys):
    err = _one_line_refusal(capsys, ["predict", str(kinds["image"].run), kinds["image"].input, "--beam-size", "3"])
    assert "--beam-size does not apply to an image classification run (it takes no options)" in err
    err = _one_line_refusal(capsys, ["predict", str(kinds["translate"].run), "x", "--text", "--top-k", "3"])
    assert "--top-k does not apply to a seq2seq run (it takes --beam-size, --length-penalty, --n-best)" in err


@pytest.mark.parametrize("kind", KINDS)
def test_inspect_an_input(kinds, kind, capsys, tmp_path):
    k = kinds[kind]
    cls = next(c for c in predictor_classes() if c.kind == kind)
    argv = ["inspect", str(k.run), k.input, "--out", str(tmp_path / "report")]
    if not cls.explains:
        assert "draws no picture of an input" in _one_line_refusal(capsys, argv)
        return
    assert main(argv) == 0, capsys.readouterr().err
    drawn = sorted(p.name for p in (tmp_path / "report" / "figures").glob("*_input_1.png"))
    assert len(drawn) == 1 and (tmp_path / "report" / "figures" / drawn[0]).stat().st_size > 1000


def _eval_data(kind: str, root: Path) -> Path | None:
    """A file or folder in the run's training format to evaluate on, where the kind trains on files."""
    if kind == "classify":
        return _reviews(root / "more-reviews.csv")
    if kind == "tag":
        return _conll(root / "more.conll")
    if kind == "generate":
        (root / "more.txt").write_text("The cat ran to the mat.\n" * 5, encoding="utf-8")
        return root / "more.txt"
    if kind == "translate":
        (root / "dates.tsv").write_text("March 3, 2021\t2021-03-03\n5 May 1999\t1999-05-05\n", encoding="utf-8")
        return root / "dates.tsv"
    if kind == "image":
        for label in ("0", "1"):
            (root / "digits" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "digit.png", root / "digits" / label / "a.png")
        return root / "digits"
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_eval_data(kinds, kind, capsys):
    k = kinds[kind]
    data = _eval_data(kind, k.root)
    if data is None:  # trained on built-in data (the speech run here too: tests/smoke/test_cli_speech_eval.py)
        err = _one_line_refusal(capsys, ["eval", str(k.run), "--data", str(k.root / "book.txt")])
        assert "built-in data" in err
        return
    assert main(["eval", str(k.run), "--data", str(data)]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["test"] and all(isinstance(v, (int, float)) for v in out["test"].values())


@pytest.mark.parametrize("kind", KINDS)
def test_export(kinds, kind, capsys, tmp_path):
    k = kinds[kind]
    argv = ["export", str(k.run), "--out", str(tmp_path / "exported")]
    code = main(argv)
    if code == 0:
        assert json.loads((tmp_path / "exported" / "manifest.json").read_text())
        capsys.readouterr()
        return
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1, captured.err
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    words = {"generate": "language-model", "transcribe": "speech", "regress": "regression"}[kind]
    assert re.search(rf"[Rr]efused.*{words}|{words}.*refused", readme, re.S), f"the README does not list {kind}"


def test_no_code_outside_the_tasks_switches_on_a_predictor_kind():
    hits = []
    for path in sorted((ROOT / "src" / "dnn").rglob("*.py")):
        if "tasks" in path.relative_to(ROOT / "src" / "dnn").parts[:1]:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"kind ?(==|!=|in)", line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
