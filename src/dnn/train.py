"""The way out of training: a recipe or YAML file, with overrides, trained into a run directory.

    results = train("dates-attention", ["train.epochs=2"], run_dir="runs/dates")

What is written is described in :mod:`dnn.run` (the run directory, and the way back in). Every file is written to
a temporary name and renamed, so a crash never leaves a half-written checkpoint; a run killed at any step and
resumed with ``resume=True`` continues exactly where its last checkpoint left off.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from dnn.config import save_yaml, to_dict
from dnn.device import check_precision, keep_freed_memory, release_freed_memory, resolve_device
from dnn.errors import CheckpointError, ConfigError
from dnn.inspect import write_report
from dnn.io import remove_stale_temporaries, write_json
from dnn.models.cnn_base import in_memory_layout
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
                 task: Task, config: dict[str, Any]):  # fmt: skip
        self.run_dir, self.every, self.model, self.ddp, self.task = run_dir, every, model, ddp, task
        self.config = config  # the resolved config: a resume checks config.yaml was not edited since
        self.metric, self.mode = monitor
        self.best: float | None = None
        self.finished: str | None = None  # why training ended (saved last), so a resume knows there is nothing to do
        self.scaler: torch.amp.GradScaler | None = None  # fp16's loss scale, part of an exact resume

    def save(self, trainer) -> None:
        self.ddp.barrier()
        if self.ddp.is_main:
            self._save(trainer)
        self.ddp.barrier()

    def _save(self, trainer) -> None:
        """One atomic file holds everything a resume reads (weights included), so a kill at any point leaves the
        previous checkpoint or the new one, never a mix; last.safetensors follows for a person's use."""
        state = {
            "model": {k: v.detach() for k, v in self.model.state_dict().items()},
            "config": self.config,
            "finished": self.finished,
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
            "stats": {k: v for k, v in vars(trainer.stats).items() if k != "extra"},
            "best": self.best,
            "rng": rng_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }
        context = self.task.checkpoint_context(trainer.context)  # e.g. a language model's carried hidden state
        if context is not None:
            state["context"] = context
        save_state(state, self.run_dir / "state.pt")
        save_weights(self.model, self.run_dir / "last.safetensors")

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


