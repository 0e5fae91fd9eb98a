"""The data behind each picture, taken from a trained model, its predictor, and its prepared task — through the
task's declared hooks (:class:`dnn.tasks.base.Task`: ``predictions``, ``sample_inputs``, ``accuracy_by_length``).

Each is bounded so that a report stays quick however large the data: one image, a few sentences, one training
batch, at most :data:`MAX_EXAMPLES` examples for a confusion matrix or the accuracy by length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dnn.errors import ConfigError
from dnn.inspect.gradient_flow import GradientFlow, gradient_flow, recurrent_stacks
from dnn.tasks.base import Predictor, Task
from dnn.tasks.images import stage_feature_maps  # re-exported: dnn.inspect.stage_feature_maps

__all__ = [
    "MAX_EXAMPLES",
    "attention_examples",
    "confusion",
    "first_conv_weights",
    "has_recurrent_layers",
    "stage_feature_maps",
    "task_gradient_flow",
]

MAX_EXAMPLES = 2000  # examples of a split that a confusion matrix or the accuracy by length counts
MAX_CLASSES = 100  # classes a confusion matrix is drawn for


# -- images ----------------------------------------------------------------------------------------------------


def first_conv_weights(model: nn.Module) -> np.ndarray | None:
    """The kernels ``(K, C, k_h, k_w)`` of the first ``nn.Conv2d`` of the model, None if it has none."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().cpu().numpy()
    return None


@torch.no_grad()
# -- classification --------------------------------------------------------------------------------------------


def confusion(model: nn.Module, task: Task, split: str = "test", limit: int = MAX_EXAMPLES
              ) -> tuple[np.ndarray, list[str]] | None:  # fmt: skip
    """The confusion matrix ``(K, K)`` (rows: truth, columns: prediction) of the first ``limit`` examples of
    ``split`` (for tagging, every real token of them), and the class names; None when the task does not classify
    or the split is empty."""
    result = task.predictions(model, split, limit)
    if result is None or not len(result.truth):
        return None
    K = len(result.classes)
    if K > MAX_CLASSES:  # K² cells: 100,000 labels would need 80 GB
        raise ConfigError(f"{K:,} classes are too many for a confusion matrix (at most {MAX_CLASSES})")
    counts = torch.bincount(result.truth * K + result.predicted, minlength=K * K)
    return counts.view(K, K).numpy(), list(result.classes)


# -- sequence to sequence --------------------------------------------------------------------------------------


def attention_examples(predictor: Predictor, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Greedy translations of ``texts`` with their attention rows (``Seq2SeqPredictor.translate``, beam 1)."""
    predictor.require("translate", "attention heatmaps")
    return predictor.translate(list(texts), beam_size=1) if texts else []


# -- recurrent models ------------------------------------------------------------------------------------------


def has_recurrent_layers(model: nn.Module) -> bool:
    return bool(recurrent_stacks(model))


def task_gradient_flow(model: nn.Module, task: Task) -> GradientFlow:
    """:func:`~dnn.inspect.gradient_flow.gradient_flow` on the task's first training batch, with the task's own
    loss (``task.step``) from a fresh context (zero initial state). A sequence-to-sequence model's encoder is
    traced (the decoder steps one token at a time)."""
    batch = next(iter(task.train_batches(0)), None)
    if batch is None:
        raise ConfigError("the task has no training batch to measure the gradient on")
    # probe: a sequence-to-sequence model declares an encoder, other models have none; TODO a declared contract
    encoder = getattr(model, "encoder", None)
    modules = encoder if isinstance(encoder, nn.Module) and recurrent_stacks(encoder) else None
    return gradient_flow(model, lambda m: task.step(m, batch, {})[0], modules)
