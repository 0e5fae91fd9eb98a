"""The run directory, and the one way back in: ``load_run`` (and ``evaluate_run``). :mod:`dnn.train` writes it.

    runs/<name>/
      .dnn-manifest.json what dnn wrote there (with the SHA-256 of the weights and checkpoints), written first
      config.yaml        the resolved configuration (every default filled in)
      model.safetensors  the best weights (by the task's monitored validation metric)
      last.safetensors   the latest weights, with state.pt: optimiser, scheduler, counters, every RNG state
      task.json          what prediction needs besides the weights (classes, vocabularies, normalisation)
      metrics.jsonl      one line per logging interval and per evaluation
      tensorboard/       the same as TensorBoard event files, when the tensorboard package is installed
      results.json       the final validation and test metrics
      log.txt            what the run printed, and the data counts

Every file goes through :class:`dnn.rundir.RunDir`: written atomically, read back never through a symbolic link,
the weights checked against the SHA-256 recorded when they were written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnn.config import apply_overrides, load_yaml
from dnn.device import resolve_device
from dnn.errors import CheckpointError, ConfigError, did_you_mean
from dnn.models.cnn_base import in_memory_layout
from dnn.models.registry import create_model
from dnn.run_config import RunConfig
from dnn.rundir import CONFIG, MODEL, RESULTS, TASK, RunDir
from dnn.tasks import Predictor, make_task, task_class
from dnn.training.checkpoint import load_weights

__all__ = ["LoadedRun", "evaluate_run", "list_recipes", "load_run", "read_config", "recipe_path", "resolve_config"]

RECIPES = Path(__file__).parent / "recipes"


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def recipe_path(name_or_path: str) -> Path:
    """A recipe's name (``digits-lenet5``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    builtin = RECIPES / f"{name_or_path}.yaml"
    if builtin.is_file():
        return builtin
    hint = did_you_mean(name_or_path, list_recipes(), f"; recipes: {', '.join(list_recipes())}")
    raise ConfigError(f"no recipe or YAML file named {name_or_path!r}{hint}")


def resolve_config(config: str, overrides: list[str]) -> RunConfig:
    return RunConfig.from_dict(apply_overrides(load_yaml(recipe_path(config)), overrides))


def read_config(run_dir: Path | RunDir, model: bool = False) -> RunConfig:
    """A run's saved ``config.yaml``, checked; with ``model`` its model's typed config built too (the saved section
    has every key); an error names the file."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.reader(run_dir)
    if not run.has(CONFIG):
        raise CheckpointError(f"{run.path}: not a run directory ({CONFIG} is missing)")
    path = run.file(CONFIG)
    try:
        cfg = RunConfig.from_dict(load_yaml(path))
        if model:
            cfg.model.resolve()
        return cfg
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None


@dataclass
class LoadedRun:
    """A trained run: its config (checked, the model's built: ``cfg.model.config``), its model (best weights, eval
    mode) and a predictor."""

    path: Path
    cfg: RunConfig
    model: torch.nn.Module
    predictor: Predictor
    results: dict[str, Any] | None


def load_run(path: str | os.PathLike, device: str = "cpu") -> LoadedRun:
    """The one way back in: config, best weights and what prediction needs, from a run directory; the model on
    ``device`` (``auto``: CUDA when there is one). A run trained on a GPU loads on a CPU-only machine."""
    path = Path(path)
    where = resolve_device(device, where="--device")
    run = RunDir.reader(path)
    cfg = read_config(run, model=True)
    model = create_model(cfg.model.name, cfg.model.config)
    load_weights(model, run.verified(MODEL, "weights file"))
    model = in_memory_layout(model.to(where), where, cfg.train.channels_last, cfg.train.precision).eval()
    info = run.read_json(TASK, "a run's task.json", required=("task",))
    predictor = task_class(str(info["task"])).load_predictor(run, model)
    results = run.read_json(RESULTS, "a run's results") if run.has(RESULTS) else None
    return LoadedRun(path, cfg, model, predictor, results)


def evaluate_run(path: str | os.PathLike, data: str | os.PathLike | None = None, device: str = "cpu"
                 ) -> dict[str, Any]:  # fmt: skip
    """The run's best model on its validation and test data (rebuilt from the saved config and seed), or, with
    ``data``, on that file or folder alone, read with the run's own vocabularies, classes and normalisation:
    ``{"data": PATH, "test": metrics}``."""
    run = load_run(path, device)
    task = make_task(run.cfg)
    if data is None:
        task.prepare(lambda message: None)
        return {split: task.evaluate(run.model, split) for split in ("valid", "test")}
    task.prepare_evaluation(RunDir.reader(run.path), str(data), lambda message: None)
    return {"data": str(data), "test": task.evaluate(run.model, "test")}
