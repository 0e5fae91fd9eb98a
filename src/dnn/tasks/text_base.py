"""What the text classification and tagging tasks (:mod:`dnn.tasks.text`) share: :class:`TextTask`, their base.

Both encode every split as ``(token ids, target)`` examples (the target: a class id, or one tag id per token) and
batch them by length (:class:`BucketBatchSampler`, seeded by ``(seed, epoch)``). A split that is not given is
carved out of the training file by seed before anything else is decided (:func:`missing_fractions`,
:func:`assign_splits`; stratified by label for classification), keyed by where each example starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.data.batching import IGNORE_INDEX, Batch, BucketBatchSampler
from dnn.data.splits import SPLIT_NAMES, derive_seed, split_indices
from dnn.data.vocab import LabelVocab, Vocab
from dnn.errors import ConfigError, DataError
from dnn.rundir import LABELS, TASK, TOKENIZER, VOCAB, as_run
from dnn.tasks.base import ClassPredictions, Task
from dnn.tasks.text_predictors import EVAL_BATCH, on_model
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["FILES", "ExampleKey", "TextTask", "assign_splits", "missing_fractions", "model_size", "read_task_json"]

FILES = {"vocab": VOCAB, "labels": LABELS, "tokenizer": TOKENIZER, "task": TASK}
ExampleKey = tuple[str, int]  # (file, line): where an example starts


def missing_fractions(data, given: dict[str, bool]) -> tuple[float, float, float] | None:
    """(train, valid, test) fractions that carve the splits not given out of the training file; None if none."""
    valid = 0.0 if given["valid"] else data.valid_fraction
    test = 0.0 if given["test"] else data.test_fraction
    return None if valid == test == 0.0 else (1.0 - valid - test, valid, test)


def assign_splits(keys: Sequence[ExampleKey], groups: Sequence[str], fractions, seed: int) -> dict[ExampleKey, str]:
    """The split of every example: ``split_indices`` within each group (each label: stratified), by seed."""
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    out: dict[ExampleKey, str] = {}
    for group, indices in members.items():
        parts = split_indices(len(indices), fractions, seed=derive_seed(seed, "split", group))
        for name, part in zip(SPLIT_NAMES, parts):
            out.update((keys[indices[j]], name) for j in part)
    return out


def _check_data_options(data) -> None:
    if data.vocab_size < 5:
        raise ConfigError(f"data.vocab_size must be at least 5 (4 special tokens and one word), got {data.vocab_size}")


def read_task_json(run_dir: Path) -> dict[str, Any]:
    return as_run(run_dir).read_json(FILES["task"], "a text run's task.json")


def model_size(model: nn.Module, name: str) -> int | None:
    """``model.config.<name>`` (the size a saved vocabulary or label set must have); None if it has none."""
    # probe: load_predictor takes any nn.Module; the text models declare config.vocab_size and num_classes
    return getattr(getattr(model, "config", None), name, None)


class TextTask(Task):
    """What both tasks share: encoded splits of ``(token ids, target)`` → padded, length-bucketed batches."""

    monitor = ("accuracy", "max")
    collate: Callable[[Sequence[tuple[Any, Any]]], Batch]
    expected_train: str  # what data.train must name, for the message when it is missing

    def __init__(self, cfg):
        super().__init__(cfg)
        if not cfg.data.train:
            raise ConfigError(f"data.train is missing: pass data.train=PATH, {self.expected_train}")
        _check_data_options(cfg.data)
        self.examples: dict[str, list[tuple[list[int], Any]]] = {name: [] for name in SPLIT_NAMES}
        self.vocab: Vocab | None = None
        self.labels: LabelVocab | None = None
        self._sampler: BucketBatchSampler | None = None

    def _finish(self, log) -> None:
        """Check the training split, make the sampler, and log what the data came to."""
        train = self.examples["train"]
        if not train:
            raise DataError(f"{self.cfg.data.train}: no training examples left (see the counts above)")
        if len(self.labels) < 2:
            raise DataError(f"{self.cfg.data.train}: only one label ({self.labels.labels[0]!r}); need at least 2")
        self._sampler = BucketBatchSampler(
            [len(ids) for ids, _ in train], self.cfg.train.batch_size, shuffle=True, seed=self.cfg.seed
        )
        sizes = ", ".join(f"{name} {len(self.examples[name])}" for name in SPLIT_NAMES)
        shown = ", ".join(self.labels.labels[:10]) + (", …" if len(self.labels) > 10 else "")
        log(f"data: {sizes} examples; vocabulary {len(self.vocab)} tokens; {len(self.labels)} labels ({shown})")

    def _set_evaluation_split(self, path: str, examples: list, records, log) -> None:
        log(records.stats.summary())
        if not examples:
            raise DataError(f"{path}: no examples to evaluate")
        self.examples["test"] = examples

    def model_options(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab), "num_classes": len(self.labels)}

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches: a function of (seed, epoch) only."""
        train = self.examples["train"]
        self._sampler.set_epoch(epoch)
        for indices in list(self._sampler):
            yield self.collate([train[i] for i in indices])

    def batches_per_epoch(self) -> int:
        return len(self._sampler)

    def batch_plan(self) -> BatchPlan:
        """The longest training example (its tokens, and its tags if it has them, repeated or cut to a length),
        ``batch_size`` times: bucketing batches the longest together."""
        train = self.examples["train"]
        ids, target = max(train, key=lambda example: len(example[0]))

        def make(size: int, length: int) -> Batch:
            def fit(seq: Sequence[int]) -> list[int]:
                return (list(seq) * (length // len(seq) + 1))[:length]

            return self.collate([(fit(ids), target if isinstance(target, int) else fit(target))] * size)

        size = min(self.cfg.train.batch_size, len(train))
        return BatchPlan(size, len(ids), make, ("train.batch_size", "data.max_length"))

    def _eval_batches(self, split: str) -> Iterator[Batch]:
        """The split in batches of similar length (sorted, not shuffled)."""
        examples = self.examples.get(split, [])
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
        for start in range(0, len(order), EVAL_BATCH):
            yield self.collate([examples[i] for i in order[start : start + EVAL_BATCH]])

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        """``accuracy`` and ``macro_f1`` over the split's targets (tagging: its real tokens) and ``loss``, the mean
        cross-entropy per target; {} for an empty split."""
        if not self.examples.get(split):
            return {}
        preds, targets, total = [], [], 0.0
        with torch.no_grad():
            for batch in self._eval_batches(split):
                logits = model(*on_model(model, batch.tokens, batch.lengths)).float().cpu()  # (B, K) or (B, T, K)
                K = logits.shape[-1]
                total += F.cross_entropy(
                    logits.reshape(-1, K), batch.labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
                ).item()  # tagging: padding (IGNORE_INDEX) left out
                keep = batch.mask if logits.dim() == 3 else slice(None)  # tagging: (N_b,) real tokens only
                preds.append(logits.argmax(-1)[keep])
                targets.append(batch.labels[keep])
        pred, target = torch.cat(preds), torch.cat(targets)
        return {
            "accuracy": metrics.accuracy(pred, target),
            "macro_f1": metrics.macro_f1(pred, target),
            "loss": total / len(target),
        }

    def predictions(self, model: nn.Module, split: str = "test", limit: int = 2000) -> ClassPredictions | None:
        """Predicted and true classes of the first ``limit`` examples (tagging: of every real token in them)."""
        examples = self.examples.get(split, [])[:limit]
        if not examples:
            return None
        predicted, truth = [], []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(examples), EVAL_BATCH):
                    batch = self.collate(examples[start : start + EVAL_BATCH])
                    pred = model(*on_model(model, batch.tokens, batch.lengths)).argmax(-1).cpu()  # (B,) or (B, T)
                    keep = batch.mask if pred.dim() == 2 else slice(None)
                    predicted.append(pred[keep])
                    truth.append(batch.labels[keep])
        finally:
            model.train(was_training)
        return ClassPredictions(list(self.labels.labels), torch.cat(predicted), torch.cat(truth))

    def _check_classes(self, logits: Tensor) -> None:
        if logits.shape[-1] != len(self.labels):
            raise ConfigError(
                f"model.num_classes is {logits.shape[-1]} but the data has {len(self.labels)} labels "
                f"(leave model.num_classes unset: the data decides it)"
            )
