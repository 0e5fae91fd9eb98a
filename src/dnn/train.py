"""The way out of training: a recipe or YAML file, with overrides, trained into a run directory.

    results = train("dates-attention", ["train.epochs=2"], run_dir="runs/dates")

The run directory and its rules are :mod:`dnn.rundir`'s; checkpoints :mod:`dnn.training.checkpointer`'s. A run
killed at any instant — before its first step, while its config is written, after its last checkpoint — continues
with ``resume=True`` and ends bit-identical to a run that was never stopped.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from dnn.config import to_dict
from dnn.device import release_freed_memory
from dnn.errors import CheckpointError, ConfigError
from dnn.inspect import write_report
from dnn.io import fingerprint, read_bytes_nofollow, resource_error
from dnn.models.cnn_base import in_memory_layout
from dnn.models.registry import create_model
from dnn.run import LoadedRun, read_config, resolve_config
from dnn.run_config import RunConfig, validate_model_section
from dnn.rundir import (
    CONFIG,
    LABELS,
    LOG,
    METRICS,
    MODEL,
    RESULTS,
    STATE,
    TASK,
    TENSORBOARD,
    TOKENIZER,
    VOCAB,
    RunDir,
    RunLock,
)
from dnn.tasks import Task, make_task
from dnn.training import Trainer
from dnn.training.callbacks import (
    EarlyStopping,
    Evaluate,
    FirstStep,
    MetricsLog,
    ProgressBar,
    TensorBoardMirror,
    TimeLimit,
)
from dnn.training.checkpoint import load_state, load_weights, weights_writer
from dnn.training.checkpointer import Checkpointer, agree
from dnn.training.distributed import Distributed
from dnn.training.distributed import setup as setup_distributed
from dnn.training.optim import make_optimizer, make_scheduler
from dnn.training.seed import seed_everything
from dnn.training.setup import check_memory, setup_device, setup_process
from dnn.training.transfer_setup import parameters, transfer_callbacks

__all__ = ["RunLock", "train"]


def train(config: str | None, overrides: list[str], run_dir: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train a recipe or YAML file with overrides into ``run_dir``; return the final metrics.

    ``resume=True`` continues the run in ``run_dir`` where its last checkpoint left off (a run stopped before its
    first step starts again in place); a finished run is left as it is and its results are returned. One writer
    at a time; a folder that holds anything dnn did not write is refused untouched (:mod:`dnn.rundir`).
    """
    if resume:
        if config is not None:
            raise ConfigError(f"--resume continues the run in --run-dir with its saved config; drop {config!r}")
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir: the run to continue")
        if overrides:
            raise ConfigError("--resume continues a run with its saved config; overrides are not allowed")
        cfg = None
    else:
        cfg = resolve_config(config, overrides)
        if run_dir is None:
            run_dir = Path("runs") / f"{Path(config).stem if config else 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, ddp, run, log_file = Path(run_dir), setup_distributed(), None, None

    def log(message: str) -> None:
        if progress and ddp.is_main:
            print(message, flush=True)
        if log_file is not None:
            log_file.write(message + "\n")
            log_file.flush()

    try:
        try:
            if ddp.is_main:
                run = RunDir.open_run(run_dir) if resume else RunDir.create_run(run_dir, to_dict(cfg))
            ddp.barrier()
            files = run or RunDir.reader(run_dir)
            state = _saved_state(files) if resume else None
            if state is not None and state.get("finished") and files.has(RESULTS):
                if progress and ddp.is_main:
                    print(f"{run_dir}: nothing to do, the run finished ({state['finished']}); its results are in "
                          f"{files.file(RESULTS)}")  # fmt: skip
                return files.read_json(RESULTS, "a run's results")
            if resume:
                cfg = read_config(files)[1] if files.has(CONFIG) else _started_config(files)
            log_file = run.append(LOG) if run is not None else None
            return _train(cfg, files, run, state, resume, log, progress and ddp.is_main, ddp)
        except OSError as err:  # a full disk, a read-only folder, a name too long: one line
            error = resource_error(getattr(err, "filename", None) or run_dir, err)
            raise CheckpointError(f"{error}{_kept(run)}") from None
    except BaseException:
        if run is not None and run.created and not run.has(STATE):  # no checkpoint to continue from
            if log_file is not None:
                log_file.close()
                log_file = None
            run.discard()  # nothing was trained: leave no half-made run behind
        raise
    finally:
        if log_file is not None:
            log_file.close()
        if run is not None:
            run.close()
        ddp.close()
        release_freed_memory()  # the run's buffers go back to the OS (if train.keep_memory kept them)


