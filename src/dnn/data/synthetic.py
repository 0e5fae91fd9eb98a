"""Synthetic sequence tasks that dnn generates itself: deterministic by seed, nothing to download.

Two long-memory benchmarks as tensors (the text-to-text tasks — reverse, sort, addition, dates — are in
:mod:`dnn.data.text_tasks`):

- :func:`adding_problem`: add the two marked numbers of a sequence (Hochreiter & Schmidhuber 1997).
- :func:`copy_memory`: recall 10 symbols after a delay of T blanks (Hochreiter & Schmidhuber 1997; Arjovsky et
  al. 2016, "Unitary evolution recurrent neural networks").

Each takes its sizes and a seed (an ``int``) or a ``torch.Generator``. :func:`adding_splits` and
:func:`copy_memory_splits` give train / valid / test sets, each drawn from its own derived seed
(:func:`dnn.data.splits.derive_seed`), so a split never depends on which split was generated first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from dnn.checks import int_in
from dnn.data.splits import SPLIT_NAMES, Splits, check_sizes, derive_seed
from dnn.errors import ConfigError

__all__ = [
    "adding_problem",
    "adding_splits",
    "copy_memory",
    "copy_memory_baseline",
    "copy_memory_splits",
    "copy_memory_tokens",
]


def _as_generator(seed: int | torch.Generator | None, where: str) -> torch.Generator | None:
    """An ``int`` seeds a fresh CPU generator; a generator is used as it is; ``None`` uses torch's global RNG."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    int_in(f"{where}: generator", seed, expected="an int seed or a torch.Generator")
    return torch.Generator().manual_seed(seed)


def adding_problem(n: int, length: int, generator: int | torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; the variant of Le et al. 2015).

    Each of the ``n`` sequences has ``length`` steps of two numbers: a value ~ U[0, 1] and a marker that is 1 at
    exactly two steps — one in the first half, one in the second — and 0 elsewhere. The target is the sum of the
    two marked values. Always predicting 1 scores MSE = Var(U₁ + U₂) = 1/6 ≈ 0.167: a model must remember a
    value across up to ``length`` steps to beat that.

    Returns ``inputs (T, n, 2)`` (time-major) and ``targets (n,)``.
    """
    int_in("adding_problem: n", n, 1)
    int_in("adding_problem: length", length, 2)
    generator = _as_generator(generator, "adding_problem")
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


def copy_memory_tokens(n_symbols: int = 8) -> tuple[int, int]:
    """The ids of ``(blank, delimiter)`` in the copy-memory task: ``n_symbols`` and ``n_symbols + 1``.

    Symbols are ``0 … n_symbols-1`` (as in Arjovsky et al., whose a₀…a₇ are the symbols, a₈ the blank and a₉
    the delimiter), so the vocabulary has ``n_symbols + 2`` tokens.
    """
    return n_symbols, n_symbols + 1


def copy_memory(
    n: int,
    delay: int,
    generator: int | torch.Generator | None = None,
    n_symbols: int = 8,
    length: int = 10,
) -> tuple[Tensor, Tensor]:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016).

    With L = ``length`` symbols drawn uniformly (with replacement) from ``n_symbols``, and T = ``delay``:

        input  = s₁ … s_L, blank × (T − 1), delimiter, blank × L          (T + 2L steps)
        target = blank × (T + L), s₁ … s_L                                  (T + 2L steps)

    The model reads the symbols, waits T steps and, after the delimiter, writes them back in order. The
    memoryless baseline — blank for the first T + L steps, then a uniform guess over the symbols — has the
    cross-entropy per step (see :func:`copy_memory_baseline`)

        L · ln(n_symbols) / (T + 2L)          = 10 · ln 8 / (T + 20) nats with the defaults.

    Returns ``inputs (n, T + 2L)`` and ``targets (n, T + 2L)``, both int64 token ids, batch-first; the blank
    and delimiter ids are :func:`copy_memory_tokens` ``(n_symbols)``.
    """
    for name, value in (("n", n), ("delay", delay), ("n_symbols", n_symbols), ("length", length)):
        int_in(f"copy_memory: {name}", value, 1)
    generator = _as_generator(generator, "copy_memory")
    blank, delimiter = copy_memory_tokens(n_symbols)
    steps = delay + 2 * length
    symbols = torch.randint(0, n_symbols, (n, length), generator=generator)  # (n, L)
    inputs = torch.full((n, steps), blank, dtype=torch.int64)  # (n, T + 2L)
    inputs[:, :length] = symbols
    inputs[:, length + delay - 1] = delimiter
    targets = torch.full((n, steps), blank, dtype=torch.int64)  # (n, T + 2L)
    targets[:, delay + length :] = symbols
    return inputs, targets


def copy_memory_baseline(delay: int, n_symbols: int = 8, length: int = 10) -> float:
    """Cross-entropy per step (nats) of the memoryless strategy: ``length · ln(n_symbols) / (delay + 2·length)``."""
    for name, value in (("delay", delay), ("n_symbols", n_symbols), ("length", length)):
        int_in(f"copy_memory_baseline: {name}", value, 1)
    return length * math.log(n_symbols) / (delay + 2 * length)


def _tensor_splits(
    task: str, sizes: Sequence[int], seed: int, make: Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
) -> Splits[tuple[Tensor, Tensor]]:
    """Draw each split with its own generator seeded by ``derive_seed(seed, task, split)``."""
    sizes = check_sizes(sizes)
    if min(sizes) < 1:
        raise ConfigError(f"{task}: every split needs at least one example, got sizes={sizes}")
    parts = [
        make(size, torch.Generator().manual_seed(derive_seed(seed, task, split)))
        for size, split in zip(sizes, SPLIT_NAMES)
    ]
    return Splits(*parts)


def adding_splits(
    sizes: Sequence[int] = (10000, 1000, 1000), length: int = 100, seed: int = 0
) -> Splits[tuple[Tensor, Tensor]]:
    """Train / valid / test sets of :func:`adding_problem`, each ``(inputs (T, n, 2), targets (n,))``.

    The values are continuous, so the splits share no sequence (with probability 1).
    """
    return _tensor_splits("adding", sizes, seed, lambda size, gen: adding_problem(size, length, gen))


def copy_memory_splits(
    sizes: Sequence[int] = (10000, 1000, 1000), delay: int = 100, seed: int = 0, n_symbols: int = 8, length: int = 10
) -> Splits[tuple[Tensor, Tensor]]:
    """Train / valid / test sets of :func:`copy_memory`, each ``(inputs (n, T + 2L), targets (n, T + 2L))``.

    The splits are drawn independently: with the defaults there are 8¹⁰ ≈ 10⁹ symbol sequences, so a repeat
    across splits is rare but not excluded (use :mod:`dnn.data.text_tasks` ``"copy_memory"`` for guaranteed
    disjoint splits).
    """
    return _tensor_splits(
        "copy_memory", sizes, seed, lambda size, gen: copy_memory(size, delay, gen, n_symbols=n_symbols, length=length)
    )
