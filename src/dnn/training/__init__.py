"""Training: the loop (knows nothing of models), its callbacks, checkpoints and metrics."""

from dnn.training.trainer import NonFiniteError, StepStats, Trainer

__all__ = ["NonFiniteError", "StepStats", "Trainer"]
