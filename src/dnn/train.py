"""The way out of training: a recipe or YAML file, with overrides, trained into a run directory.

    results = train("dates-attention", ["train.epochs=2"], run_dir="runs/dates")

What is written is described in :mod:`dnn.run` (the run directory, and the way back in). Every file is written to
a temporary name and renamed, so a crash never leaves a half-written checkpoint; a run killed at any step and
resumed with ``resume=True`` continues exactly where its last checkpoint left off.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from dnn.config import save_yaml, to_dict
from dnn.errors import CheckpointError, ConfigError
from dnn.inspect import write_report
from dnn.io import write_json
from dnn.models.registry import create_model
from dnn.run import LoadedRun, read_config, resolve_config
from dnn.run_config import RunConfig, validate_model_section
from dnn.tasks import Task, make_task
from dnn.training import Trainer
from dnn.training.callbacks import EarlyStopping, Evaluate, MetricsLog, ProgressBar, TensorBoardMirror
from dnn.training.checkpoint import load_state, load_weights, rng_state, save_state, save_weights, set_rng_state
from dnn.training.distributed import Distributed
from dnn.training.distributed import setup as setup_distributed
from dnn.training.optim import make_optimizer, make_scheduler
from dnn.training.seed import seed_everything

__all__ = ["train"]


class _Checkpointer:
    """Saves last.safetensors + state.pt every N steps and at each epoch end, and model.safetensors when the
    monitored metric improves. Only the state that makes a resume exact goes into state.pt."""

    def __init__(self, run_dir: Path, every: int, monitor: tuple[str, str], model: torch.nn.Module, ddp: Distributed,
                 task: Task):  # fmt: skip
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
        context = self.task.checkpoint_context(trainer.context)  # e.g. a language model's carried hidden state
        if context is not None:
            state["context"] = context
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
        _, cfg = read_config(run_dir)
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
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.set_flush_denormal(t.flush_denormal)
    seed_everything(cfg.seed, cfg.deterministic)
    task = make_task(cfg)
    task.prepare(log)
    model_cfg = validate_model_section(cfg.model, derived=task.model_options())  # validated once, passed whole
    resolved = to_dict(cfg)
    resolved["model"] = {"name": cfg.model["name"], **to_dict(model_cfg)}
    if not resume and ddp.is_main:
        save_yaml(resolved, run_dir / "config.yaml")
        task.save_artifacts(run_dir)
    ddp.barrier()
    model = create_model(cfg.model["name"], model_cfg)
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
    callbacks += task.callbacks()  # e.g. truncated BPTT for language models
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
    load_weights(model, run_dir / "model.safetensors")  # training is over: the same model takes the best weights
    model.eval()
    results = {
        "valid": task.evaluate(model, "valid"),
        "test": task.evaluate(model, "test"),
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
        write_json(run_dir / "results.json", results)
    shown = "  ".join(f"{split} {k} {v:.4f}" for split in ("valid", "test") for k, v in results[split].items())
    log(f"done: {trainer.stats.step} steps in {seconds:.1f} s; {shown}")
    if ddp.is_main and t.report:
        run = LoadedRun(run_dir, resolved, cfg, model, type(task).load_predictor(run_dir, model), results)
        _write_report(run, task, log)
    return results


def _write_report(run: LoadedRun, task: Task, log) -> None:
    """report.html and figures/ (dnn.inspect); drawing can fail, but never at the cost of the training result."""
    try:
        log(f"report: {write_report(run.path, task=task, log=log, run=run)}")
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
