"""``report.html`` for a run: one self-contained page with the config, the results, the training curves and every
picture that applies to the run's task (PNG files under ``figures/``, embedded in the page as data URIs).

    every run             training curves (metrics.jsonl), results table, config
    image classification  first-layer filters, feature maps per stage for a test image (and each input image),
                          confusion matrix on the test split
    text classification   confusion matrix, gradient flow through time
    tagging               confusion matrix of the tags, gradient flow through time
    seq2seq               attention heatmaps for a few test sentences (and each input sentence), exact match by
                          source length, gradient flow through the encoder
    language model,       gradient flow through time
    adding problem
    any task              the figures the task offers as data (``Task.figures``: speech draws a spectrogram with
                          the aligned characters and the error rate per voice)

What applies is asked of the run's predictor (``kind``) and task (its declared hooks), never guessed.

``dnn train`` writes it at the end of every run (a picture that cannot be drawn is logged and listed on the page,
and never costs the training result); ``dnn inspect RUN [INPUT…]`` draws it again, with the inputs added.
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnn.errors import CheckpointError, ConfigError
from dnn.inspect import collect
from dnn.inspect.curves import training_curves
from dnn.inspect.draw import draw_figure
from dnn.inspect.gradient_flow import GradientFlow
from dnn.inspect.plots import (
    accuracy_by_length_plot,
    confusion_matrix_plot,
    filters_plot,
    gradient_flow_plot,
)
from dnn.io import read_bytes_nofollow
from dnn.run import LoadedRun, load_run
from dnn.rundir import FIGURES, MANIFEST, METRICS, REPORT, RunDir
from dnn.tasks import Task, make_task
from dnn.tasks.base import PREDICTOR_KINDS, Figure
from dnn.tasks.registry import predictor_classes

__all__ = ["write_report"]


@dataclass
class Picture:
    title: str
    path: Path
    caption: str = ""


@dataclass
class _Report:
    """What the page will show, gathered picture by picture; a picture that fails becomes a note."""

    run: Any
    target: RunDir  # where the page and its figures go
    log: Callable[[str], None]
    pictures: list[Picture] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, stem: str) -> Path:
        """The path of ``figures/<stem>.png`` in the target folder (listed in its manifest before it is drawn)."""
        self.target.folder(FIGURES)
        return self.target.output(f"{FIGURES}/{stem}.png")

    def attempt(self, what: str, draw: Callable[[], Any]) -> Any:
        try:
            return draw()
        except Exception as err:  # a picture is never worth the rest of the report (nor the training result)
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            self.log(f"report: could not draw {what}: {reason}")
            self.notes.append(f"could not draw {what}: {reason}")
            return None

    def add(self, title: str, path: Path | None, caption: str = "") -> None:
        if path is not None:
            self.pictures.append(Picture(title, Path(path), caption))


def write_report(run_dir: str | os.PathLike, inputs: Sequence[str] | None = None,
                 out_dir: str | os.PathLike | None = None, *, task: Task | None = None,
                 log: Callable[[str], None] | None = None, run: LoadedRun | None = None,
                 device: str = "cpu", into: RunDir | None = None) -> Path:  # fmt: skip
    """Draw every picture that applies to the run into ``figures/`` and write ``report.html``; return its path.

    Args:
        run_dir: a run directory (``dnn.run.load_run``: the best weights are shown).
        inputs: the user's own inputs (files or texts, as ``dnn predict`` takes them), each drawn as the
            predictor explains it (:meth:`dnn.tasks.base.Predictor.explain`): feature maps of an image, attention
            of a translation or of a caption over its image, a transcript's alignment, a clip's frames. A run
            whose predictor explains nothing takes none (ConfigError).
        out_dir: where ``report.html`` and ``figures/`` go (default: the run directory).
        task: the run's task, already prepared (``dnn train`` passes its own); by default it is rebuilt from the
            saved config (``make_task`` + ``prepare``); if its data is gone, the pictures that need data are
            left out and the page says why.
        log: receives one line per picture that could not be drawn ("report: could not draw X: reason").
        run: the run already loaded (``dnn train`` passes the model it trained); by default :func:`load_run`.
        into: the run's folder, already open for writing (``dnn train`` holds it).

    The figures the task offers as data (:meth:`dnn.tasks.base.Task.figures`) join the page. ``out_dir`` is a new
    or empty folder, or one holding a report of the same run (:meth:`dnn.rundir.RunDir.open_output`); in the run
    itself the run's lock is held. Every file is written atomically; the PNGs of an earlier report that this one
    did not draw again are removed, and no other file.
    """
    run = run if run is not None else load_run(run_dir, device)
    explained = _explain(run, list(inputs or []))  # a bad input: one line before any folder is touched
    source = into if into is not None else RunDir.reader(run_dir)
    if into is not None:
        target = into
    elif out_dir is None or Path(out_dir).resolve() == source.path.resolve():
        if source.manifest is None:
            raise CheckpointError(f"{source.path} has no {MANIFEST} (made by an older dnn, or copied without its "
                                  "hidden files): dnn draws into a run only when it can tell its own files from "
                                  "yours; draw the report elsewhere with --out DIR")  # fmt: skip
        target = RunDir.open_run(source.path, command="inspect")
    else:
        target = RunDir.open_output(out_dir, "report", of=source, detail={})
    try:
        return _write(run, source, target, task, explained, log or (lambda message: None))
    finally:
        if target is not into:
            target.close()


def _write(run: LoadedRun, source: RunDir, target: RunDir, task: Task | None, explained: list[Figure],
           log: Callable[[str], None]) -> Path:  # fmt: skip
    report = _Report(run, target, log)
    if task is None:
        task = report.attempt("the pictures that need the run's data", lambda: _prepared_task(run))

    if source.has(METRICS):
        path, title = source.file(METRICS), "Training curves"
        report.add(title, report.attempt(title, lambda: training_curves(path, report.figure("curves"))))
    _filters_picture(report)
    if task is not None:
        _confusion_picture(report, task)
        _length_picture(report, task)
    if task is not None and collect.has_recurrent_layers(run.model):
        _gradient_flow_picture(report, task)
    if task is not None:
        _task_figures(report, task)
    for figure in explained:
        report.add(figure.title, report.attempt(figure.title, lambda f=figure: _draw_figure(f, report)))

    written = target.write_text(REPORT, _page(run, report))
    drawn = {f"{FIGURES}/{p.path.name}" for p in report.pictures}
    for name in [n for n in target.files if n.startswith(f"{FIGURES}/") and n[-1] != "/" and n not in drawn]:
        target.remove(name)  # drawn by an earlier report (the manifest says so), not by this one
    target.save_manifest()
    return written


def _prepared_task(run: LoadedRun) -> Task:
    task = make_task(run.cfg)
    task.prepare(lambda message: None)
    return task


def _explain(run: LoadedRun, inputs: list[str]) -> list[Figure]:
    """The figure data of each input (``figures/<stem>_input_<i>.png``), or one line saying what takes inputs."""
    if not inputs:
        return []
    predictor = run.predictor
    if not predictor.explains:
        able = ", ".join(PREDICTOR_KINDS[cls.kind] for cls in predictor_classes() if cls.explains)
        raise ConfigError(f"{run.path}: {predictor.what} draws no picture of an input; dnn inspect RUN INPUT... "
                          f"applies to {able}")  # fmt: skip
    figures = []
    for i, item in enumerate(inputs, 1):
        figure = predictor.explain(item)
        figure.stem = f"{figure.stem}_input_{i}"
        figures.append(figure)
    return figures


# -- the pictures every kind of run may have -----------------------------------------------------------------------


def _filters_picture(report: _Report) -> None:
    weights = collect.first_conv_weights(report.run.model)
    if weights is not None:
        title = "Filters of the first convolution"
        caption = "Each kernel as an image (RGB for colour input, else grey), scaled to its own range."
        report.add(title, report.attempt(title, lambda: filters_plot(weights, report.figure("filters"))), caption)


def _confusion_picture(report: _Report, task: Task) -> None:
    result = report.attempt("the confusion matrix", lambda: collect.confusion(report.run.model, task, "test"))
    if result is None:  # the task does not classify, or its test split is empty
        return
    matrix, classes = result
    path = report.attempt("the confusion matrix", lambda: confusion_matrix_plot(
        matrix, classes, report.figure("confusion"), "Confusion matrix, test split"))  # fmt: skip
    report.add("Confusion matrix", path, "Rows: true class; columns: predicted.")


def _length_picture(report: _Report, task: Task) -> None:
    def draw():
        by_length = task.accuracy_by_length(report.run.model, "test", collect.MAX_EXAMPLES)
        if by_length is None:  # not a task with one right answer per sequence
            return None
        path = report.figure("accuracy_by_length")
        title = "Exact match by length, test split"
        return accuracy_by_length_plot(by_length.accuracy, path, by_length.counts, title)

    path = report.attempt("the accuracy by length", draw)
    if path is not None:
        caption = (
            f"Greedy decoding of (at most the first {collect.MAX_EXAMPLES}) test examples; grey bars: how many have "
            "each length. Without attention, quality falls with length (Bahdanau et al. 2015, Fig. 2)."
        )
        report.add("Exact match by length", path, caption)


def _gradient_flow_picture(report: _Report, task: Any) -> None:
    def draw():
        flow = collect.task_gradient_flow(report.run.model, task)
        _gradient_table(report, flow)
        title = f"Gradient flow through time (trained model, one training batch, loss {flow.loss:.3g})"
        return gradient_flow_plot(flow.norms, report.figure("gradient_flow"), title)

    caption = (
        "‖∂L/∂h_t‖ per recurrent layer against the distance from each sequence's last step (in the direction the "
        "layer reads); falling curves: the gradient vanishes on its way back."
    )
    report.add("Gradient flow through time", report.attempt("the gradient flow", draw), caption)


def _gradient_table(report: _Report, flow: GradientFlow) -> None:
    header = ["distance", "sequences", *flow.labels]
    rows = [[str(r["distance"]), str(r["sequences"]), *(f"{r[k]:.3g}" for k in flow.labels)] for r in flow.table()]
    report.tables.append(("Gradient flow through time: ‖∂L/∂h_t‖ by distance", header, rows))


def _draw_figure(figure: Figure, report: _Report) -> Path:
    """A task's figure (data) as a PNG in the report's folder."""
    return draw_figure(figure, report.figure(figure.stem))


def _task_figures(report: _Report, task: Task) -> None:
    figures = report.attempt("the task's own figures", lambda: task.figures(report.run.model, report.run.predictor))
    for figure in figures or []:
        report.add(figure.title, report.attempt(figure.title, lambda f=figure: _draw_figure(f, report)))


# -- the page --------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.meta { color: #666; } .note { color: #a33; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _results(results: dict[str, Any] | None) -> str:
    if not results:
        return "<p>No results yet (results.json is written at the end of training).</p>\n"
    splits = [s for s in ("valid", "test") if isinstance(results.get(s), dict)]
    names: list[str] = []
    for split in splits:
        names += [k for k in results[split] if k not in names]
    metrics = [[name, *(results[s].get(name, "") for s in splits)] for name in names]
    other = [[k, v] for k, v in results.items() if not isinstance(v, dict)]
    return _table(["metric", *splits], metrics) + _table(["run", ""], other)


def _image(picture: Picture) -> str:
    data = base64.b64encode(read_bytes_nofollow(picture.path, "figure")).decode("ascii")
    title = html.escape(picture.title)
    caption = f"<figcaption>{html.escape(picture.caption)}</figcaption>" if picture.caption else ""
    return f'<figure>\n<img src="data:image/png;base64,{data}" alt="{title}">\n{caption}\n</figure>\n'


def _page(run, report: _Report) -> str:
    name = run.path.resolve().name
    model = run.cfg.model.name
    params = sum(p.numel() for p in run.model.parameters())
    task = run.cfg.data.task
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>dnn report: {html.escape(name)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        f"<h1>{html.escape(name)}</h1>\n",
        f'<p class="meta">task {html.escape(str(task))} · model {html.escape(str(model))} ({params:,} parameters)'
        f" · {html.escape(str(run.path))} · drawn {made}</p>\n",
        "<h2>Results</h2>\n",
        _results(run.results),
    ]
    for picture in report.pictures:
        parts += [f"<section>\n<h2>{html.escape(picture.title)}</h2>\n", _image(picture), "</section>\n"]
    for title, header, rows in report.tables:
        parts += [f"<h2>{html.escape(title)}</h2>\n", _table(header, rows)]
    if report.notes:
        items = "".join(f"<li>{html.escape(n)}</li>\n" for n in report.notes)
        parts += ['<h2>Not drawn</h2>\n<ul class="note">\n', items, "</ul>\n"]
    config = yaml.safe_dump(run.cfg.as_dict(), sort_keys=False, allow_unicode=True)
    parts += ["<h2>Config</h2>\n", f"<pre>{html.escape(config)}</pre>\n", "</body>\n</html>\n"]
    return "".join(parts)
