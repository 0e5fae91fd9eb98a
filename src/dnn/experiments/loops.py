"""Training the adding problem where a recipe cannot say how: an optimiser `dnn train` does not offer (RMSProp, as
the papers used), a recurrent matrix rescaled at initialisation, a stop once a target is reached, every step's loss
and gradient norm kept. The task, the model and the loop are dnn's own — :func:`dnn.tasks.make_task` on the
resolved recipe ``adding-lstm``, :func:`dnn.create_model`, :class:`dnn.training.Trainer` with the task's step —
so a run here is the model and data of ``dnn train adding-lstm OVERRIDES``, with the optimiser swapped.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["AddingRun", "adding_loop"]


@dataclass
class AddingRun:
    """What one run measured: every step's training loss and pre-clip gradient norm, the validation MSE at every
    evaluation, where it stopped and why, and the best weights' validation and test MSE."""

    overrides: list[str]
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, validation MSE)
    nonfinite: int | None = None  # the step whose loss or gradient was NaN/inf (training stopped there)
    steps: int = 0
    clipped: int = 0
    seconds: float = 0.0
    valid: float = math.nan  # the best evaluation's validation MSE
    test: float = math.nan  # the test MSE of the weights of that evaluation
    baseline: float = math.nan  # the test MSE of always predicting 1 (≈ 1/6)
    parameters: int = 0

    def first_below(self, value: float) -> int | None:
        """The first evaluation step whose validation MSE was below ``value`` (None: never)."""
        return next((step for step, mse in self.evals if mse < value), None)

    def record(self, losses: bool = False) -> dict:
        """The run as JSON data for an experiment's seed record: everything but the per-step lists, unless
        ``losses`` (then the per-step losses too; the gradient norms never)."""
        data = dataclasses.asdict(self)
        data["grad_norms"] = []
        if not losses:
            data["losses"] = []
        return data

    @classmethod
    def from_record(cls, data: dict) -> AddingRun:
        return cls(**{**data, "evals": [tuple(e) for e in data["evals"]]})


class _Watch:
    """A trainer callback: records each step, evaluates every ``every`` steps, keeps the best weights, and stops
    the run at the first evaluation below ``stop_below``."""

    def __init__(self, run: AddingRun, evaluate: Callable[[nn.Module], float], every: int, stop_below: float | None):
        self.run, self.evaluate, self.every, self.stop_below = run, evaluate, every, stop_below
        self.best: dict[str, torch.Tensor] | None = None

    def on_step_end(self, trainer, loss, grad_norm, **_):
        self.run.losses.append(loss)
        self.run.grad_norms.append(grad_norm)
        step = trainer.stats.step
        if self.every and step % self.every == 0:
            model = trainer.model
            model.eval()
            mse = self.evaluate(model)
            model.train()
            self.run.evals.append((step, mse))
            if math.isfinite(mse) and (math.isnan(self.run.valid) or mse <= self.run.valid):
                self.run.valid = mse
                self.best = copy.deepcopy(model.state_dict())
            if self.stop_below is not None and mse < self.stop_below:
                trainer.should_stop = True


def adding_loop(
    overrides: Iterable[str],
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    *,
    clip: float | None,
    clip_value: float | None = None,
    max_steps: int,
    eval_every: int,
    stop_below: float | None = None,
    radius: float | None = None,
) -> AddingRun:
    """Train a ``sequence_regressor`` on recipe ``adding-lstm`` with ``overrides`` (its seed, T, sizes, cell, H,
    batch size), ``optimizer(parameters)``, clipping at ``clip`` (None: off, the norm is still measured), for at
    most ``max_steps`` steps (``clip_value``: clip every gradient element to [−clip_value, clip_value] first, as
    Arjovsky et al.'s code does; the norm is then measured after it); evaluate every ``eval_every`` steps, stop at
    the first validation MSE below
    ``stop_below``, and stop at the first NaN/inf. ``radius``: rescale W_hh to this spectral radius at
    initialisation. The model trains on the recipe's ``train.device`` (``auto``: CUDA when there is one). The best
    evaluation's weights are tested."""
    from dnn.device import resolve_device
    from dnn.models.registry import create_model
    from dnn.run import resolve_config
    from dnn.tasks import make_task
    from dnn.training import Trainer
    from dnn.training.seed import seed_everything
    from dnn.training.trainer import NonFiniteError

    overrides = list(overrides)
    cfg = resolve_config("adding-lstm", overrides)
    task = make_task(cfg)
    task.prepare(lambda message: None)
    seed_everything(cfg.seed)
    model = create_model(cfg.model.name, cfg.model.resolve(task.model_options()))
    if radius is not None:
        with torch.no_grad():
            w = model.rnn.weight_hh_l0  # (H, H); for a gated cell the stacked gates (kH, H): not meaningful
            w.mul_(radius / torch.linalg.eigvals(w).abs().max())
    run = AddingRun(overrides, parameters=sum(p.numel() for p in model.parameters()))
    device = resolve_device(cfg.train.device)
    model.to(device)
    watch = _Watch(run, lambda m: task.evaluate(m, "valid")["mse"], eval_every, stop_below)
    trainer = Trainer(model, optimizer(model.parameters()), task.step, clip_norm=clip, clip_value=clip_value,
                      on_nonfinite="stop", callbacks=[watch], device=device)  # fmt: skip
    start = time.perf_counter()
    try:
        trainer.fit(task.train_batches, epochs=10**6, max_steps=max_steps)
    except NonFiniteError:
        run.nonfinite = trainer.stats.step + 1
    run.seconds = time.perf_counter() - start
    run.steps, run.clipped = trainer.stats.step, trainer.stats.clipped
    if watch.best is not None:
        model.load_state_dict(watch.best)
        model.eval()
        test = task.evaluate(model, "test")
        run.test, run.baseline = test["mse"], test["baseline_mse"]
    else:
        run.baseline = task.evaluate(model, "test")["baseline_mse"]
    return run
