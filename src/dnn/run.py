"""The run directory: the one way out of training (``train``) and the one way back in (``load_run``).

    runs/<name>/
      config.yaml        the resolved configuration (every default filled in)
      model.safetensors  the best weights (by the task's monitored validation metric)
      last.safetensors   the latest weights, with state.pt: optimiser, scheduler, counters, every RNG state
      task.json          what prediction needs besides the weights (classes, vocabularies, normalisation)
      metrics.jsonl      one line per logging interval and per evaluation
      tensorboard/       the same as TensorBoard event files, when the tensorboard package is installed
      results.json       the final validation and test metrics
      log.txt            what the run printed, and the data counts

Every file is written to a temporary name and renamed, so a crash never leaves a half-written checkpoint; a run
killed at any step and resumed with ``--resume`` continues exactly where its last checkpoint left off.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnn.config import apply_overrides, load_yaml, save_yaml, to_dict
from dnn.errors import CheckpointError, ConfigError
from dnn.run_config import RunConfig, validate_model_section
from dnn.training import Trainer
from dnn.training.callbacks import EarlyStopping, Evaluate, MetricsLog, ProgressBar, TensorBoardMirror
from dnn.training.checkpoint import (
    atomic_write,
    load_state,
    load_weights,
    rng_state,
    save_state,
    save_weights,
    set_rng_state,
)
from dnn.training.distributed import Distributed
from dnn.training.distributed import setup as setup_distributed
from dnn.training.optim import make_optimizer, make_scheduler
from dnn.training.seed import seed_everything

__all__ = ["LoadedRun", "evaluate_run", "list_recipes", "load_run", "recipe_path", "resolve_config", "train"]

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
    import difflib

    close = difflib.get_close_matches(name_or_path, list_recipes(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; recipes: {', '.join(list_recipes())}"
    raise ConfigError(f"no recipe or YAML file named {name_or_path!r}{hint}")


def resolve_config(config: str, overrides: list[str]) -> RunConfig:
    return RunConfig.from_dict(apply_overrides(load_yaml(recipe_path(config)), overrides))


# data.task → (module, class) of the task that trains it; the class name is also what task.json records
TASK_CLASSES = {
    "digits": ("dnn.tasks.images", "ImageClassification"),
    "image_folder": ("dnn.tasks.images", "ImageClassification"),
    "text_classification": ("dnn.tasks.text", "TextClassification"),
    "tagging": ("dnn.tasks.text", "Tagging"),
    "seq2seq": ("dnn.tasks.seq2seq", "Seq2SeqTask"),
    "language_model": ("dnn.tasks.language", "LanguageModelling"),
    "adding": ("dnn.tasks.language", "AddingProblem"),
    "speech": ("dnn.tasks.speech", "SpeechRecognition"),
}


def _import_task(module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError):
        raise ConfigError(f"task {name} ({module}) is not available in this version of dnn") from None


def make_task(cfg: RunConfig):
    return _import_task(*TASK_CLASSES[cfg.data.task])(cfg)


def _task_class(name: str):
    """The task class recorded in a run's task.json (by class name)."""
    for module, cls in TASK_CLASSES.values():
        if cls == name:
            return _import_task(module, cls)
    if name == "image_classification":  # the name runs recorded before task.json named classes
        return _import_task("dnn.tasks.images", "ImageClassification")
    raise CheckpointError(f"task.json names an unknown task {name!r}")


class _Checkpointer:
    """Saves last.safetensors + state.pt every N steps and at each epoch end, and model.safetensors when the
    monitored metric improves. Only the state that makes a resume exact goes into state.pt."""

    def __init__(self, run_dir: Path, every: int, monitor: tuple[str, str], model: torch.nn.Module, ddp: Distributed,
                 task: Any = None):  # fmt: skip
        self.run_dir, self.every, self.model, self.ddp, self.task = run_dir, every, model, ddp, task
        self.metric, self.mode = monitor
        self.best: float | None = None

    def save(self, trainer) -> None:
        self.ddp.barrier()
        if self.ddp.is_main:
            self._save(trainer)
        self.ddp.barrier()

    def _save(self, trainer) -> None:
        save_weights(self.model, self.run_dir / "last.safetensors")
        state = {
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
            "stats": {k: v for k, v in vars(trainer.stats).items() if k != "extra"},
            "best": self.best,
            "rng": rng_state(),
        }
        if hasattr(self.task, "checkpoint_context"):  # e.g. a language model's carried hidden state
            state["context"] = self.task.checkpoint_context(trainer.context)
        save_state(state, self.run_dir / "state.pt")

    def on_step_end(self, trainer, **_):
        if self.every and trainer.stats.step % self.every == 0:
            self.save(trainer)

    def on_eval_end(self, trainer, metrics, **_):
        value = metrics.get(self.metric)
        if value is None:
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            self.ddp.barrier()
            if self.ddp.is_main:
                save_weights(self.model, self.run_dir / "model.safetensors")
            self.ddp.barrier()

    def on_epoch_end(self, trainer, epoch, complete):
        self.save(trainer)


