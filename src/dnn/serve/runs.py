"""The runs a server holds: each loaded once with :func:`dnn.run.load_run`, named by its folder, described for
``GET /runs`` (the files it serves of them are read by :mod:`dnn.serve.files`).

Every run is described by its predictor's contract (:class:`dnn.tasks.base.Predictor`): ``kind``, ``what``,
``modality``, ``inputs``, ``outputs``, ``explains`` and its ``options`` (each ``Option.describe()``), and every
run answers ``POST /runs/{name}/run`` (:func:`dnn.serve.inference.run`); the page builds a panel for it
from that description. A few predictor classes also have a page panel and an endpoint of their own, older than the
contract, with richer pictures (looked up along the predictor's class hierarchy, like ``dnn export``):

    panel       class                     endpoint
    translate   Seq2SeqPredictor          POST /runs/{name}/translate
    generate    TextGenerator             POST /runs/{name}/generate
    image       ImagePredictor            POST /runs/{name}/predict  {"image": base64}
    classify    TextClassifierPredictor   POST /runs/{name}/predict  {"text": ...}
    tag         TaggingPredictor          POST /runs/{name}/predict  {"text": ...}
    run         any other (speech, captioning, video, the adding problem): the panel made from the description
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnn.errors import CheckpointError, ConfigError, DnnError
from dnn.run import LoadedRun, load_run
from dnn.rundir import CONFIG, METRICS, REPORT, as_run
from dnn.serve.uploads import ACCEPT
from dnn.tasks import Predictor, make_task
from dnn.tasks.images import ImagePredictor
from dnn.tasks.language import TextGenerator
from dnn.tasks.seq2seq import Seq2SeqPredictor
from dnn.tasks.text_predictors import TaggingPredictor, TextClassifierPredictor

__all__ = ["ENDPOINT", "GENERIC", "PANELS", "ServedRun", "load_served", "panel_of", "run_names"]

GENERIC = "run"  # the panel the page makes from a run's description, and its endpoint
# predictor class → its own panel (see the module docstring)
PANELS: dict[type[Predictor], str] = {Seq2SeqPredictor: "translate", TextGenerator: "generate",
                                      ImagePredictor: "image", TextClassifierPredictor: "classify",
                                      TaggingPredictor: "tag"}  # fmt: skip
# panel → the endpoint that serves it
ENDPOINT = {"translate": "translate", "generate": "generate", "image": "predict", "classify": "predict",
            "tag": "predict", GENERIC: GENERIC}  # fmt: skip


def panel_of(predictor: Predictor) -> str:
    """The page's panel of a predictor (see the module docstring): its class's own, else the generic one."""
    return next((PANELS[cls] for cls in type(predictor).__mro__ if cls in PANELS), GENERIC)


def run_names(paths: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{name: path}``: each run named by its folder. A path that is not a run, or two runs with one name, is an
    error naming them."""
    if not paths:
        raise ConfigError("no runs to serve: give at least one run directory")
    names: dict[str, Path] = {}
    for p in paths:
        path = Path(p)
        if not (path.is_dir() and as_run(path).has(CONFIG)):
            raise CheckpointError(f"{path}: not a run directory ({CONFIG} is missing)")
        name = path.resolve().name
        if name in names:
            raise ConfigError(
                f"two runs are named {name!r} ({names[name]} and {path}): serve folders with distinct names"
            )
        names[name] = path
    return names


@dataclass
class ServedRun:
    """One loaded run: its name, the loaded run (model in eval mode + predictor), its panel and headline metric."""

    name: str
    run: LoadedRun
    panel: str
    monitor: str | None  # the metric the run selected its best weights by (e.g. "accuracy")

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def predictor(self) -> Any:
        return self.run.predictor

    def describe(self) -> dict[str, Any]:
        """What ``GET /runs`` says of the run: name, task, model, panel, its metrics, and its predictor's contract
        (what it reads and gives, what it explains, its options; ``accept``: the files a file input takes)."""
        cfg, results = self.run.cfg, self.run.results or {}
        metrics = {split: _rounded(results.get(split) or {}) for split in ("valid", "test")}
        headline = None
        for split in ("test", "valid"):
            if self.monitor in metrics[split]:
                headline = {"metric": self.monitor, "split": split, "value": metrics[split][self.monitor]}
                break
        info: dict[str, Any] = {
            "name": self.name,
            "task": cfg.data.task,
            "model": cfg.model.name,
            "panel": self.panel,
            "parameters": sum(p.numel() for p in self.run.model.parameters()),
            "steps": results.get("steps"),
            "headline": headline,
            "metrics": metrics,
            "has_report": as_run(self.path).has(REPORT),
            "has_curves": as_run(self.path).has(METRICS),
        }
        predictor = self.predictor
        info.update({
            "kind": predictor.kind, "what": predictor.what, "modality": predictor.modality,
            "inputs": predictor.inputs, "outputs": predictor.outputs, "explains": predictor.explains,
            "options": [option.describe() for option in predictor.options], "accept": ACCEPT.get(predictor.modality),
        })  # fmt: skip
        if self.panel == "image":
            info["classes"] = list(predictor.classes)
            info["image"] = {"size": predictor.image_size, "channels": predictor.channels}
        elif self.panel == "classify":
            info["classes"] = list(predictor.labels.labels)
        return info


def load_served(name: str, path: Path, load: Callable[[Path], LoadedRun] = load_run) -> ServedRun:
    run = load(path)
    return ServedRun(name, run, panel_of(run.predictor), _monitor(run))


def _monitor(run: LoadedRun) -> str | None:
    """The metric the run's task selects the best weights by (the task is built from the config, no data read)."""
    try:
        return make_task(run.cfg).monitor[0]
    except DnnError:
        return None


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in metrics.items()}
