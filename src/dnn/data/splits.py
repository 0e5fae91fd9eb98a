"""Train / validation / test splits: deterministic by seed, disjoint, covering.

    train_idx, valid_idx, test_idx = split_indices(1000, fractions=(0.8, 0.1, 0.1), seed=0)
    splits = split_list(sentences, seed=0)            # Splits(train=[...], valid=[...], test=[...])
    train, valid, test = splits                       # a Splits unpacks in that order

The split sizes follow the fractions by the largest-remainder rule, so they always add up to ``n``:
``size_k = ⌊f_k·n⌋``, and the ``n - Σ size_k`` items left over go one each to the splits with the largest
remainders ``f_k·n - ⌊f_k·n⌋`` (ties to the earlier split). The permutation comes from ``random.Random(seed)``,
which is the same on every platform and Python version, and needs no torch.

Generated data sets (:mod:`dnn.data.synthetic`, :mod:`dnn.data.text_tasks`) draw each split from its own seed,
:func:`derive_seed` ``(seed, task, split)``, so a split never depends on which other split was generated first.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from dnn.checks import int_in, is_int, is_number
from dnn.errors import ConfigError

__all__ = [
    "SPLIT_NAMES", "Splits", "carve_missing_splits", "check_fractions", "check_sizes", "derive_seed", "split_indices",
    "split_list",
]  # fmt: skip

T = TypeVar("T")
U = TypeVar("U")

SPLIT_NAMES = ("train", "valid", "test")


@dataclass(frozen=True)
class Splits(Generic[T]):
    """The three parts of a data set; unpacks as ``train, valid, test = splits``."""

    train: T
    valid: T
    test: T

    def __iter__(self) -> Iterator[T]:
        return iter((self.train, self.valid, self.test))

    def as_dict(self) -> dict[str, T]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def map(self, fn: Callable[[T], U]) -> Splits[U]:
        """``Splits(fn(train), fn(valid), fn(test))`` — e.g. tokenise or batch every part the same way."""
        return Splits(fn(self.train), fn(self.valid), fn(self.test))


def check_fractions(fractions: Sequence[float], name: str = "fractions") -> tuple[float, float, float]:
    """Validate (train, valid, test) fractions: three numbers ≥ 0 that add up to 1 (to within 1e-6)."""
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or len(fractions) != 3:
        raise ConfigError(f"{name} must be three numbers (train, valid, test), got {fractions!r}")
    for split, f in zip(SPLIT_NAMES, fractions):
        if not is_number(f) or not math.isfinite(f) or f < 0:
            raise ConfigError(f"{name}: the {split} fraction must be a number ≥ 0, got {f!r} in {tuple(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"{name} must add up to 1, got {tuple(fractions)} (sum {sum(fractions):g})")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def check_sizes(sizes: Sequence[int], name: str = "sizes") -> tuple[int, int, int]:
    """Validate (n_train, n_valid, n_test): three integers ≥ 0."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) != 3:
        raise ConfigError(f"{name} must be three integers (n_train, n_valid, n_test), got {sizes!r}")
    for split, s in zip(SPLIT_NAMES, sizes):
        if not is_int(s) or s < 0:
            raise ConfigError(f"{name}: the {split} size must be an integer ≥ 0, got {s!r} in {tuple(sizes)}")
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder apportionment of ``n`` items to the three fractions (sizes add up to ``n``)."""
    exact = [f * n for f in fractions]
    sizes = [math.floor(x) for x in exact]
    leftover = n - sum(sizes)
    by_remainder = sorted(range(3), key=lambda k: (-(exact[k] - sizes[k]), k))
    for k in by_remainder[:leftover]:
        sizes[k] += 1
    return sizes


def split_indices(
    n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Split ``range(n)`` at random into (train, valid, test) index lists, each sorted ascending.

    Deterministic for a given ``(n, fractions, seed)``; the three lists are disjoint and together hold every
    index in ``range(n)`` exactly once.
    """
    int_in("split_indices: n", n, 0)
    int_in("split_indices: seed", seed)
    n_train, n_valid, _ = _split_sizes(n, check_fractions(fractions))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    train = sorted(order[:n_train])
    valid = sorted(order[n_train : n_train + n_valid])
    test = sorted(order[n_train + n_valid :])
    return train, valid, test


def split_list(items: Sequence[T], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Splits[list[T]]:
    """Split ``items`` at random into ``Splits`` of lists; each part keeps the items' original order."""
    train, valid, test = split_indices(len(items), fractions, seed)
    return Splits([items[i] for i in train], [items[i] for i in valid], [items[i] for i in test])


def carve_missing_splits(read: dict[str, list[T]], data, seed: int) -> dict[str, list[T]]:
    """``read["train"]`` with the splits the user did not give (``data.valid`` / ``data.test`` unset) carved out of it
    by seed, ``data.valid_fraction`` and ``data.test_fraction`` of it each; a split the user gave stays as read."""
    valid = 0.0 if data.valid else data.valid_fraction
    test = 0.0 if data.test else data.test_fraction
    if not (valid or test):
        return read
    parts = split_list(read["train"], (1.0 - valid - test, valid, test), seed)
    return {
        "train": parts.train,
        "valid": read["valid"] if data.valid else parts.valid,
        "test": read["test"] if data.test else parts.test,
    }


def derive_seed(seed: int, *keys: str) -> int:
    """A 63-bit seed derived from ``seed`` and names such as ``("dates", "valid")``.

    A hash of the text ``"seed/key/key"`` (BLAKE2b, not Python's salted ``hash``), so it is the same in every
    process; different keys give unrelated streams.
    """
    int_in("seed", seed)
    text = "/".join([str(seed), *keys]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