def train(config: str, overrides: list[str], run_dir: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train a recipe or YAML file with overrides into ``run_dir``; return the final metrics."""
    if resume:
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir: the run to continue")
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(f"{run_dir}: no run to resume (config.yaml is missing)")
        if overrides:
            raise ConfigError("--resume continues a run with its saved config; overrides are not allowed")
        cfg = RunConfig.from_dict(load_yaml(run_dir / "config.yaml"))
    else:
        cfg = resolve_config(config, overrides)
        if run_dir is None:
            name = Path(config).stem if config else "run"
            run_dir = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(run_dir)
        if (run_dir / "state.pt").exists():
            raise ConfigError(f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir")
    ddp = setup_distributed()
    created = not run_dir.exists()
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    ddp.barrier()
    log_file = open(run_dir / "log.txt", "a", encoding="utf-8") if ddp.is_main else None  # noqa: SIM115

    def log(message: str) -> None:
        if not ddp.is_main:
            return
        if progress:
            print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    try:
        return _train(cfg, run_dir, resume, log, progress and ddp.is_main, ddp)
    except BaseException:
        if log_file is not None and created and not (run_dir / "config.yaml").exists():
            log_file.close()
            log_file = None
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was trained: leave no empty run behind
        raise
    finally:
        if log_file is not None:
            log_file.close()
        ddp.close()


def _train(cfg: RunConfig, run_dir: Path, resume: bool, log, progress: bool, ddp: Distributed) -> dict[str, Any]:
    from dnn.models.registry import create_model

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.set_flush_denormal(t.flush_denormal)
    seed_everything(cfg.seed, cfg.deterministic)
    task = make_task(cfg)
    task.prepare(log)
    model_cfg = validate_model_section(cfg.model, derived=task.model_options())
    resolved = to_dict(cfg)
    resolved["model"] = {"name": cfg.model["name"], **to_dict(model_cfg)}
    if not resume and ddp.is_main:
        save_yaml(resolved, run_dir / "config.yaml")
        task.save_artifacts(run_dir)
    ddp.barrier()
    options = {k: v for k, v in resolved["model"].items() if k != "name"}
    model = create_model(cfg.model["name"], **options)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model['name']}, {n_params:,} parameters; run directory {run_dir}")
    if ddp.enabled:
        log(f"distributed: {ddp.world} processes, {'nccl' if torch.cuda.is_available() else 'gloo'}")

    params = _transfer(model, t, log) if (t.init_from or t.freeze_up_to or t.body_lr) else model.parameters()
    optimizer = make_optimizer(params, t.optimizer, t.lr, t.weight_decay, t.momentum)
    per_epoch = ddp.steps_per_epoch(task.batches_per_epoch())
    total = min(t.max_steps, per_epoch * t.epochs) if t.max_steps else per_epoch * t.epochs
    scheduler = make_scheduler(optimizer, t.schedule, total, t.warmup_steps, t.step_size, t.gamma, max(1, t.patience))
    monitor = task.monitor
    checkpointer = _Checkpointer(run_dir, t.checkpoint_every, monitor, model, ddp, task)
    callbacks = [Evaluate(task.evaluate, t.eval_every), checkpointer]
    if ddp.is_main:
        tensorboard = t.tensorboard and TensorBoardMirror.available()
        mirrors = (TensorBoardMirror(run_dir / "tensorboard"),) if tensorboard else ()
        callbacks.append(MetricsLog(run_dir / "metrics.jsonl", t.log_every, mirrors))
    callbacks += task.callbacks() if hasattr(task, "callbacks") else []  # e.g. truncated BPTT for language models
    if t.patience:
        callbacks.append(EarlyStopping(monitor[0], monitor[1], t.patience))
    if progress:
        callbacks.append(ProgressBar(total, every=max(1, total // 20)))
    trainer = Trainer(
        ddp.wrap(model), optimizer, task.step, scheduler=scheduler, clip_norm=t.clip_norm, clip_value=t.clip_value,
        on_nonfinite=t.on_nonfinite, callbacks=callbacks,
    )  # fmt: skip
    trainer.context["monitor"] = monitor[0]

    if resume:
        state = load_state(run_dir / "state.pt")
        load_weights(model, run_dir / "last.safetensors")
        optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        for key, value in state["stats"].items():
            setattr(trainer.stats, key, value)
        checkpointer.best = state["best"]
        set_rng_state(state["rng"])
        if hasattr(task, "restore_context"):
            task.restore_context(trainer.context, state.get("context"))
        log(f"resumed at step {trainer.stats.step} (epoch {trainer.stats.epoch})")

    start = time.perf_counter()
    trainer.fit(ddp.shard(task.train_batches, task.batches_per_epoch()), epochs=t.epochs, max_steps=t.max_steps)
    seconds = time.perf_counter() - start
    if trainer.stats.batch_in_epoch:  # stopped mid-epoch (max_steps): keep that position too
        checkpointer.save(trainer)
    identical = ddp.weights_identical(model)
    if ddp.is_main and not (run_dir / "model.safetensors").exists():
        save_weights(model, run_dir / "model.safetensors")
    ddp.barrier()
    best = create_model(cfg.model["name"], **options)
    load_weights(best, run_dir / "model.safetensors")
    best.eval()
    results = {
        "valid": task.evaluate(best, "valid"),
        "test": task.evaluate(best, "test"),
        "steps": trainer.stats.step,
        "epochs": trainer.stats.epoch,
        "seconds": round(seconds, 2),
        "clipped_steps": trainer.stats.clipped,
        "skipped_batches": trainer.stats.skipped,
    }
    if ddp.enabled:
        results["processes"] = ddp.world
        results["weights_identical_across_processes"] = identical
    if ddp.is_main:
        atomic_write(run_dir / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2)))
    shown = "  ".join(f"{split} {k} {v:.4f}" for split in ("valid", "test") for k, v in results[split].items())
    log(f"done: {trainer.stats.step} steps in {seconds:.1f} s; {shown}")
    if ddp.is_main and t.report:
        _write_report(run_dir, task, log)
    return results


def _write_report(run_dir: Path, task, log) -> None:
    """report.html and figures/ (dnn.inspect); drawing can fail, but never at the cost of the training result."""
    try:
        from dnn.inspect import write_report

        log(f"report: {write_report(run_dir, task=task, log=log)}")
    except Exception as err:
        log(f"report: could not draw the report: {' '.join(f'{type(err).__name__}: {err}'.split())}")


def _transfer(model: torch.nn.Module, t, log):
    """Transfer learning for CNNs: start from another run's weights, freeze part of the body, two learning rates."""
    from dnn import transfer
    from dnn.models.cnn_base import ImageClassifier

    if not isinstance(model, ImageClassifier):
        raise ConfigError("train.init_from / train.freeze_up_to / train.body_lr apply to CNNs (the image models) only")
    if t.init_from:
        source = Path(t.init_from)
        weights = source / "model.safetensors" if source.is_dir() else source
        result = transfer.load_pretrained(model, weights, strict=False, skip_head=True)
        log(f"transfer: {len(result.loaded)} tensors from {weights}; not taken: {len(result.skipped)} (the head, "
            f"and any whose shape differs), {len(result.missing)} missing")  # fmt: skip
    if t.freeze_up_to:
        frozen = transfer.freeze(model, None if t.freeze_up_to == "body" else t.freeze_up_to)
        log(f"transfer: frozen stages {', '.join(frozen)} (their BatchNorm statistics too)")
    return transfer.param_groups(model, t.body_lr or t.lr, t.lr, t.weight_decay)


@dataclass
class LoadedRun:
    """A trained run: its config, its model (best weights, eval mode) and a predictor for new inputs."""

    path: Path
    config: dict[str, Any]
    model: torch.nn.Module
    predictor: Any
    results: dict[str, Any] | None


def load_run(path: str | os.PathLike) -> LoadedRun:
    """The one way back in: config, best weights and what prediction needs, from a run directory."""
    from dnn.models.registry import create_model

    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise CheckpointError(f"{path}: not a run directory (config.yaml is missing)")
    config = load_yaml(path / "config.yaml")
    options = {k: v for k, v in config.get("model", {}).items() if k != "name"}
    model = create_model(config["model"]["name"], **options)
    load_weights(model, path / "model.safetensors")
    model.eval()
    try:
        task_name = json.loads((path / "task.json").read_text())["task"]
    except (OSError, ValueError, KeyError):
        raise CheckpointError(f"{path / 'task.json'}: missing or unreadable") from None
    predictor = _task_class(task_name).load_predictor(path, model)
    results = json.loads((path / "results.json").read_text()) if (path / "results.json").is_file() else None
    return LoadedRun(path, config, model, predictor, results)


def evaluate_run(path: str | os.PathLike, data: str | os.PathLike | None = None) -> dict[str, Any]:
    """The run's best model on its validation and test data (rebuilt from the saved config and seed), or, with
    ``data``, on that file or folder alone, read with the run's own vocabularies, classes and normalisation:
    ``{"data": PATH, "test": metrics}``."""
    run = load_run(path)
    cfg = RunConfig.from_dict(run.config)
    task = make_task(cfg)
    if data is None:
        task.prepare(lambda message: None)
        return {split: task.evaluate(run.model, split) for split in ("valid", "test")}
    if not hasattr(task, "prepare_evaluation"):
        raise ConfigError(f"{path} is a {cfg.data.task} run on built-in data; --data applies to runs that read files")
    task.prepare_evaluation(run.path, str(data), lambda message: None)
    return {"data": str(data), "test": task.evaluate(run.model, "test")}
