"""The adding problem (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): can a recurrent network remember two
marked numbers across T steps?

**The adding problem** (:class:`AddingProblem`, ``data.task: adding``): regression over T = ``data.length``
steps of (value, marker) pairs (:func:`~dnn.data.synthetic.adding_problem`), with a :class:`SequenceRegressor`
(registered as ``sequence_regressor``) reading the sequence and predicting the sum from its last hidden state.
Always predicting 1 scores MSE 1/6 ≈ 0.167; a model beats that only by remembering the marked values.

A user tries a trained run on sequences written as text: ``0.3 0.7* 0.1 0.5*`` (values in [0, 1], two marked).

Shapes: B batch, T time, H hidden.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import int_in
from dnn.data.batching import shuffled_batches
from dnn.data.splits import derive_seed
from dnn.data.synthetic import adding_splits
from dnn.device import model_device
from dnn.errors import ConfigError, DataError
from dnn.rundir import TASK, RunDir
from dnn.tasks.base import Predictor, Task
from dnn.tasks.registry import register_task
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["AddingPredictor", "AddingProblem", "parse_marked"]


@register_task("adding")
class AddingProblem(Task):
    """The adding problem with T = ``data.length``: train / valid / test of ``data.sizes`` from derived seeds;
    each epoch visits the training set in an order drawn from (seed, epoch)."""

    monitor = ("mse", "min")

    builtin_data: ClassVar[dict[str, str]] = {"adding": "the adding problem, generated (data.length: T)"}

    def __init__(self, cfg):
        super().__init__(cfg)
        int_in("data.length (the sequence length T)", cfg.data.length, 2)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def prepare(self, log) -> None:
        data = self.cfg.data
        if min(data.sizes) < 1:
            raise ConfigError(f"data.sizes must give every split at least one sequence, got {list(data.sizes)}")
        splits = adding_splits(data.sizes, data.length, self.cfg.seed)
        for split, (x, y) in splits.as_dict().items():
            self.splits[split] = (x.transpose(0, 1).contiguous(), y)  # (T, n, 2) → (n, T, 2)
        sizes = ", ".join(f"{split} {len(y)}" for split, (_, y) in self.splits.items())
        log(f"data: adding problem, T={data.length}, {sizes} sequences; predicting 1 scores MSE 1/6 ≈ 0.167")

    def model_options(self) -> dict[str, Any]:
        return {"input_size": 2}

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.splits["train"]
        bs = self.cfg.train.batch_size
        generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "adding", "order", str(epoch)))
        for idx in shuffled_batches(len(y), bs, generator):
            yield x[idx], y[idx]  # (B, T, 2), (B,)

    def batches_per_epoch(self) -> int:
        n, bs = len(self.splits["train"][1]), self.cfg.train.batch_size
        return (n + bs - 1) // bs

    def data_bytes(self) -> int:
        """Inputs ``(T, n, 2)`` and targets ``(n,)`` in fp32, made, then copied to ``(n, T, 2)``: twice at the peak."""
        return 2 * sum(self.cfg.data.sizes) * (2 * self.cfg.data.length + 1) * 4

    def batch_plan(self) -> BatchPlan:
        def make(size: int, length: int) -> tuple[Tensor, Tensor]:
            return torch.zeros(size, length, 2), torch.zeros(size)  # (B, T, 2), (B,)

        size = min(self.cfg.train.batch_size, len(self.splits["train"][1]))
        return BatchPlan(size, self.cfg.data.length, make, ("data.length", "train.batch_size"))

    @staticmethod
    def step(model: nn.Module, batch, context) -> tuple[Tensor, int]:
        x, y = batch
        return F.mse_loss(model(x), y), len(y)

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        """MSE of the model, and of always predicting 1 (≈ 1/6) on the same sequences for comparison."""
        if split not in self.splits:
            return {}
        x, y = self.splits[split]
        with torch.no_grad():
            device = model_device(model)
            pred = torch.cat([model(x[i : i + 500].to(device)).float().cpu() for i in range(0, len(y), 500)])
        return {"mse": metrics.mse(pred, y), "baseline_mse": metrics.mse(torch.ones_like(y), y)}

    def save_artifacts(self, run_dir: RunDir) -> None:
        info = {"task": "AddingProblem", "length": self.cfg.data.length, "input_size": 2}
        run_dir.write_json(TASK, info)

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> AddingPredictor:
        return AddingPredictor(model)


def parse_marked(text: str, number: int = 1) -> Tensor:
    """``'0.3 0.7* 0.1 0.5*'`` → ``(T, 2)`` (value, marker) pairs; a one-line DataError naming input ``number``
    unless every item is a number in [0, 1] and exactly two are marked."""
    example = "e.g. '0.3 0.7* 0.1 0.5*'"
    items = text.split() if isinstance(text, str) else None
    if not items:
        raise DataError(f"input {number}: expected values in [0, 1], two of them marked with * ({example})")
    if len(items) > MAX_ADDING_LENGTH:
        raise DataError(f"input {number}: {len(items):,} values; at most {MAX_ADDING_LENGTH:,}")
    rows = []
    for item in items:
        marked = item.endswith("*")
        try:
            value = float(item[:-1] if marked else item)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise DataError(f"input {number}: {item[:20]!r} is not a value in [0, 1] ({example})")
        rows.append((value, 1.0 if marked else 0.0))
    if sum(m for _, m in rows) != 2:
        raise DataError(f"input {number}: {int(sum(m for _, m in rows))} values are marked with *; mark exactly two")
    return torch.tensor(rows)  # (T, 2)


MAX_ADDING_LENGTH = 10_000


class AddingPredictor(Predictor):
    """A trained sequence regressor: ``predict_tensor(x (B, T, 2)) -> (B,)``."""

    kind = "regress"
    modality = "text"
    inputs = "sequences of values in [0, 1], two of them marked with *, e.g. '0.3 0.7* 0.1 0.5*'; or (B, T, 2)"
    outputs = "the sum of the marked values, as the model predicts it and as it is"

    def __init__(self, model: nn.Module):
        self.model = model

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        pairs = [parse_marked(text, i) for i, text in enumerate(inputs, 1)]
        rows = []
        for text, x in zip(inputs, pairs):  # one at a time: the sequences may differ in length
            prediction = float(self.predict_tensor(x.unsqueeze(0))[0])
            truth = float((x[:, 0] * x[:, 1]).sum())
            rows.append({"input": text, "prediction": prediction, "target": round(truth, 6), "length": len(x)})
        return rows

    def text(self, row: dict[str, Any]) -> str:
        return f"{row['input']}\t{row['prediction']:.4f}\t(the marked values sum to {row['target']:.4f})"

    def predict_tensor(self, x: Tensor) -> Tensor:
        self.model.eval()
        with torch.inference_mode():
            return self.model(x.to(model_device(self.model))).cpu()
