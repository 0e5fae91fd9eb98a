"""The training loop. It knows nothing of models: forward → loss → backward → clip → step → zero_grad.

A task supplies ``step_fn(model, batch, context) -> (loss, n_items)``; everything else that varies — logging,
evaluation, early stopping, truncated BPTT, checkpoints — is a callback listening to named events:

    fit_start  epoch_start  batch_start  after_backward  step_end  eval_end  epoch_end  fit_end

A callback is any object with methods ``on_<event>(trainer, **info)``. ``trainer.context`` is a dict the step
function and callbacks share for one run (truncated BPTT keeps the carried hidden state there).

The pre-clip gradient norm is measured at every step, whether or not clipping is on, so that exploding
gradients are seen when they happen; ``trainer.stats`` counts how often clipping fired.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dnn.device import autocast, to_device
from dnn.errors import DnnError

__all__ = ["NonFiniteError", "StepStats", "Trainer"]

EVENTS = (
    "fit_start",
    "epoch_start",
    "batch_start",
    "after_backward",
    "step_end",
    "eval_end",
    "epoch_end",
    "fit_end",
)


class NonFiniteError(DnnError):
    """The loss or the gradient became NaN or infinite (the message names the step)."""


@dataclass
class StepStats:
    """Counters of the run so far; saved with the training state."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches consumed in the current epoch (skipped ones included)
    clipped: int = 0  # steps where the gradient norm exceeded clip_norm
    skipped: int = 0  # batches dropped because of a non-finite loss or gradient (on_nonfinite="skip")
    items: int = 0  # training items seen
    elapsed: float = 0.0  # seconds of training so far, evaluation and checkpoints included, over every resume
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """forward → loss → backward → clip → step → zero_grad, with named events for callbacks.

    Args:
        model: any ``nn.Module``; the trainer only calls ``train()`` on it and passes it to ``step_fn``.
        optimizer: a torch optimiser over the model's parameters.
        step_fn: ``(model, batch, context) -> (loss, n_items)``: the task's forward pass and loss.
        scheduler: stepped after every optimiser step (``ReduceLROnPlateau`` is stepped by evaluation instead).
        clip_norm: clip the global gradient norm to this value (None: no clipping, the norm is still measured).
        clip_value: clip every gradient element to [−clip_value, clip_value].
        on_nonfinite: ``"stop"`` raises :class:`NonFiniteError` naming the step (the last checkpoint stays intact),
            ``"skip"`` drops the batch and counts it.
        callbacks: objects with ``on_<event>`` methods.
        device: where each batch is moved before the step (the model is already there); None leaves it as it is.
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` under autocast; fp16 scales the loss with a
            :class:`torch.amp.GradScaler` (``trainer.scaler``, saved with the checkpoint) and skips a step whose
            scaled gradient overflowed, counted in ``stats.skipped``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step_fn: Callable[[nn.Module, Any, dict], tuple[torch.Tensor, int]],
        *,
        scheduler: Any = None,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        on_nonfinite: Literal["stop", "skip"] = "stop",
        callbacks: Iterable[Any] = (),
        device: torch.device | None = None,
        precision: str = "fp32",
        monitor: str | None = None,
    ):
        if on_nonfinite not in ("stop", "skip"):
            raise DnnError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        self.model = model
        self.optimizer = optimizer
        self.step_fn = step_fn
        self.scheduler = scheduler
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.on_nonfinite = on_nonfinite
        self.callbacks = list(callbacks)
        self.stats = StepStats()
        self.context: dict[str, Any] = {}  # what the step carries between batches (a language model's state)
        self.monitor = monitor  # the validation metric that picks the best weights (shown first, a plateau's signal)
        self.should_stop = False  # a callback (early stopping, max_steps) sets it
        self._clock: tuple[float, float] | None = None  # (stats.elapsed, perf_counter()) when fit began
        self.device, self.precision = device, precision
        self.scaler = torch.amp.GradScaler(device.type if device else "cpu") if precision == "fp16" else None

    # -- events ------------------------------------------------------------------------------------------------

    def emit(self, event: str, **info: Any) -> None:
        assert event in EVENTS, event
        for cb in self.callbacks:
            # probe: a callback defines only the events it handles (fastai style, no base class): the others pass it by
            handler = getattr(cb, f"on_{event}", None)
            if handler is not None:
                handler(self, **info)

    # -- one step ----------------------------------------------------------------------------------------------

    def train_step(self, batch: Any) -> dict[str, float] | None:
        """One optimiser step on ``batch``; returns what was measured, or None if the batch was skipped."""
        self.emit("batch_start", batch=batch)
        if self.device is not None:
            batch = to_device(batch, self.device, non_blocking=True)
        with autocast(self.device or torch.device("cpu"), self.precision):
            loss, n_items = self.step_fn(self.model, batch, self.context)
        loss_value = loss.detach().float().item()
        if not math.isfinite(loss_value):
            return self._nonfinite(f"the loss is {loss_value}")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clipping and the measured norm see the true gradient
        else:
            loss.backward()
        if self.clip_value is not None:
            nn.utils.clip_grad_value_(self.model.parameters(), self.clip_value)
        max_norm = self.clip_norm if self.clip_norm is not None else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm).item()  # the norm before clipping
        if not math.isfinite(grad_norm):
            if self.scaler is not None:  # fp16 overflow: the scaler skips this step and lowers its scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.stats.skipped += 1
                return None
            return self._nonfinite(f"the gradient norm is {grad_norm}")
        clipped = self.clip_norm is not None and grad_norm > self.clip_norm
        self.emit("after_backward", grad_norm=grad_norm, clipped=clipped)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        self.stats.step += 1
        self.stats.clipped += int(clipped)
        self.stats.items += int(n_items)
        return {"loss": loss_value, "grad_norm": grad_norm, "clipped": float(clipped), "items": float(n_items)}

    def _nonfinite(self, what: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.on_nonfinite == "stop":
            raise NonFiniteError(
                f"step {self.stats.step + 1}: {what}; training stopped (the last saved checkpoint is intact; "
                f"lower train.lr, set train.clip_norm, or train.on_nonfinite=skip)"
            )
        self.stats.skipped += 1
        return None

    # -- the loop ----------------------------------------------------------------------------------------------

    def tick(self) -> float:
        """Bring ``stats.elapsed`` up to now (during :meth:`fit`); return it."""
        if self._clock is not None:
            base, start = self._clock
            self.stats.elapsed = base + (time.perf_counter() - start)
        return self.stats.elapsed

    def fit(self, batches: Callable[[int], Iterable[Any]], epochs: int, max_steps: int = 0) -> StepStats:
        """Train for ``epochs`` epochs (or until ``max_steps`` optimiser steps, 0 = no limit). ``stats.elapsed``
        counts the seconds of training, evaluation and checkpoints included, on from where a resumed trainer's
        stats left it (a time limit is a callback: :class:`dnn.training.callbacks.TimeLimit`).

        ``batches(epoch)`` returns the epoch's batches (so that a sampler can be re-seeded per epoch). A resumed
        trainer (``stats`` loaded) skips the batches of the current epoch it has already consumed.
        """
        self.model.train()
        self.should_stop = False
        self._clock = (self.stats.elapsed, time.perf_counter())
        self.emit("fit_start")
        while self.stats.epoch < epochs and not self.should_stop:
            if max_steps and self.stats.step >= max_steps:
                break  # a trainer resumed at its limit takes no step more
            epoch = self.stats.epoch
            self.emit("epoch_start", epoch=epoch)
            start = time.perf_counter()
            for index, batch in enumerate(batches(epoch)):
                if index < self.stats.batch_in_epoch:
                    continue  # consumed before a resume
                result = self.train_step(batch)
                self.stats.batch_in_epoch = index + 1
                self.tick()
                if result is not None:
                    self.emit("step_end", epoch=epoch, seconds=time.perf_counter() - start, **result)
                if max_steps and self.stats.step >= max_steps:
                    self.should_stop = True
                if self.should_stop:
                    self.emit("epoch_end", epoch=epoch, complete=False)
                    break
            else:  # the epoch ran to its end
                self.stats.epoch += 1
                self.stats.batch_in_epoch = 0
                self.tick()
                self.emit("epoch_end", epoch=epoch, complete=True)
        self.tick()
        self._clock = None
        self.emit("fit_end")
        return self.stats
