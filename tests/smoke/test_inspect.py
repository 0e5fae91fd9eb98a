"""report.html at the end of every run, and `dnn inspect`: a tiny run of every task gets the pictures that apply
to it (each a PNG with something drawn), embedded in one valid, self-contained HTML page; the command adds
sentences or images; a picture that fails is one logged line and never costs the training result; a task's own
figures (offered as data) join the page."""

import base64
import json
import random
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import dnn.inspect.report as report_module
from dnn.cli import main
from dnn.inspect import confusion, write_report
from dnn.run import load_run
from dnn.tasks import make_task
from dnn.tasks.language import AddingProblem
from dnn.train import train

ONE = ["train.threads=1"]
RUNS = {  # name → (recipe, overrides, the pictures its report must have)
    "digits": ("digits-lenet5", ["train.max_steps=4"], {"curves", "filters", "feature_maps", "confusion"}),
    "sentiment": ("sentiment-lstm", ["train.max_steps=3", "model.embedding_size=8", "model.hidden_size=8", *ONE],
                  {"curves", "confusion", "gradient_flow"}),
    "tagging": ("tagging-bilstm", ["train.max_steps=3", "model.embedding_size=8", "model.hidden_size=8", *ONE],
                {"curves", "confusion", "gradient_flow"}),
    "dates": ("dates-attention", ["data.sizes=[64,16,16]", "train.max_steps=3", "train.batch_size=16",
                                  "model.hidden_size=16", "model.embedding_size=8", "model.attention_hidden_size=16",
                                  *ONE],
              {"curves", "attention_1", "attention_2", "attention_3", "accuracy_by_length", "gradient_flow"}),
    "charlm": ("charlm-pydoc", ["train.max_steps=2", "train.batch_size=8", "data.length=16", "model.embedding_size=8",
                                "model.hidden_size=16", *ONE], {"curves", "gradient_flow"}),
    "adding": ("adding-lstm", ["train.max_steps=2", "data.sizes=[64,16,16]", "data.length=12", "model.hidden_size=8",
                               *ONE], {"curves", "gradient_flow"}),
}  # fmt: skip
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}


def write_text_data(root: Path) -> dict[str, Path]:
    rng = random.Random(0)
    rows = ["text,label"]
    for _ in range(80):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(["the", "film", "was", "a", "plot"], k=4) + [
            rng.choice({"pos": ["good", "great"], "neg": ["bad", "dull"]}[label])
        ]
        rows.append(f"{' '.join(words)},{label}")
    csv = root / "reviews.csv"
    csv.write_text("\n".join(rows) + "\n")
    sentences = []
    for _ in range(60):
        sentences.append("".join(f"{n} NUM\n" if (n := rng.randint(0, 40)) % 3 == 0 else f"w{n} WORD\n"
                                 for _ in range(rng.randint(2, 9))))  # fmt: skip
    conll = root / "tags.conll"
    conll.write_text("\n".join(sentences))
    return {"sentiment": csv, "tagging": conll}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, SimpleNamespace]:
    root = tmp_path_factory.mktemp("inspect")
    data = write_text_data(root)
    out = {}
    for name, (recipe, overrides, expected) in RUNS.items():
        extra = [f"data.train={data[name]}"] if name in data else []
        run_dir = root / name
        results = train(recipe, [*overrides, *extra], run_dir=run_dir, progress=False)
        out[name] = SimpleNamespace(dir=run_dir, results=results, expected=expected)
    return out


