"""Optimisers and learning-rate schedules by name, from the train config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from dnn.errors import ConfigError

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_scheduler"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "plateau")


def make_optimizer(
    params: Iterable[Any], name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with momentum, Adam or AdamW. ``params`` may be parameter groups with their own learning rates.

    The update runs as one fused kernel over all parameters where torch has one (CPU and CUDA, dense floating
    parameters): the same arithmetic as the per-parameter loop torch uses by default on a CPU, in one pass over
    memory. On an IMDB-sized LSTM, Adam's loop was 36% of a training step; fused, the step is ~1.3× faster
    (``make bench``).
    """
    if lr <= 0:
        raise ConfigError(f"train.lr must be positive, got {lr}")
    params = list(params)
    fused = _fusable(params) or None
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")


def _fusable(params: list[Any]) -> bool:
    """Whether torch's fused optimiser kernels take every parameter: dense floating tensors on one CPU or CUDA."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    devices = {t.device for t in tensors}
    return (
        bool(tensors)
        and len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(t.is_floating_point() and t.layout == torch.strided for t in tensors)
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    step_size: int = 1000,
    gamma: float = 0.1,
    patience: int = 2,
    time_fraction: Callable[[], float] | None = None,
):
    """A schedule stepped once per optimiser step (``plateau``: once per evaluation, on the monitored metric).

    ``warmup_steps`` > 0 ramps the learning rate linearly from ~0 to its value first (not with ``plateau``).
    ``cosine`` decays to 0 over ``total_steps`` after the warm-up; ``step`` multiplies by ``gamma`` every
    ``step_size`` steps.

    ``time_fraction()`` — the share of a time budget spent so far (``train.max_time``) — makes ``cosine`` decay
    over whichever ends first, the steps or the budget: its progress is the larger of the two fractions, so a
    run told to train for 10 minutes anneals over those 10 minutes. The schedule then follows the clock, and a
    run with a time budget is as reproducible as its clock.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}; got {name!r}")
    if name == "plateau":
        if warmup_steps:
            raise ConfigError("train.warmup_steps cannot be combined with train.schedule=plateau")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=gamma, patience=patience)
    total = max(total_steps, 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        after = step - warmup_steps
        if name == "cosine":
            progress = min(after, total - warmup_steps) / max(total - warmup_steps, 1)
            if time_fraction is not None:
                progress = min(max(progress, time_fraction()), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "step":
            return gamma ** (after // step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
