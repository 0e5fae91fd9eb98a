"""Callbacks: what varies between runs, kept out of the training loop.

Each listens to the trainer's named events (``on_<event>(trainer, **info)``):

- :class:`MetricsLog` — one JSON line per logging interval in ``metrics.jsonl`` (loss, gradient norm before
  clipping, how often clipping fired, learning rate, throughput) and one per evaluation;
- :class:`ProgressBar` — a Rich bar on a terminal, plain periodic lines otherwise;
- :class:`Evaluate` — runs the task's evaluation every epoch or every N steps and emits ``eval_end``;
- :class:`EarlyStopping` — stops when the monitored metric has not improved for ``patience`` evaluations;
- :class:`TruncatedBPTT` — carries a language model's hidden state across batches, detached between chunks.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch

from dnn.io import open_append

__all__ = [
    "EarlyStopping",
    "Evaluate",
    "FirstStep",
    "MetricsLog",
    "ProgressBar",
    "TimeLimit",
    "TruncatedBPTT",
    "detach_state",
]


class TensorBoardMirror:
    """Every metrics record as TensorBoard scalars: ``train/loss``, ``train/grad_norm``, ``valid/accuracy`` …"""

    def __init__(self, log_dir: str | os.PathLike):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    @staticmethod
    def available() -> bool:
        import importlib.util

        return importlib.util.find_spec("tensorboard") is not None

    def write(self, record: dict[str, Any]) -> None:
        prefix = "train" if record["kind"] == "train" else record.get("split", "eval")
        for key, value in record.items():
            if key in ("kind", "split", "step", "epoch") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])
        self.writer.flush()


class MetricsLog:
    """Append a JSON line every ``every`` steps (averages over the interval) and after every evaluation; each
    record also goes to the ``mirrors`` (e.g. :class:`TensorBoardMirror`). ``opener`` opens the file to append
    (default: ``path``, never through a symbolic or hard link); the interval's sums are part of a checkpoint
    (:meth:`state_dict`), so that a resumed run logs the same lines."""

    def __init__(self, path: str | os.PathLike, every: int = 10, mirrors: tuple = (),
                 opener: Callable[[], TextIO] | None = None):  # fmt: skip
        self.path = Path(path)
        self.every = max(1, every)
        self.mirrors = mirrors
        self.opener = opener or (lambda: open_append(self.path, "metrics log"))
        self._reset()

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sums": dict(self.sums), "max_grad_norm": self.max_grad_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n, self.sums, self.max_grad_norm = state["n"], dict(state["sums"]), state["max_grad_norm"]

    def _reset(self) -> None:
        self.n = 0
        self.sums = {"loss": 0.0, "grad_norm": 0.0, "clipped": 0.0, "items": 0.0}
        self.max_grad_norm = 0.0
        self.start = time.perf_counter()

    def write(self, record: dict[str, Any]) -> None:
        with self.opener() as f:  # one complete line per write
            f.write(json.dumps(record) + "\n")
        for mirror in self.mirrors:
            mirror.write(record)

    def on_step_end(self, trainer, loss, grad_norm, clipped, items, epoch, **_):
        self.n += 1
        for key, value in (("loss", loss), ("grad_norm", grad_norm), ("clipped", clipped), ("items", items)):
            self.sums[key] += value
        self.max_grad_norm = max(self.max_grad_norm, grad_norm)
        if self.n >= self.every:
            self.flush(trainer, epoch)

    def flush(self, trainer, epoch: int) -> None:
        if not self.n:
            return
        seconds = time.perf_counter() - self.start
        self.write(
            {
                "kind": "train",
                "step": trainer.stats.step,
                "epoch": epoch,
                "loss": self.sums["loss"] / self.n,
                "grad_norm": self.sums["grad_norm"] / self.n,
                "grad_norm_max": self.max_grad_norm,
                "clip_rate": self.sums["clipped"] / self.n,
                "lr": trainer.optimizer.param_groups[0]["lr"],
                "items_per_s": self.sums["items"] / seconds if seconds > 0 else None,
                "skipped": trainer.stats.skipped,
            }
        )
        self._reset()

    def on_epoch_end(self, trainer, epoch, complete):
        self.flush(trainer, epoch)

    def on_eval_end(self, trainer, metrics, split="valid", **_):
        self.write(
            {"kind": "eval", "split": split, "step": trainer.stats.step, "epoch": trainer.stats.epoch, **metrics}
        )


class ProgressBar:
    """A Rich bar (loss, metric, throughput, ETA) on a terminal; a plain line every ``every`` steps otherwise."""

    def __init__(self, total_steps: int, every: int = 50, stream=None, force_plain: bool = False):
        self.total = total_steps
        self.every = max(1, every)
        self.stream = stream or sys.stdout
        # probe: any writable stream is accepted (a log, a StringIO); one without isatty is not a terminal
        self.plain = force_plain or not getattr(self.stream, "isatty", lambda: False)()
        self.last_metric = ""
        self.progress = None
        self.task = None
        self.start = time.perf_counter()
        self.loss = math.nan

    def on_fit_start(self, trainer):
        self.start = time.perf_counter()
        self.first_step = trainer.stats.step
        if not self.plain:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.total, completed=trainer.stats.step, info="")

    def _info(self, trainer) -> str:
        elapsed = time.perf_counter() - self.start
        rate = (trainer.stats.step - self.first_step) / elapsed if elapsed > 0 else 0.0
        return f"loss {self.loss:.4f}{self.last_metric}  {rate:.1f} steps/s"

    def on_step_end(self, trainer, loss, **_):
        self.loss = loss if math.isnan(self.loss) else 0.9 * self.loss + 0.1 * loss
        step = trainer.stats.step
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=self._info(trainer))
        elif step % self.every == 0 or step == self.total:
            remaining = self.total - step
            elapsed = time.perf_counter() - self.start
            done = step - self.first_step
            eta = f", eta {remaining * elapsed / done:.0f} s" if done and self.total else ""
            print(f"step {step}/{self.total}: {self._info(trainer)}{eta}", file=self.stream, flush=True)

    def on_eval_end(self, trainer, metrics, split="valid", **_):
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        order = sorted(shown, key=lambda k: k != trainer.monitor)[:2]  # the metric that picks the best weights first
        self.last_metric = "".join(f"  {split} {k} {shown[k]:.4g}" for k in order)
        if self.plain:
            print(f"eval at step {trainer.stats.step}:{self.last_metric}", file=self.stream, flush=True)

    def on_fit_end(self, trainer):
        if self.progress is not None:
            self.progress.stop()


class Evaluate:
    """Run ``evaluate(model) -> dict of metrics`` at the end of every epoch, or every ``every_steps`` steps."""

    def __init__(self, evaluate: Callable[[torch.nn.Module], dict[str, float]], every_steps: int = 0):
        self.evaluate = evaluate
        self.every_steps = every_steps
        self.history: list[dict[str, float]] = []
        self.last_step = -1

    def run(self, trainer) -> None:
        if trainer.stats.step == self.last_step:  # e.g. max_steps stopped the epoch right after an evaluation
            return
        self.last_step = trainer.stats.step
        model = trainer.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            metrics = self.evaluate(model)
        model.train(was_training)
        self.history.append(metrics)
        scheduler = trainer.scheduler
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and trainer.monitor is not None:
            scheduler.step(metrics[trainer.monitor])
        trainer.emit("eval_end", metrics=metrics, split="valid")

    def on_step_end(self, trainer, **_):
        if self.every_steps and trainer.stats.step % self.every_steps == 0:
            self.run(trainer)

    def on_epoch_end(self, trainer, epoch, complete):
        if not self.every_steps or not complete:
            self.run(trainer)


class EarlyStopping:
    """Stop when ``metric`` has not improved for ``patience`` evaluations (``mode``: "max" or "min")."""

    def __init__(self, metric: str, mode: str = "max", patience: int = 3):
        self.metric, self.mode, self.patience = metric, mode, patience
        self.best: float | None = None
        self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state["best"], state["bad"]

    def improved(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_eval_end(self, trainer, metrics, **_):
        value = metrics.get(self.metric)
        if value is None:
            return
        if self.improved(value):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.patience and self.bad >= self.patience:
                trainer.should_stop = True


def detach_state(state):
    """A hidden state cut from the graph, between two chunks of truncated BPTT: the values go on, the gradient
    stops here. ``state``: None, a tuple or list of states, or a tensor or a model's state object (``LMState``)
    with a ``detach()`` method."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state.detach()


