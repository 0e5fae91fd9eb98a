"""Training curves from a run's ``metrics.jsonl``: loss, validation metrics, learning rate, gradient norm and
clipping rate against the step.

The file has one JSON object per line (:class:`~dnn.training.callbacks.MetricsLog`): training lines
(``"kind": "train"``: step, loss, lr, grad_norm, grad_norm_max, clip_rate — averages over the logging interval)
and evaluation lines (``"kind": "eval"``, ``"split": "valid"``: step and the task's metrics).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dnn.checks import is_number
from dnn.errors import DataError
from dnn.inspect.figures import fit_title, new_figure, placeholder, save_png

__all__ = ["read_metrics", "training_curves"]

_NOT_METRICS = {"kind", "split", "step", "epoch"}


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a line that is not a JSON object is a DataError naming file and line,
    except an unfinished last line (a run killed while writing it), which is skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot read the metrics ({err.strerror or err})") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):  # no newline after it: the write was cut short
                continue
            raise DataError(f"{path}:{number}: not a JSON object: {line[:60]!r}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _series(records: Iterable[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that have a finite number under ``key``."""
    steps, values = [], []
    for r in records:
        value = r.get(key)
        if is_number(value) and math.isfinite(value) and "step" in r:
            steps.append(float(r["step"]))
            values.append(float(value))
    return steps, values


def _line(ax, steps, values, label, **style) -> bool:
    if not steps:
        return False
    ax.plot(steps, values, marker="o" if len(steps) < 3 else None, markersize=4, label=label, **style)
    return True


def training_curves(metrics: str | os.PathLike | Iterable[Mapping[str, Any]], path: str | os.PathLike,
                    title: str | None = None) -> Path:  # fmt: skip
    """Draw the curves of ``metrics`` (a ``metrics.jsonl`` path, or its records) into ``path``, four panels:

    loss (training, and validation where logged) · learning rate · gradient norm (mean and largest over each
    logging interval) with the share of clipped steps · validation metrics (those within [0, 1] on the left
    axis, the others — BLEU, perplexity, … — on the right).
    """
    records = read_metrics(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    train = [r for r in records if r.get("kind", "train") == "train" and "split" not in r]
    evals = [r for r in records if r.get("kind") == "eval" or "split" in r]
    names: list[str] = []
    for r in evals:
        names += [k for k, v in r.items() if k not in _NOT_METRICS and k != "loss" and k not in names
                  and isinstance(v, (int, float))]  # fmt: skip
    fig, axes = new_figure(11.0, 6.5, 2, 2, left=0.7, right=0.8, top=0.7)
    loss_ax, lr_ax, grad_ax, metric_ax = np.ravel(axes)
    drawn = {
        loss_ax: _line(loss_ax, *_series(train, "loss"), "training")
        | _line(loss_ax, *_series(evals, "loss"), "validation", linestyle="--"),
        lr_ax: _line(lr_ax, *_series(train, "lr"), "learning rate"),
        grad_ax: _line(grad_ax, *_series(train, "grad_norm"), "mean")
        | _line(grad_ax, *_series(train, "grad_norm_max"), "largest", alpha=0.6),
        metric_ax: False,
    }
    clip_steps, clip_rate = _series(train, "clip_rate")
    if any(clip_rate):
        twin = grad_ax.twinx()
        twin.fill_between(clip_steps, clip_rate, step="mid", color="C3", alpha=0.15)
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("share of steps clipped", color="C3")
    unit = [n for n in names if all(0.0 <= v <= 1.0 for v in _series(evals, n)[1])]
    other = [n for n in names if n not in unit]
    right = metric_ax.twinx() if unit and other else metric_ax
    for i, name in enumerate(names):
        ax, style = (metric_ax, "-") if name in unit else (right, ":" if right is not metric_ax else "-")
        drawn[metric_ax] |= _line(ax, *_series(evals, name), name, linestyle=style, color=f"C{i}")
    if right is not metric_ax:
        right.set_ylabel(", ".join(other) + " (dotted)")
    titles = {loss_ax: "loss", lr_ax: "learning rate", grad_ax: "gradient norm (before clipping)",
              metric_ax: "validation metrics"}  # fmt: skip
    for ax, what in titles.items():
        ax.set_title(what, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if not drawn[ax]:
            placeholder(ax, f"no {what} logged" if records else "no steps logged yet")
    for ax in (loss_ax, grad_ax):
        if drawn[ax]:
            ax.legend(fontsize=8)
    if drawn[metric_ax]:
        handles = [h for a in {metric_ax, right} for h in a.get_legend_handles_labels()[0]]
        metric_ax.legend(handles=handles, fontsize=8)
    if title:
        fig.suptitle(fit_title(title, fig.get_figwidth(), 11), fontsize=11)
    return save_png(fig, path)