class StrictHTML(HTMLParser):
    """Every element closed in order, one doctype, images only as embedded PNGs, nothing fetched from elsewhere."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = 0
        self.images: list[dict[str, str]] = []
        self.text: list[str] = []

    def handle_decl(self, decl):
        self.doctype += decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "link", "iframe") or any(k in attrs for k in ("href", "srcset")):
            self.errors.append(f"external or active content: <{tag} {attrs}>")
        if tag == "img":
            self.images.append(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(path: Path) -> tuple[str, StrictHTML]:
    page = path.read_text(encoding="utf-8")
    parser = StrictHTML()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == [] and parser.doctype == 1
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    for image in parser.images:
        assert image["src"].startswith("data:image/png;base64,") and image.get("alt")
        assert base64.b64decode(image["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return page, parser


def check_png(path: Path) -> None:
    pixels = np.asarray(Image.open(path).convert("L"))
    assert min(pixels.shape) >= 200, path.name
    assert (pixels < 250).mean() > 0.02, f"{path.name} is (nearly) blank"


# ---------------------------------------------------------------------------------------------- every task


@pytest.mark.parametrize("name", list(RUNS))
def test_every_run_ends_with_a_report_of_the_pictures_that_apply_to_its_task(runs, name):
    run = runs[name]
    figures = run.dir / "figures"
    assert {p.stem for p in figures.glob("*.png")} == run.expected
    page, parser = check_page(run.dir / "report.html")
    assert len(parser.images) == len(run.expected)
    for png in figures.glob("*.png"):
        check_png(png)
        assert base64.b64encode(png.read_bytes()).decode() in page  # embedded as drawn
    assert "Not drawn" not in page
    log = (run.dir / "log.txt").read_text()
    assert f"report: {run.dir / 'report.html'}" in log and "could not draw" not in log
    text = " ".join(parser.text)
    assert f"{run.dir.name}" in text and "Results" in text and "Config" in text
    for split in ("valid", "test"):
        for value in run.results[split].values():
            assert f"{value:.4g}" in text  # the results table shows the final metrics
    if "gradient_flow" in run.expected:
        assert "‖∂L/∂h_t‖ by distance" in text


@pytest.mark.parametrize("name", ["digits", "sentiment", "tagging"])
def test_the_confusion_matrix_agrees_with_the_reported_accuracy(runs, name):
    loaded = load_run(runs[name].dir)
    task = make_task(loaded.cfg)
    task.prepare(lambda message: None)
    matrix, classes = confusion(loaded.model, task, "test")
    assert matrix.shape == (len(classes), len(classes))
    assert np.trace(matrix) / matrix.sum() == pytest.approx(runs[name].results["test"]["accuracy"])


# ---------------------------------------------------------------------------------------------- dnn inspect


def test_inspect_adds_sentences_to_a_seq2seq_report_and_escapes_them(runs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["inspect", str(runs["dates"].dir), "<b>March 3, 2021</b>", "", "x", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    stems = {p.stem for p in (out / "figures").glob("*.png")}
    assert stems == runs["dates"].expected | {"attention_input_1", "attention_input_2", "attention_input_3"}
    for stem in ("attention_input_1", "attention_input_2", "attention_input_3"):  # a sentence, empty, one token
        check_png(out / "figures" / f"{stem}.png")
    page, parser = check_page(out / "report.html")
    assert "<b>" not in page and "&lt;b&gt;March 3, 2021&lt;/b&gt;" in page
    assert len(parser.images) == len(stems)


def test_inspect_draws_feature_maps_of_an_image_and_forgets_them_when_refreshed(runs, tmp_path, capsys):
    run_dir = runs["digits"].dir
    x = (torch.rand(8, 8) * 255).to(torch.uint8).numpy()
    Image.fromarray(x).save(tmp_path / "digit.png")
    assert main(["inspect", str(run_dir), str(tmp_path / "digit.png")]) == 0
    check_png(run_dir / "figures" / "feature_maps_input_1.png")
    page, _ = check_page(run_dir / "report.html")
    assert "digit.png" in page
    assert main(["inspect", str(run_dir)]) == 0  # a plain refresh: back to the run's own pictures
    assert {p.stem for p in (run_dir / "figures").glob("*.png")} == runs["digits"].expected
    assert "digit.png" not in (run_dir / "report.html").read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        (["adding", "some text"], "a regression run draws no picture of an input"),
        (["digits", "missing.png"], "missing.png: no such file"),
        (None, "not a run directory"),
    ],
)
def test_inspect_errors_are_one_line(runs, tmp_path, capsys, args, message):
    argv = ["inspect", str(tmp_path)] if args is None else ["inspect", str(runs[args[0]].dir), *args[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnn: error: ") and err.count("\n") == 1 and message in err


# ---------------------------------------------------------------------------------------------- failures, hook


def test_a_picture_that_fails_is_logged_and_listed_and_the_training_result_stays(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(report_module, "training_curves", broken)
    recipe, overrides, _ = RUNS["adding"]
    results = train(recipe, overrides, run_dir=tmp_path / "run", progress=False)
    assert results["steps"] == 2 and json.loads((tmp_path / "run" / "results.json").read_text()) == results
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "report: could not draw Training curves: RuntimeError: no ink" in log
    page, _ = check_page(tmp_path / "run" / "report.html")
    assert "Not drawn" in page and "gradient_flow.png" not in page  # the rest is still there, embedded
    assert (tmp_path / "run" / "figures" / "gradient_flow.png").is_file()

    monkeypatch.setattr(report_module, "_page", broken)  # even the page itself: the run still ends well
    results = train(recipe, overrides, run_dir=tmp_path / "again", progress=False)
    assert results["steps"] == 2
    assert "report: could not draw the report: RuntimeError: no ink" in (tmp_path / "again" / "log.txt").read_text()


def test_a_run_whose_data_is_gone_still_gets_the_pictures_that_need_none(runs, tmp_path):
    run_dir = tmp_path / "moved"
    shutil.copytree(runs["sentiment"].dir, run_dir)
    config = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(re.sub(r"train: .*reviews\.csv", "train: gone.csv", config))
    lines = []
    page, parser = check_page(write_report(run_dir, log=lines.append))
    assert {p.stem for p in (run_dir / "figures").glob("*.png")} == {"curves"} and len(parser.images) == 1
    assert len(lines) == 1 and lines[0].startswith("report: could not draw the pictures that need the run's data")
    assert "gone.csv" in lines[0] and "Not drawn" in page


def test_the_figures_a_task_offers_as_data_join_the_page(runs, monkeypatch):
    """A task offers figures as data (tasks never import inspect); the report draws them and shows them."""
    from dnn.tasks.base import ErrorsByGroup

    seen = {}

    def figures(self, model, predictor):
        seen.update(task=type(self).__name__, kind=predictor.kind)
        groups = {"short": {"cer": 0.1, "n": 3.0, "unseen": 0.0}, "long": {"cer": 0.4, "n": 2.0, "unseen": 1.0}}
        return [ErrorsByGroup("own", "The task's own picture", groups=groups, heading="error by group")]

    monkeypatch.setattr(AddingProblem, "figures", figures)
    run_dir = runs["adding"].dir
    page, parser = check_page(write_report(run_dir))
    assert seen == {"task": "AddingProblem", "kind": "regress"}
    assert (run_dir / "figures" / "own.png").is_file()
    assert "The task&#x27;s own picture" in page and len(parser.images) == len(runs["adding"].expected) + 1
    assert re.search(r"<h2>The task&#x27;s own picture</h2>\s*<figure>", page)