def train(config: str | None, overrides: list[str], run_dir: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train a recipe or YAML file with overrides into ``run_dir``; return the final metrics.

    ``resume=True`` continues the run in ``run_dir`` exactly where its last checkpoint left off; a run that had
    already finished is left as it is and its results are returned. One writer at a time: a second ``train`` on
    the same folder is refused (a crashed writer's lock is recognised as stale). A folder that holds files but no
    dnn run is refused rather than written over.
    """
    if resume:
        if config is not None:
            raise ConfigError(f"--resume continues the run in --run-dir with its saved config; drop {config!r}")
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
        _check_new_run_dir(run_dir)
    ddp = setup_distributed()
    created = not run_dir.exists()
    if ddp.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CheckpointError(f"{run_dir}: cannot create the run directory ({err.strerror or err})") from None
    ddp.barrier()
    lock = RunLock(run_dir) if ddp.is_main else None
    log_file = None

    def log(message: str) -> None:
        if not ddp.is_main:
            return
        if progress:
            print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    try:
        if lock is not None:
            lock.acquire()
            remove_stale_temporaries(run_dir)  # what a writer killed mid-save left behind
        done = _finished(run_dir) if resume else None
        if done is not None:
            if progress and ddp.is_main:
                print(f"{run_dir}: nothing to do, the run finished ({done}); its results are in results.json")
            return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        log_file = _open_log(run_dir) if ddp.is_main else None
        return _train(cfg, run_dir, resume, log, progress and ddp.is_main, ddp)
    except BaseException:
        if log_file is not None and created and not (run_dir / "state.pt").exists():
            log_file.close()
            log_file = None
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was trained: leave no half-made run behind
        raise
    finally:
        if log_file is not None:
            log_file.close()
        if lock is not None:
            lock.release()
        ddp.close()
        release_freed_memory()  # the run's buffers go back to the OS (if train.keep_memory kept them)


def _check_new_run_dir(run_dir: Path) -> None:
    """A new run goes into a new or empty folder: never over another run, nor over a user's own files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a folder; choose a folder for the run")
    if not run_dir.is_dir():
        return
    if (run_dir / "config.yaml").exists() or (run_dir / "state.pt").exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir")
    entries = sorted(p.name for p in run_dir.iterdir() if p.name not in (RunLock.NAME, "log.txt"))
    if entries:
        shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        raise ConfigError(f"{run_dir} is not empty and not a dnn run (it holds {shown}); choose a new or empty "
                          "--run-dir: dnn never writes over files it did not make")  # fmt: skip


def _open_log(run_dir: Path):
    try:
        return open(run_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 — closed by train()
    except OSError as err:
        raise CheckpointError(f"{run_dir / 'log.txt'}: cannot write ({err.strerror or err})") from None


def _finished(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` finished (from its checkpoint), or None if it has more to do."""
    if not (run_dir / "state.pt").is_file() or not (run_dir / "results.json").is_file():
        return None
    return load_state(run_dir / "state.pt").get("finished")


def _train(cfg: RunConfig, run_dir: Path, resume: bool, log, progress: bool, ddp: Distributed) -> dict[str, Any]:
    t = cfg.train
    if t.threads:
        cores = os.cpu_count() or 1
        if t.threads > 4 * cores:  # checked here, not in the config: a run trained elsewhere still loads
            raise ConfigError(f"train.threads={t.threads} is more than 4× this machine's {cores} cores; use 0 "
                              f"(torch's choice) or at most {4 * cores}")  # fmt: skip
        torch.set_num_threads(t.threads)
    torch.set_flush_denormal(t.flush_denormal)
    if t.keep_memory:
        keep_freed_memory()
        release_freed_memory()  # start from a compact heap, not the layout an earlier run in this process left
    device = _device(t, ddp)  # a device that is not there is one line before any data is read
    seed_everything(cfg.seed, cfg.deterministic)
    task = make_task(cfg)
    task.prepare(log)
    model_cfg = validate_model_section(cfg.model, derived=task.model_options())  # validated once, passed whole
    _check_memory(cfg.model["name"], model_cfg)
    resolved = to_dict(cfg)
    resolved["model"] = {"name": cfg.model["name"], **to_dict(model_cfg)}
    if not resume and ddp.is_main:
        save_yaml(resolved, run_dir / "config.yaml")
        task.save_artifacts(run_dir)
    ddp.barrier()
    model = create_model(cfg.model["name"], model_cfg).to(device)
    model = in_memory_layout(model, device, t.channels_last, t.precision)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model['name']}, {n_params:,} parameters on {device} in {t.precision}; run directory {run_dir}")
    if ddp.enabled:
        log(f"distributed: {ddp.world} processes, {'nccl' if device.type == 'cuda' else 'gloo'}")

    transferring = t.init_from or t.freeze_up_to or t.body_lr or t.gradual_unfreeze
    params = _transfer(model, t, log) if transferring else model.parameters()
    if t.unfreeze_after and not t.freeze_up_to:
        raise ConfigError("train.unfreeze_after unfreezes what train.freeze_up_to froze; set train.freeze_up_to too")
    optimizer = make_optimizer(params, t.optimizer, t.lr, t.weight_decay, t.momentum)
    per_epoch = ddp.steps_per_epoch(task.batches_per_epoch())
    total = min(t.max_steps, per_epoch * t.epochs) if t.max_steps else per_epoch * t.epochs
    scheduler = make_scheduler(optimizer, t.schedule, total, t.warmup_steps, t.step_size, t.gamma, max(1, t.patience))
    monitor = task.monitor
    checkpointer = _Checkpointer(run_dir, t.checkpoint_every, monitor, model, ddp, task, resolved)
    callbacks = [Evaluate(task.evaluate, t.eval_every), checkpointer]
    if ddp.is_main:
        tensorboard = t.tensorboard and TensorBoardMirror.available()
        mirrors = (TensorBoardMirror(run_dir / "tensorboard"),) if tensorboard else ()
        callbacks.append(MetricsLog(run_dir / "metrics.jsonl", t.log_every, mirrors))
    callbacks += task.callbacks()  # e.g. truncated BPTT for language models
    if t.unfreeze_after:
        callbacks.append(_Unfreeze(model, t.unfreeze_after, log))
    if t.gradual_unfreeze:
        from dnn.transfer import GradualUnfreezing

        callbacks.append(GradualUnfreezing(model, log))
    if t.patience:
        callbacks.append(EarlyStopping(monitor[0], monitor[1], t.patience))
    if progress:
        callbacks.append(ProgressBar(total, every=max(1, total // 20)))
    timer = _FirstStep()
    callbacks.append(timer)
    stepped = torch.compile(model) if t.compile else model  # the same parameters: evaluation runs the plain model
    trainer = Trainer(
        ddp.wrap(stepped), optimizer, task.step, scheduler=scheduler, clip_norm=t.clip_norm, clip_value=t.clip_value,
        on_nonfinite=t.on_nonfinite, callbacks=callbacks, device=device, precision=t.precision,
    )  # fmt: skip
    checkpointer.scaler = trainer.scaler
    trainer.context["monitor"] = monitor[0]

    if resume:
        state = load_state(run_dir / "state.pt")
        _check_unedited(resolved, state.get("config"), run_dir)
        if "model" in state:  # the weights saved in the same file as the optimiser state
            _load_checkpoint_weights(model, state["model"], run_dir / "state.pt")
        else:  # a run saved before the weights moved into state.pt
            load_weights(model, run_dir / "last.safetensors")
        _load_optimizer(optimizer, state["optimizer"], run_dir)
        if state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        for key, value in state["stats"].items():
            setattr(trainer.stats, key, value)
        checkpointer.best = state["best"]
        set_rng_state(state["rng"])
        if trainer.scaler is not None and state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
        task.restore_context(trainer.context, state.get("context"))
        log(f"resumed at step {trainer.stats.step} (epoch {trainer.stats.epoch})")

    start = time.perf_counter()
    trainer.fit(ddp.shard(task.train_batches, task.batches_per_epoch()), epochs=t.epochs, max_steps=t.max_steps)
    seconds = time.perf_counter() - start
    checkpointer.finished = _why_finished(trainer, t)
    checkpointer.save(trainer)  # the final position, marked finished: a later --resume has nothing to do
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
        "device": str(device),
        "precision": t.precision,
        "clipped_steps": trainer.stats.clipped,
        "skipped_batches": trainer.stats.skipped,
    }
    if t.compile and timer.seconds is not None:  # the cold start, once, apart from the speed of the rest
        results["compile_seconds"] = round(timer.seconds, 2)
        log(f"compile: the first step took {timer.seconds:.1f} s (torch.compile's cold start)")
    if trainer.stats.step > 1 and timer.seconds is not None and seconds > timer.seconds:
        results["steps_per_second"] = round((trainer.stats.step - 1) / (seconds - timer.seconds), 2)
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
    """Transfer learning: a CNN from another CNN run (freeze part of the body, two learning rates), or a sequence
    classifier from a language model run (ULMFiT: its encoder, discriminative rates, gradual unfreezing)."""
    from dnn import transfer
    from dnn.models.cnn_base import ImageClassifier
    from dnn.models.sequence import SequenceClassifier

    if isinstance(model, SequenceClassifier):
        return _transfer_text(model, t, log)
    works = ("train.init_from / freeze_up_to / body_lr / unfreeze_after work for CNNs (the image models); "
             "train.init_from=LM_RUN with train.gradual_unfreeze for a sequence_classifier")  # fmt: skip
    if not isinstance(model, ImageClassifier) or t.gradual_unfreeze:
        raise ConfigError(
            f"{works}; not for {type(model).__name__}"
            + (" with train.gradual_unfreeze" if isinstance(model, ImageClassifier) else "")
        )
    if t.init_from:
        source = Path(t.init_from)
        weights = source / "model.safetensors" if source.is_dir() else source
        try:  # strict: a checkpoint of another model, or of another shape, loads nothing silently
            result = transfer.load_pretrained(model, weights, strict=True, skip_head=True)
        except CheckpointError as err:
            reason = str(err).replace("; pass strict=False to load only what fits", "")
            raise CheckpointError(f"train.init_from: {reason} (start from a run of the same model, "
                                  f"model.name={model.name!r}, trained on images of the same size and channels)"
                                  ) from None  # fmt: skip
        fresh = f"; the head ({len(result.skipped)} tensors) starts afresh" if result.skipped else ", the head too"
        log(f"transfer: {len(result.loaded)} tensors from {weights}{fresh}")
    if t.freeze_up_to:
        frozen = transfer.freeze(model, None if t.freeze_up_to == "body" else t.freeze_up_to)
        log(f"transfer: frozen stages {', '.join(frozen)} (their BatchNorm statistics too)")
    return transfer.param_groups(model, t.body_lr or t.lr, t.lr, t.weight_decay, include_frozen=t.unfreeze_after > 0)


def _transfer_text(model: torch.nn.Module, t, log):
    """A sequence classifier from a language model run: its embedding and recurrent layers, a new head."""
    from dnn import transfer

    if t.freeze_up_to or t.body_lr or t.unfreeze_after or not t.init_from:
        raise ConfigError("a sequence_classifier transfers with train.init_from=LM_RUN (a language_model run of the "
                          "same tokenizer), train.gradual_unfreeze and train.layer_lr_factor; train.freeze_up_to, "
                          "body_lr and unfreeze_after are for CNNs")  # fmt: skip
    source = Path(t.init_from)
    task = source / "task.json"
    kind = json.loads(task.read_text(encoding="utf-8")).get("task") if task.is_file() else None
    if kind != "LanguageModelling":
        raise ConfigError(f"train.init_from={t.init_from}: a sequence_classifier starts from a language model run "
                          f"(task.json says LanguageModelling), this is {kind or 'no dnn run'}; train one with "
                          f"`dnn train lm-pydoc-words`")  # fmt: skip
    weights = source / "model.safetensors"
    try:
        result = transfer.load_language_model(model, transfer.read_state_dict(weights), str(weights))
    except CheckpointError as err:
        raise CheckpointError(f"train.init_from: {err} (the classifier takes the language model's embedding_size, "
                              f"hidden_size, num_layers and cell, one direction)") from None  # fmt: skip
    log(f"transfer: {len(result.loaded)} encoder tensors from {weights}; the head starts afresh")
    groups = transfer.discriminative_groups(model, t.lr, t.layer_lr_factor, t.weight_decay)
    log("transfer: learning rates " + ", ".join(f"{g['name']} {g['lr']:.2g}" for g in groups))
    return groups


def _why_finished(trainer: Trainer, t) -> str:
    if t.max_steps and trainer.stats.step >= t.max_steps:
        return f"train.max_steps={t.max_steps} reached at step {trainer.stats.step}"
    if trainer.stats.epoch >= t.epochs:
        return f"{t.epochs} epoch{'s' if t.epochs > 1 else ''} done, step {trainer.stats.step}"
    return f"stopped early at step {trainer.stats.step} (train.patience={t.patience})"


def _load_checkpoint_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the saved weights do not fit the model of config.yaml "
                              f"({str(err).splitlines()[-1].strip()})") from None  # fmt: skip


def _check_unedited(config: dict[str, Any], saved: dict[str, Any] | None, run_dir: Path) -> None:
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
        raise CheckpointError(
            f"{run_dir / 'config.yaml'} was edited after the checkpoint ({'; '.join(changed[:3])}); a resumed run "
            f"continues with the config it was trained with: undo the edit, or train a new run with the change"
        )


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any], run_dir: Path) -> None:
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{run_dir / 'state.pt'}: the saved optimiser state does not fit train.optimizer in config.yaml "
            f"({type(err).__name__}: {err}); a resumed run keeps the optimiser it was trained with"
        ) from None


def _check_memory(name: str, model_cfg: Any) -> None:
    """Refuse a model whose weights, gradients and optimiser state would not fit in this machine's memory,
    before allocating any of it (the model is built on the meta device: shapes only)."""
    with torch.device("meta"):
        meta = create_model(name, model_cfg)
    n = sum(p.numel() for p in meta.parameters())
    need = n * 4 * 4  # fp32 weights, gradients and Adam's two moments
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: no estimate of the machine, no check
        total = 0
    if total and need > 0.8 * total:
        raise ConfigError(
            f"model {name!r} has {n:,} parameters: training needs about {need / 2**30:.1f} GiB for weights, gradients "
            f"and optimiser state, more than this machine's {total / 2**30:.1f} GiB; choose a smaller model "
            f"(e.g. model.hidden_size)"
        )


class RunLock:
    """One writer per run directory: an exclusive ``flock`` on ``<run>/.lock`` held while training.

    The kernel drops the lock when its process dies, however it dies, so a crashed writer's lock is recognised
    as stale at once: the next writer takes it. The file holds the writer's pid, for the message.
    """

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.path = run_dir / self.NAME
        self.file = None

    def acquire(self) -> None:
        import fcntl

        try:
            file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 — held until release()
        except OSError as err:
            raise CheckpointError(f"{self.path}: cannot lock the run directory ({err.strerror or err})") from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "?"
            file.close()
            raise ConfigError(
                f"{self.path.parent} is being written by another dnn train (pid {holder}); wait for it to finish, "
                f"or choose another --run-dir"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        self.file = file

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the descriptor drops the lock
            self.file = None


def _device(t, ddp: Distributed) -> torch.device:
    """train.device resolved; under torchrun on CUDA each rank takes its local GPU."""
    device = resolve_device(t.device)
    check_precision(device, t.precision)
    if device.type == "cuda" and ddp.enabled:
        device = torch.device("cuda", ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


class _FirstStep:
    """How long the first optimiser step took (with torch.compile: its cold start)."""

    def __init__(self):
        self.start: float | None = None
        self.seconds: float | None = None

    def on_fit_start(self, trainer, **_):
        self.start = time.perf_counter()

    def on_step_end(self, trainer, **_):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start


class _Unfreeze:
    """``train.unfreeze_after``: the frozen body trains again from epoch N on (also after a resume past it)."""

    def __init__(self, model: torch.nn.Module, after: int, log):
        self.model, self.after, self.log = model, after, log

    def on_epoch_start(self, trainer, epoch, **_):
        from dnn import transfer

        if epoch >= self.after and transfer.frozen_stages(self.model):
            stages = transfer.unfreeze(self.model)
            self.log(f"transfer: epoch {epoch + 1}: stages {', '.join(stages)} unfrozen (train.unfreeze_after)")
