"""The way out of training: a recipe or YAML file, with overrides, trained into a run directory.

    results = train("dates-attention", ["train.epochs=2"], run_dir="runs/dates")

This module only orchestrates. The run directory and its rules are :mod:`dnn.rundir`'s; checkpoints
:mod:`dnn.training.checkpointer`'s; what a resume checks :mod:`dnn.training.resume`'s; transfer learning
:mod:`dnn.training.transfer_setup`'s; threads, device and memory :mod:`dnn.training.setup`'s. A run killed at any
instant — before its first step, while its config is written, after its last checkpoint — continues with
``resume=True`` and ends bit-identical to a run that was never stopped.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from dnn.device import release_freed_memory
from dnn.errors import CheckpointError, ConfigError
from dnn.inspect import write_report
from dnn.io import resource_error
from dnn.models.cnn_base import in_memory_layout
from dnn.models.deferred import Deferred
from dnn.models.registry import create_model
from dnn.run import LoadedRun, read_config, resolve_config
from dnn.run_config import AddingData, RunConfig
from dnn.rundir import CONFIG, LOG, METRICS, MODEL, RESULTS, STATE, TENSORBOARD, RunDir, RunLock
from dnn.tasks import Task, make_task
from dnn.training import Trainer
from dnn.training import callbacks as cb
from dnn.training import resume as resumed
from dnn.training.checkpoint import load_weights, weights_writer
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
    if resume and config is not None:
        raise ConfigError(f"--resume continues the run in --run-dir with its saved config; drop {config!r}")
    if resume and (run_dir is None or overrides):
        raise ConfigError("--resume needs --run-dir (the run to continue) and takes no overrides: a resumed run "
                          "continues with its saved config")  # fmt: skip
    cfg = None if resume else resolve_config(config, overrides)
    if cfg is not None and os.environ.get("RANK", "0") == "0":
        _note_empty_splits(cfg)
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
            if ddp.is_main:  # only the first process writes; the others read the folder it made
                run = RunDir.open_run(run_dir) if resume else RunDir.create_run(run_dir, cfg.as_dict())
            ddp.barrier()
            files = run or RunDir.reader(run_dir)
            state = resumed.saved_state(files) if resume else None
            if state is not None and state.get("finished") and files.has(RESULTS):
                if progress and ddp.is_main:
                    print(f"{run_dir}: nothing to do, the run finished ({state['finished']}); its results are in "
                          f"{files.file(RESULTS)}")  # fmt: skip
                return files.read_json(RESULTS, "a run's results")
            if resume:
                cfg = read_config(files) if files.has(CONFIG) else resumed.started_config(files)
            log_file = run.append(LOG) if run is not None else None
            return _train(cfg, files, run, state, resume, log, progress and ddp.is_main, ddp)
        except OSError as err:  # a full disk, a read-only folder, a name too long: one line
            error = resource_error(err.filename or run_dir, err)
            raise CheckpointError(f"{error}{resumed.kept_checkpoint(run)}") from None
    except BaseException:
        if run is not None and run.created is not None and not run.has(STATE):  # no checkpoint to continue from
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
        resumed.check_data(run, cfg, resuming=state is not None)
    seed_everything(cfg.seed, cfg.deterministic)
    task = make_task(cfg)
    check_memory(task, cfg)  # the data it will hold, before it is made or read
    task.prepare(log)
    config = cfg.model.resolve(task.model_options())  # the model's typed config, built once, passed whole
    deferred = Deferred(lambda: create_model(cfg.model.name, config))  # the one build, on the meta device
    check_memory(task, cfg, deferred.model, device)  # one training step, before anything of it is allocated
    resolved = cfg.as_dict()
    if run is not None and state is None:
        run.write_text(CONFIG, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
        task.save_artifacts(run)
    elif run is not None:
        resumed.check_unedited(resolved, state.get("config"), run.file(CONFIG))
        resumed.check_artifacts(run, task)
    ddp.barrier()
    model = deferred.materialise().to(device)  # the same module, its weights those a direct build gives
    model = in_memory_layout(model, device, t.channels_last, t.precision)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model.name}, {n_params:,} parameters on {device} in {t.precision}; run directory "
        f"{files.path}")  # fmt: skip
    if ddp.enabled:
        log(f"distributed: {ddp.world} processes, {'nccl' if device.type == 'cuda' else 'gloo'}")
    trainer, checkpointer, timer = _trainer(cfg, task, model, run, resolved, device, log, progress, ddp)
    if state is not None:
        checkpointer.restore(trainer, state, task)
        log(f"resumed at step {trainer.stats.step} (epoch {trainer.stats.epoch})")
    elif resume:
        log("started again in place: the run was stopped before its first step, so there was nothing to resume")
    first = (trainer.stats.step, trainer.stats.elapsed)
    if checkpointer.finished is None:  # a run killed after its last checkpoint has only its results to write
        trainer.fit(ddp.shard(task.train_batches, task.batches_per_epoch()), epochs=t.epochs, max_steps=t.max_steps)
        checkpointer.finished = resumed.why_finished(trainer, t)
        checkpointer.save(trainer)  # the final position, marked finished: a later --resume has nothing to do
    identical = ddp.weights_identical(model)
    if run is not None and not run.has(MODEL):
        run.write_hashed({MODEL: weights_writer(model)})
    ddp.barrier()
    load_weights(model, files.verified(MODEL, "weights file"))  # training is over: the model takes the best weights
    model.eval()
    results = _results(task, model, trainer, checkpointer.finished, t, device, first, timer, log)
    if ddp.enabled:
        results.update(processes=ddp.world, weights_identical_across_processes=identical)
    if run is not None:
        run.write_json(RESULTS, results)
    shown = "  ".join(f"{split} {k} {v:.4f}" for split in ("valid", "test") for k, v in results[split].items())
    log(f"done: {trainer.stats.step} steps in {trainer.stats.elapsed:.1f} s; {shown}")
    if run is not None and t.report:
        loaded = LoadedRun(run.path, cfg, model, type(task).load_predictor(run, model), results)
        _write_report(loaded, task, run, log)
    return results


def _trainer(cfg: RunConfig, task: Task, model: torch.nn.Module, run: RunDir | None, resolved: dict[str, Any],
             device: torch.device, log, progress: bool, ddp: Distributed
             ) -> tuple[Trainer, Checkpointer, cb.FirstStep]:  # fmt: skip
    """The optimiser, the schedule and the callbacks around ``model``: what varies between runs."""
    t = cfg.train
    optimizer = make_optimizer(parameters(model, t, log), t.optimizer, t.lr, t.weight_decay, t.momentum)
    per_epoch = ddp.steps_per_epoch(task.batches_per_epoch())
    total = min(t.max_steps, per_epoch * t.epochs) if t.max_steps else per_epoch * t.epochs
    trainers: list[Trainer] = []  # the clock a cosine schedule anneals over when train.max_time is set
    spent = (lambda: trainers[0].tick() / t.max_seconds if trainers else 0.0) if t.max_time else None
    scheduler = make_scheduler(optimizer, t.schedule, total, t.warmup_steps, t.step_size, t.gamma, max(1, t.patience),
                               time_fraction=spent)  # fmt: skip
    stateful: dict[str, Any] = {}  # callbacks whose state a checkpoint keeps
    if run is not None:
        tensorboard = t.tensorboard and cb.TensorBoardMirror.available()
        mirrors = (cb.TensorBoardMirror(run.folder(TENSORBOARD)),) if tensorboard else ()
        opener = lambda: run.append(METRICS, "metrics log")  # noqa: E731
        stateful["metrics"] = cb.MetricsLog(run.file(METRICS), t.log_every, mirrors, opener=opener)
    if t.patience:
        stateful["early_stopping"] = cb.EarlyStopping(task.monitor[0], task.monitor[1], t.patience)
    checkpointer = Checkpointer(run, every=t.checkpoint_every, interval=t.checkpoint_seconds, monitor=task.monitor,
                                model=model, ddp=ddp, config=resolved, context=task.checkpoint_context,
                                stateful=stateful)  # fmt: skip
    # a step's metrics line is written before its checkpoint; early stopping counts before it is saved
    callbacks = [cb.Evaluate(task.validate, t.eval_every), *stateful.values(), checkpointer]
    callbacks += task.callbacks() + transfer_callbacks(model, t, log)  # e.g. truncated BPTT for language models
    if t.max_time:
        callbacks.append(cb.TimeLimit(t.max_seconds, lambda over: agree(ddp, over)))
    if progress:
        callbacks.append(cb.ProgressBar(total, every=max(1, total // 20)))
    timer = cb.FirstStep()
    stepped = torch.compile(model) if t.compile else model  # the same parameters: evaluation runs the plain model
    trainer = Trainer(
        ddp.wrap(stepped), optimizer, task.step, scheduler=scheduler, clip_norm=t.clip_norm, clip_value=t.clip_value,
        on_nonfinite=t.on_nonfinite, callbacks=[*callbacks, timer], device=device, precision=t.precision,
        monitor=task.monitor[0],
    )  # fmt: skip
    trainers.append(trainer)
    checkpointer.scaler = trainer.scaler
    return trainer, checkpointer, timer


def _results(task: Task, model: torch.nn.Module, trainer: Trainer, finished: str, t: Any, device: torch.device,
             first: tuple[int, float], timer: cb.FirstStep, log) -> dict[str, Any]:  # fmt: skip
    """What results.json records: the best weights on the validation and test splits, and how training went."""
    results = {
        "valid": task.evaluate(model, "valid"),
        "test": task.evaluate(model, "test"),
        "steps": trainer.stats.step,
        "epochs": trainer.stats.epoch,
        "seconds": round(trainer.stats.elapsed, 2),  # training time over every resume, evaluation included
        "finished": finished,
        "device": str(device),
        "precision": t.precision,
        "clipped_steps": trainer.stats.clipped,
        "skipped_batches": trainer.stats.skipped,
    }
    if t.max_time:
        results["max_time"] = t.max_seconds  # the budget, in seconds
    if t.compile and timer.seconds is not None:  # the cold start, once, apart from the speed of the rest
        results["compile_seconds"] = round(timer.seconds, 2)
        log(f"compile: the first step took {timer.seconds:.1f} s (torch.compile's cold start)")
    steps, seconds = trainer.stats.step - first[0], trainer.stats.elapsed - first[1]  # of this process
    if steps > 1 and timer.seconds is not None and seconds > timer.seconds:
        results["steps_per_second"] = round((steps - 1) / (seconds - timer.seconds), 2)
    return results


def _note_empty_splits(cfg: RunConfig) -> None:
    """One line on stderr, before training, when built-in data's ``data.sizes`` leaves the validation or the test
    split empty: the run will end without those metrics. (The adding problem refuses empty splits itself.)"""
    # probe: only the data configs of built-in data have sizes; a user's files are split by fractions
    sizes = getattr(cfg.data, "sizes", None)
    empty = [split for split, n in zip(("validation", "test"), sizes[1:] if sizes else ()) if n == 0]
    if cfg.data.train is not None or isinstance(cfg.data, AddingData) or not empty:
        return
    which = " and ".join(empty) + (" splits" if len(empty) == 2 else " split")
    example = ",".join(str(n or max(1, sizes[0] // 10)) for n in sizes)
    print(f"dnn: note: data.sizes={list(sizes)} leaves the {which} empty: this run ends with no "
          f"{' or '.join(empty)} metrics (to get them: data.sizes=[{example}])", file=sys.stderr)  # fmt: skip


def _write_report(loaded: LoadedRun, task: Task, run: RunDir, log) -> None:
    """report.html and figures/ (dnn.inspect); drawing can fail, but never at the cost of the training result."""
    try:
        log(f"report: {write_report(loaded.path, task=task, log=log, run=loaded, into=run)}")
    except Exception as err:
        log(f"report: could not draw the report: {' '.join(f'{type(err).__name__}: {err}'.split())}")