def _train(cfg: RunConfig, files: RunDir, run: RunDir | None, state: dict[str, Any] | None, resume: bool, log,
           progress: bool, ddp: Distributed) -> dict[str, Any]:  # fmt: skip
    t = cfg.train
    setup_process(t)
    device = setup_device(t, ddp)  # a device that is not there is one line before any data is read
    if run is not None:
        _check_data(run, cfg, resuming=state is not None)
    seed_everything(cfg.seed, cfg.deterministic)
    task = make_task(cfg)
    task.prepare(log)
    model_cfg = validate_model_section(cfg.model, derived=task.model_options())  # validated once, passed whole
    check_memory(cfg.model["name"], model_cfg)
    resolved = to_dict(cfg)
    resolved["model"] = {"name": cfg.model["name"], **to_dict(model_cfg)}
    if run is not None and state is None:
        run.write_text(CONFIG, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
        task.save_artifacts(run)
    elif run is not None:
        _check_unedited(resolved, state.get("config"), run.file(CONFIG))
        _check_artifacts(run, task)
    ddp.barrier()
    model = create_model(cfg.model["name"], model_cfg).to(device)
    model = in_memory_layout(model, device, t.channels_last, t.precision)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model['name']}, {n_params:,} parameters on {device} in {t.precision}; run directory "
        f"{files.path}")  # fmt: skip
    if ddp.enabled:
        log(f"distributed: {ddp.world} processes, {'nccl' if device.type == 'cuda' else 'gloo'}")
    optimizer = make_optimizer(parameters(model, t, log), t.optimizer, t.lr, t.weight_decay, t.momentum)
    per_epoch = ddp.steps_per_epoch(task.batches_per_epoch())
    total = min(t.max_steps, per_epoch * t.epochs) if t.max_steps else per_epoch * t.epochs
    trainers: list[Trainer] = []  # the clock a cosine schedule anneals over when train.max_time is set
    spent = (lambda: trainers[0].tick() / t.max_seconds if trainers else 0.0) if t.max_time else None
    scheduler = make_scheduler(optimizer, t.schedule, total, t.warmup_steps, t.step_size, t.gamma, max(1, t.patience),
                               time_fraction=spent)  # fmt: skip
    stateful: dict[str, Any] = {}  # callbacks whose state a checkpoint keeps
    if run is not None:
        tensorboard = t.tensorboard and TensorBoardMirror.available()
        mirrors = (TensorBoardMirror(run.folder(TENSORBOARD)),) if tensorboard else ()
        opener = lambda: run.append(METRICS, "metrics log")  # noqa: E731
        stateful["metrics"] = MetricsLog(run.file(METRICS), t.log_every, mirrors, opener=opener)
    if t.patience:
        stateful["early_stopping"] = EarlyStopping(task.monitor[0], task.monitor[1], t.patience)
    checkpointer = Checkpointer(run, every=t.checkpoint_every, interval=t.checkpoint_seconds, monitor=task.monitor,
                                model=model, ddp=ddp, config=resolved, context=task.checkpoint_context,
                                stateful=stateful)  # fmt: skip
    # the metrics line of a step is written before its checkpoint, early stopping counts before it is saved
    callbacks = [Evaluate(task.evaluate, t.eval_every), *stateful.values(), checkpointer]
    callbacks += task.callbacks() + transfer_callbacks(model, t, log)  # e.g. truncated BPTT for language models
    if t.max_time:
        callbacks.append(TimeLimit(t.max_seconds, lambda over: agree(ddp, over)))
    if progress:
        callbacks.append(ProgressBar(total, every=max(1, total // 20)))
    timer = FirstStep()
    callbacks.append(timer)
    stepped = torch.compile(model) if t.compile else model  # the same parameters: evaluation runs the plain model
    trainer = Trainer(
        ddp.wrap(stepped), optimizer, task.step, scheduler=scheduler, clip_norm=t.clip_norm, clip_value=t.clip_value,
        on_nonfinite=t.on_nonfinite, callbacks=callbacks, device=device, precision=t.precision,
    )  # fmt: skip
    trainers.append(trainer)
    checkpointer.scaler = trainer.scaler
    trainer.context["monitor"] = task.monitor[0]
    if state is not None:
        checkpointer.restore(trainer, state, task)
        log(f"resumed at step {trainer.stats.step} (epoch {trainer.stats.epoch})")
    elif resume:
        log("started again in place: the run was stopped before its first step, so there was nothing to resume")
    first_step, first_elapsed = trainer.stats.step, trainer.stats.elapsed
    if checkpointer.finished is None:  # a run killed after its last checkpoint has only its results to write
        trainer.fit(ddp.shard(task.train_batches, task.batches_per_epoch()), epochs=t.epochs, max_steps=t.max_steps)
        checkpointer.finished = _why_finished(trainer, t)
        checkpointer.save(trainer)  # the final position, marked finished: a later --resume has nothing to do
    identical = ddp.weights_identical(model)
    if run is not None and not run.has(MODEL):
        run.write_hashed({MODEL: weights_writer(model)})
    ddp.barrier()
    load_weights(model, files.verified(MODEL, "weights file"))  # training is over: the model takes the best weights
    model.eval()
    results = {
        "valid": task.evaluate(model, "valid"),
        "test": task.evaluate(model, "test"),
        "steps": trainer.stats.step,
        "epochs": trainer.stats.epoch,
        "seconds": round(trainer.stats.elapsed, 2),  # training time over every resume, evaluation included
        "finished": checkpointer.finished,
        "device": str(device),
        "precision": t.precision,
        "clipped_steps": trainer.stats.clipped,
        "skipped_batches": trainer.stats.skipped,
    }
    if t.max_time:
        results["max_time"] = t.max_seconds
    if t.compile and timer.seconds is not None:  # the cold start, once, apart from the speed of the rest
        results["compile_seconds"] = round(timer.seconds, 2)
        log(f"compile: the first step took {timer.seconds:.1f} s (torch.compile's cold start)")
    steps, seconds = trainer.stats.step - first_step, trainer.stats.elapsed - first_elapsed
    if steps > 1 and timer.seconds is not None and seconds > timer.seconds:
        results["steps_per_second"] = round((steps - 1) / (seconds - timer.seconds), 2)
    if ddp.enabled:
        results["processes"] = ddp.world
        results["weights_identical_across_processes"] = identical
    if run is not None:
        run.write_json(RESULTS, results)
    shown = "  ".join(f"{split} {k} {v:.4f}" for split in ("valid", "test") for k, v in results[split].items())
    log(f"done: {trainer.stats.step} steps in {trainer.stats.elapsed:.1f} s; {shown}")
    if run is not None and t.report:
        loaded = LoadedRun(run.path, resolved, cfg, model, type(task).load_predictor(run, model), results)
        _write_report(loaded, task, run, log)
    return results


def _write_report(loaded: LoadedRun, task: Task, run: RunDir, log) -> None:
    """report.html and figures/ (dnn.inspect); drawing can fail, but never at the cost of the training result."""
    try:
        log(f"report: {write_report(loaded.path, task=task, log=log, run=loaded, into=run)}")
    except Exception as err:
        log(f"report: could not draw the report: {' '.join(f'{type(err).__name__}: {err}'.split())}")


def _saved_state(files: RunDir) -> dict[str, Any] | None:
    """The run's training state, checked against the SHA-256 recorded when it was written; None if it has none."""
    return load_state(files.verified(STATE, "training state")) if files.has(STATE) else None


def _kept(run: RunDir | None) -> str:
    """Where a run that stopped on an error can go on from: its last checkpoint."""
    try:
        step = load_state(run.verified(STATE))["stats"]["step"] if run is not None and run.has(STATE) else None
    except (CheckpointError, KeyError, TypeError):
        step = None
    if step is None:
        return ""
    return f"; the last checkpoint, {run.file(STATE)} at step {step}, is kept: continue from it with `dnn train " \
           f"--resume --run-dir {run.path}`"  # fmt: skip


def _started_config(files: RunDir) -> RunConfig:
    """The config a run was started with, from its manifest: a run killed before config.yaml was written."""
    if files.source is None:
        raise CheckpointError(f"{files.path}: no {CONFIG} and no config in its manifest; nothing was trained: start "
                              f"it again with `dnn train RECIPE --run-dir {files.path}`")  # fmt: skip
    return RunConfig.from_dict(files.source)


def data_fingerprints(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """A fingerprint (size, SHA-256) of every file the run reads: data.train / valid / test / target, init_from."""
    keys = {f"data.{k}": getattr(cfg.data, k, None) for k in ("train", "valid", "test", "target")}
    keys["train.init_from"] = cfg.train.init_from
    run_files = (MODEL, CONFIG, TASK, VOCAB, TOKENIZER, LABELS)
    return {key: fingerprint(path, names=run_files if key == "train.init_from" and Path(path).is_dir() else None)
            for key, path in keys.items() if isinstance(path, str) and path}  # fmt: skip


def _check_data(run: RunDir, cfg: RunConfig, resuming: bool) -> None:
    """A resumed run reads the data it began with, or stops in one line naming the file that changed."""
    current = data_fingerprints(cfg)
    changed = _changed(run.data, current) if resuming else None
    if changed:
        raise CheckpointError(f"{changed}; a resumed run must read the data it was trained on (its vocabulary, "
                              "classes and batches come from it): restore the file, or train a new run")  # fmt: skip
    run.record_data(current)


def _changed(recorded: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> str | None:
    """The first data file of ``current`` that differs from what the run recorded, as a message naming it."""
    for key, now in current.items():
        then = recorded.get(key)
        if then is None or then == now:
            continue
        path = then.get("path")
        if now.get("missing"):
            return f"{key}: {path} is gone since the run began"
        if path != now.get("path"):
            return f"{key}: the run read {path}, now {now.get('path')}"
        return (f"{key}: {path} changed since the run began ({then.get('size')} → {now.get('size')} bytes, SHA-256 "
                f"{then.get('sha256', '')[:12]}… → {now.get('sha256', '')[:12]}…)")  # fmt: skip
    return None


def _check_artifacts(run: RunDir, task: Task) -> None:
    """What the data gives now (vocabularies, classes, normalisation) is what the run was trained with: a resumed
    run never silently rebuilds them."""
    with tempfile.TemporaryDirectory(prefix="dnn-") as tmp:
        scratch = RunDir.scratch(tmp)
        task.save_artifacts(scratch)
        for name in scratch.files:
            saved = read_bytes_nofollow(run.file(name)) if run.has(name) else None
            if saved != read_bytes_nofollow(scratch.file(name)):
                what = "missing" if saved is None else "differs from what the data gives now"
                raise CheckpointError(f"{run.file(name)}: {what}; a resumed run keeps the vocabularies, classes and "
                                      "normalisation it was trained with: restore the data (or the file), or train "
                                      "a new run")  # fmt: skip


def _check_unedited(config: dict[str, Any], saved: dict[str, Any] | None, path: Path) -> None:
    """A resumed run continues with the config its checkpoint was made with: an edit of config.yaml is refused."""
    if saved is None:  # a checkpoint from before the config was saved with it
        return

    def differences(a: Any, b: Any, key: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [
                d
                for k in sorted(set(a) & set(b), key=str)  # a key only one side has: a field added since
                for d in differences(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
            ]
        return [] if a == b else [f"{key}: {b!r} → {a!r}"]

    changed = differences(config, saved, "")
    if changed:
        raise CheckpointError(f"{path} was edited after the checkpoint ({'; '.join(changed[:3])}); a resumed run "
                              "continues with the config it was trained with: undo the edit, or train a new run "
                              "with the change")  # fmt: skip


def _why_finished(trainer: Trainer, t) -> str:
    if t.max_steps and trainer.stats.step >= t.max_steps:
        return f"train.max_steps={t.max_steps} reached at step {trainer.stats.step}"
    if t.max_time and trainer.stats.elapsed >= t.max_seconds:
        return f"train.max_time={t.max_time} reached at step {trainer.stats.step} ({trainer.stats.elapsed:.0f} s)"
    if trainer.stats.epoch >= t.epochs:
        return f"{t.epochs} epoch{'s' if t.epochs > 1 else ''} done, step {trainer.stats.step}"
    return f"stopped early at step {trainer.stats.step} (train.patience={t.patience})"
