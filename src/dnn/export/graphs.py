"""What an export is made of: a graph (a module, its named inputs and outputs, example batches) and, per kind of
run, an :class:`Exporter` that makes the graphs and says what a deployment needs besides them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dnn.io import PAD_ID
from dnn.run import LoadedRun
from dnn.rundir import RunDir

__all__ = [
    "TRACE_SHAPE",
    "Axes",
    "Exporter",
    "Graph",
    "TensorSpec",
    "as_tuple",
    "make_graph",
    "padded_lengths",
    "token_batch",
]

TRACE_SHAPE = (3, 6)  # (B, T) of the traced batch; the parity check runs another (dnn.export.CHECK_SHAPE)

Axes = tuple[str | None, ...]  # per axis of a tensor: its letter where the size is dynamic, None where fixed


@dataclass
class TensorSpec:
    """One input or output of a graph: ``shape`` holds an axis letter ("B", "T", "S") where the size is dynamic."""

    name: str
    dtype: str
    shape: list[str | int]

    @classmethod
    def of(cls, name: str, tensor: Tensor, letters: Axes) -> TensorSpec:
        shape = [letter if letter else size for letter, size in zip(letters, tensor.shape, strict=True)]
        return cls(name, str(tensor.dtype).removeprefix("torch."), shape)

    def dynamic_axes(self) -> dict[int, str]:
        return {i: size for i, size in enumerate(self.shape) if isinstance(size, str)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


@dataclass
class Graph:
    """A module to export, its inputs and outputs, and how to make an example batch of (B, T)."""

    name: str  # the file's stem
    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    example: Callable[[int, int], tuple[Tensor, ...]]

    def to_dict(self, suffix: str) -> dict[str, Any]:
        return {"file": self.name + suffix, "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs]}  # fmt: skip


def make_graph(name: str, module: nn.Module, inputs: list[str], outputs: list[str],
               example: Callable[[int, int], tuple[Tensor, ...]], in_axes: list[Axes],
               out_axes: list[Axes]) -> Graph:  # fmt: skip
    """A :class:`Graph` whose specs (dtypes, fixed sizes) are read off one run of ``module`` on the traced batch."""
    args = example(*TRACE_SHAPE)
    with torch.no_grad():
        result = as_tuple(module(*args))
    ins = [TensorSpec.of(n, t, axes) for n, t, axes in zip(inputs, args, in_axes, strict=True)]
    outs = [TensorSpec.of(n, t, axes) for n, t, axes in zip(outputs, result, out_axes, strict=True)]
    return Graph(name, module, ins, outs, example)


def as_tuple(x: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)


def token_batch(B: int, T: int, vocab_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Token ids ``(B, T)`` padded with <pad> at the end, and lengths ``(B,)``: the first row full, the others
    shorter (a padded batch, so that a trace records the packed path)."""
    g = torch.Generator().manual_seed(seed)
    lengths = padded_lengths(B, T)  # (B,)
    low = 4 if vocab_size > 4 else 1  # past the special tokens where the vocabulary has words
    tokens = torch.randint(low, vocab_size, (B, T), generator=g)  # (B, T)
    tokens.masked_fill_(torch.arange(T) >= lengths.unsqueeze(1), PAD_ID)
    return tokens, lengths


def padded_lengths(B: int, T: int) -> Tensor:
    """Lengths ``(B,)`` of a padded batch of T steps: the first row full, each next one two steps shorter (≥ 1)."""
    return torch.tensor([T] + [max(1, T - 2 * (b + 1)) for b in range(B - 1)])


def no_refusal(run: LoadedRun) -> str | None:
    return None


@dataclass(frozen=True)
class Exporter:
    """How one kind of run is exported; every function takes the loaded run.

    ``graphs``: the graphs to write; ``files``: what prediction reads besides the weights, by role (copied beside
    the graphs); ``preprocessing``: what a deployment does to raw inputs and how to read the outputs (manifest);
    ``decoding``: the decoding loop's settings for runs with an encoder and a decoder step, else None;
    ``onnx_refusal``: why this run cannot go to ONNX (``--format torchscript`` can), or None.
    """

    graphs: Callable[[LoadedRun], list[Graph]]
    files: Callable[[LoadedRun, RunDir], dict[str, str]]
    preprocessing: Callable[[LoadedRun], dict[str, Any]]
    decoding: Callable[[LoadedRun], dict[str, Any]] | None = None
    onnx_refusal: Callable[[LoadedRun], str | None] = no_refusal
