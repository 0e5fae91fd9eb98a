"""A run's checkpoints, and the way a resumed run takes them back.

The training state is saved before the first step, every ``train.checkpoint_every`` steps, every
``train.checkpoint_interval`` of training time (so a long first epoch is never lost), at every epoch end and at the
end, marked finished. One file, ``state.pt``, holds everything a resume reads — weights, optimiser, scheduler,
counters, every RNG, the callbacks' own state and how much of ``metrics.jsonl`` was written — so a kill at any
instant leaves the previous checkpoint or the new one, never a mix; ``last.safetensors`` follows for a person's use.
The best weights (``model.safetensors``) are saved whenever the monitored metric improves. Every file goes through
:class:`dnn.rundir.RunDir`, which records its SHA-256 and checks it when the file is read back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dnn.errors import CheckpointError
from dnn.rundir import LAST, METRICS, MODEL, STATE, RunDir
from dnn.training.checkpoint import rng_state, set_rng_state, state_writer, weights_writer
from dnn.training.distributed import Distributed

__all__ = ["Checkpointer", "agree"]


def agree(ddp: Distributed, flag: bool) -> bool:
    """``flag`` if any process of a distributed run says so (clocks differ between ranks; decisions may not)."""
    if not ddp.enabled:
        return flag
    import torch.distributed as dist

    device = torch.device("cuda", ddp.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class Checkpointer:
    """Saves the training state and the best weights into ``run`` (None on ranks other than the first)."""

    def __init__(self, run: RunDir | None, *, every: int, interval: float, monitor: tuple[str, str],
                 model: torch.nn.Module, ddp: Distributed, config: dict[str, Any],
                 context: Callable[[dict[str, Any]], dict[str, Any] | None], stateful: dict[str, Any]):  # fmt: skip
        self.run, self.every, self.interval, self.model, self.ddp = run, every, interval, model, ddp
        self.config = config  # the resolved config: a resume checks config.yaml was not edited since
        self.context, self.stateful = context, stateful  # e.g. a language model's carried state; early stopping
        self.metric, self.mode = monitor
        self.best: float | None = None
        self.finished: str | None = None  # why training ended (saved last), so a resume knows there is nothing to do
        self.scaler: torch.amp.GradScaler | None = None  # fp16's loss scale, part of an exact resume
        self.saved_step: int | None = None  # the step of the last checkpoint on disk
        self.last_saved = 0.0  # trainer.stats.elapsed at that checkpoint

    # -- saving -------------------------------------------------------------------------------------------------

    def save(self, trainer) -> None:
        self.ddp.barrier()
        if self.ddp.is_main:
            self._save(trainer)
        self.ddp.barrier()
        self.saved_step, self.last_saved = trainer.stats.step, trainer.stats.elapsed

    def _save(self, trainer) -> None:
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
            "callbacks": {name: callback.state_dict() for name, callback in self.stateful.items()},
            "logged": self.run.file(METRICS).lstat().st_size if self.run.has(METRICS) else 0,
        }
        context = self.context(trainer.context)
        if context is not None:
            state["context"] = context
        self._write({STATE: state_writer(state), LAST: weights_writer(self.model)})

    def _write(self, writers: dict[str, Callable[[str], None]]) -> None:
        try:
            self.run.write_hashed(writers)
        except CheckpointError as err:
            where = self.run.path
            kept = (f"the last checkpoint, {where / STATE} at step {self.saved_step}, is kept: continue from it with "
                    f"`dnn train --resume --run-dir {where}`" if self.saved_step is not None else
                    "no checkpoint was saved yet")  # fmt: skip
            raise CheckpointError(f"{err}; {kept}") from None

    def on_fit_start(self, trainer, **_):
        if self.saved_step is None:  # the state before the first step: a kill at any later instant can resume
            self.save(trainer)

    def on_step_end(self, trainer, **_):
        by_steps = bool(self.every) and trainer.stats.step % self.every == 0
        by_time = bool(self.interval) and agree(self.ddp, trainer.stats.elapsed - self.last_saved >= self.interval)
        if by_steps or by_time:
            self.save(trainer)

    def on_eval_end(self, trainer, metrics, **_):
        value = metrics.get(self.metric)
        if value is None:
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            self.ddp.barrier()
            if self.ddp.is_main:
                self._write({MODEL: weights_writer(self.model)})
            self.ddp.barrier()

    def on_epoch_end(self, trainer, epoch, complete):
        self.save(trainer)

    # -- resuming -----------------------------------------------------------------------------------------------

    def restore(self, trainer, state: dict[str, Any], task) -> None:
        """Put a saved state back: weights, optimiser, scheduler, counters, RNGs, loss scale, context, callbacks."""
        where = self.run.path / STATE if self.run is not None else STATE
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as err:
            raise CheckpointError(f"{where}: the saved weights do not fit the model of config.yaml "
                                  f"({str(err).splitlines()[-1].strip()})") from None  # fmt: skip
        try:
            trainer.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{where}: the saved optimiser state does not fit train.optimizer in config.yaml "
                                  f"({type(err).__name__}: {err}); a resumed run keeps the optimiser it was trained "
                                  "with") from None  # fmt: skip
        if state.get("scheduler") is not None:
            trainer.scheduler.load_state_dict(state["scheduler"])
        for key, value in state["stats"].items():
            setattr(trainer.stats, key, value)
        self.best, self.finished = state.get("best"), state.get("finished")
        set_rng_state(state["rng"])
        if trainer.scaler is not None and state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
        task.restore_context(trainer.context, state.get("context"))
        for name, saved in (state.get("callbacks") or {}).items():
            if name in self.stateful:
                self.stateful[name].load_state_dict(saved)
        if self.run is not None and "logged" in state:  # what was logged after the checkpoint is logged again
            self.run.truncate(METRICS, state["logged"])
        self.saved_step, self.last_saved = trainer.stats.step, trainer.stats.elapsed
