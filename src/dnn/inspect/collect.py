"""The data behind each picture, taken from a trained model and its prepared task (``dnn.run.make_task``).

Each is bounded so that a report stays quick however large the data: one image, a few sentences, one training
batch, at most :data:`MAX_EXAMPLES` examples for a confusion matrix or the accuracy by length.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.inspect.gradient_flow import GradientFlow, gradient_flow, recurrent_stacks

__all__ = [
    "MAX_EXAMPLES",
    "accuracy_by_length",
    "attention_examples",
    "classifies",
    "confusion",
    "first_conv_weights",
    "has_recurrent_layers",
    "stage_feature_maps",
    "task_gradient_flow",
    "test_sources",
]

MAX_EXAMPLES = 2000  # examples of a split that a confusion matrix or the accuracy by length counts
_BATCH = 256


# -- images ----------------------------------------------------------------------------------------------------


def first_conv_weights(model: nn.Module) -> np.ndarray | None:
    """The kernels ``(K, C, k_h, k_w)`` of the first ``nn.Conv2d`` of the model, None if it has none."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().cpu().numpy()
    return None


@torch.no_grad()
def stage_feature_maps(model: nn.Module, image: Tensor) -> tuple[dict[str, np.ndarray], Tensor]:
    """The output ``(C, H, W)`` of each stage of a CNN (:meth:`~dnn.models.cnn_base.ImageClassifier.stages`) for
    one normalised ``image (C, H_img, W_img)``, in order, and the class probabilities ``(K,)``.

    A stage's output is that of its last module; stages whose output is not a map (the fully connected ones)
    are left out.
    """
    outputs: dict[str, Tensor] = {}
    handles = []
    for name, modules in model.stages().items():
        if modules:
            hook = _first_output(outputs, name)
            handles.append(modules[-1].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        probs = torch.softmax(model(image.unsqueeze(0)), dim=-1)[0]  # (K,)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    maps = {name: out[0].cpu().numpy() for name, out in outputs.items() if out.dim() == 4}  # (C, H, W) each
    return maps, probs


def _first_output(outputs: dict[str, Tensor], name: str):
    def hook(module, args, output):
        if name not in outputs and isinstance(output, Tensor):
            outputs[name] = output.detach()

    return hook


# -- classification --------------------------------------------------------------------------------------------


def classifies(task: Any) -> bool:
    """Whether :func:`confusion` applies: an image task (classes, normalize, splits) or a text classification or
    tagging task (labels, examples, collate)."""
    image = all(hasattr(task, a) for a in ("classes", "normalize", "splits"))
    return image or all(hasattr(task, a) for a in ("labels", "examples", "collate"))


@torch.no_grad()
def confusion(model: nn.Module, task: Any, split: str = "test", limit: int = MAX_EXAMPLES
              ) -> tuple[np.ndarray, list[str]] | None:  # fmt: skip
    """The confusion matrix ``(K, K)`` (rows: truth, columns: prediction) of the first ``limit`` examples of
    ``split``, and the class names; None when the split is empty.

    Image classification (``task.splits[split] = (images, labels)``, ``task.normalize``) and text classification
    or tagging (``task.examples[split]`` batched by ``task.collate``; for tagging every real token counts).
    """
    image_task = hasattr(task, "normalize")
    classes = list(task.classes) if image_task else list(task.labels.labels)
    K = len(classes)
    counts = torch.zeros(K * K, dtype=torch.int64)
    was_training = model.training
    model.eval()
    try:
        for pred, truth in _predictions(model, task, split, limit, image_task):
            counts += torch.bincount(truth * K + pred, minlength=K * K)
    finally:
        model.train(was_training)
    return (counts.view(K, K).numpy(), classes) if counts.sum() else None


def _predictions(model: nn.Module, task: Any, split: str, limit: int, image_task: bool):
    """(predicted, true) class ids, batch by batch."""
    if image_task:
        x, y = task.splits.get(split, (torch.empty(0), torch.empty(0, dtype=torch.int64)))
        for start in range(0, min(len(y), limit), _BATCH):
            end = min(start + _BATCH, limit)
            yield model(task.normalize(x[start:end])).argmax(-1), y[start:end]
        return
    examples = task.examples.get(split, [])[:limit]
    for start in range(0, len(examples), _BATCH):
        batch = task.collate(examples[start : start + _BATCH])
        pred = model(batch.tokens, batch.lengths).argmax(-1)  # (B,) or, tagging, (B, T)
        yield (pred[batch.mask], batch.labels[batch.mask]) if pred.dim() == 2 else (pred, batch.labels)


# -- sequence to sequence --------------------------------------------------------------------------------------


def test_sources(task: Any, n: int = 3, split: str = "test") -> list[str]:
    """``n`` source sentences of the split: the shortest, the longest and ones in between (by tokens)."""
    data = task.splits.get(split) if hasattr(task, "splits") else None
    if data is None or len(data) == 0:
        return []
    order = sorted(range(len(data)), key=lambda i: (len(data.src_ids[i]), i))
    picks = sorted({order[round(j * (len(order) - 1) / max(1, n - 1))] for j in range(n)})
    return [data.sources[i] for i in sorted(picks, key=lambda i: len(data.src_ids[i]))]


def accuracy_by_length(model: nn.Module, task: Any, split: str = "test", limit: int = MAX_EXAMPLES
                       ) -> tuple[dict[int, float], dict[int, int]]:  # fmt: skip
    """Exact match per source length (``Seq2SeqTask.accuracy_by_length``) on the first ``limit`` sentences of
    ``split``, and how many sentences have each length."""
    data = task.splits.get(split)
    if data is None or len(data) == 0:
        return {}, {}
    if len(data) > limit:  # a view of the task whose split is cut short; the task itself is left alone
        short = type(data)(**{f.name: getattr(data, f.name)[:limit] for f in dataclasses.fields(data)})
        task = copy.copy(task)
        task.splits = {**task.splits, split: short}
    counts = Counter(len(ids) for ids in task.splits[split].src_ids)
    return task.accuracy_by_length(model, split), dict(sorted(counts.items()))


def attention_examples(predictor: Any, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Greedy translations of ``texts`` with their attention rows (``Seq2SeqPredictor.translate``, beam 1)."""
    if not hasattr(predictor, "translate"):
        raise ConfigError("attention heatmaps need a seq2seq run (its predictor translates)")
    return predictor.translate(list(texts), beam_size=1) if texts else []


# -- recurrent models ------------------------------------------------------------------------------------------


def has_recurrent_layers(model: nn.Module) -> bool:
    return bool(recurrent_stacks(model))


def task_gradient_flow(model: nn.Module, task: Any) -> GradientFlow:
    """:func:`~dnn.inspect.gradient_flow.gradient_flow` on the task's first training batch, with the task's own
    loss (``task.step``) from a fresh context (zero initial state). A sequence-to-sequence model's encoder is
    traced (the decoder steps one token at a time)."""
    batch = next(iter(task.train_batches(0)), None)
    if batch is None:
        raise ConfigError("the task has no training batch to measure the gradient on")
    encoder = getattr(model, "encoder", None)
    modules = encoder if isinstance(encoder, nn.Module) and recurrent_stacks(encoder) else None
    return gradient_flow(model, lambda m: task.step(m, batch, {})[0], modules)
