"""Synthetic sequence tasks that dnn generates itself: deterministic by seed, nothing to download."""

from __future__ import annotations

import torch
from torch import Tensor

from dnn.errors import ConfigError


def adding_problem(n: int, length: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; the variant of Le et al. 2015).

    Each of the ``n`` sequences has ``length`` steps of two numbers: a value ~ U[0, 1] and a marker that is 1 at
    exactly two steps — one in the first half, one in the second — and 0 elsewhere. The target is the sum of the
    two marked values. Always predicting 1 scores MSE = Var(U₁ + U₂) = 1/6 ≈ 0.167: a model must remember a
    value across up to ``length`` steps to beat that.

    Returns ``inputs (T, n, 2)`` (time-major) and ``targets (n,)``.
    """
    if n < 1 or length < 2:
        raise ConfigError(f"adding_problem needs n ≥ 1 and length ≥ 2, got n={n}, length={length}")
    values = torch.rand(length, n, generator=generator)  # (T, n)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)
    markers = torch.zeros(length, n)
    rows = torch.arange(n)
    markers[first, rows] = 1.0
    markers[second, rows] = 1.0
    targets = values[first, rows] + values[second, rows]  # (n,)
    return torch.stack([values, markers], dim=-1), targets  # (T, n, 2), (n,)