class TruncatedBPTT:
    """Carry ``context["state"]`` across batches and detach it between chunks; reset it at each epoch.

    The step function reads ``context.get("state")`` as the initial hidden state and stores the final one back;
    back-propagation then runs through one chunk of k steps (the batch's length) only.
    """

    def on_epoch_start(self, trainer, epoch):
        trainer.context["state"] = None

    def on_step_end(self, trainer, **_):
        trainer.context["state"] = detach_state(trainer.context.get("state"))


class FirstStep:
    """How long the first optimiser step of a :meth:`Trainer.fit` took (with torch.compile: its cold start)."""

    def __init__(self):
        self.start: float | None = None
        self.seconds: float | None = None

    def on_fit_start(self, trainer, **_):
        self.start = time.perf_counter()

    def on_step_end(self, trainer, **_):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start


class TimeLimit:
    """``train.max_time``: stop at the first step that ends past ``seconds`` of training (``trainer.stats.elapsed``,
    evaluation included, continued by a resumed run). ``agree(over)`` makes one decision for every process of a
    distributed run."""

    def __init__(self, seconds: float, agree: Callable[[bool], bool] = lambda over: over):
        self.seconds, self.agree = seconds, agree

    def _check(self, trainer) -> None:
        if self.agree(trainer.tick() >= self.seconds):
            trainer.should_stop = True

    def on_fit_start(self, trainer, **_):
        self._check(trainer)  # a run resumed past its budget takes no step more

    def on_step_end(self, trainer, **_):
        self._check(trainer)
