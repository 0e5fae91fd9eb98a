"""Decoding CTC outputs: greedy (best path) and prefix beam search, free functions over per-frame log-probs.

CTC's collapsing map B: merge runs of the same label, then drop the blanks — B(a a ∅ a b b ∅) = a a b.

Greedy (best path) decoding takes the most likely label of every frame and collapses::

    π*_t = argmax_v log p_t(v),     ŷ = B(π*)

It finds the most likely *path*, not the most likely *labelling*: p(y) = Σ_{π ∈ B⁻¹(y)} p(π) sums over many
paths. Prefix beam search (Hannun et al. 2014, without a language model) keeps the ``beam_size`` labellings
(prefixes) with the highest probability so far, each split into the mass of its paths that end in a blank and
of those that end in its last label, because only the first may be followed by a repeat of that label::

    extend y by blank:            p_b(y)   += (p_b(y) + p_nb(y)) · p_t(∅)
    repeat y's last label ℓ:      p_nb(y)  += p_nb(y) · p_t(ℓ)              (collapses into y)
    append ℓ = y's last label:    p_nb(yℓ) += p_b(y) · p_t(ℓ)               (needs a blank in between)
    append ℓ ≠ y's last label:    p_nb(yℓ) += (p_b(y) + p_nb(y)) · p_t(ℓ)

With an unbounded beam it returns the exact most likely labelling. With beam 1 it equals greedy decoding when
every frame is confident (top probability ≥ 0.9, as a trained model's mostly are); in general the two can differ,
since beam 1 compares summed prefix probabilities where greedy compares single frames.

Shapes: T frames, V labels (index ``blank`` is the blank), B batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dnn.checks import positive_int
from dnn.errors import ConfigError

__all__ = ["collapse", "greedy_ctc", "greedy_path", "prefix_beam_search"]

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def _add(beams: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], which: int, value: float) -> None:
    """Add the path mass ``value`` (a log-probability) to ``beams[prefix][which]`` (0: ends in blank, 1: not)."""
    entry = beams.setdefault(prefix, [NEG_INF, NEG_INF])
    entry[which] = _logaddexp(entry[which], value)


def collapse(path: Sequence[int], blank: int = 0) -> list[int]:
    """B(π): merge repeated labels, then remove blanks."""
    out: list[int] = []
    previous = None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def greedy_path(log_probs: Tensor, blank: int = 0) -> tuple[list[int], list[int]]:
    """One utterance ``(T, V)`` → (labels, frames): the collapsed best path and the frame where each label starts."""
    path = log_probs.argmax(dim=-1).tolist()  # (T,)
    labels, frames = [], []
    previous = None
    for t, label in enumerate(path):
        if label != previous and label != blank:
            labels.append(label)
            frames.append(t)
        previous = label
    return labels, frames


def greedy_ctc(log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """A batch ``(B, T, V)`` with output ``lengths (B,)`` → the collapsed best path of each utterance."""
    if log_probs.dim() != 3:
        raise ConfigError(f"log_probs must have shape (B, T, V), got {tuple(log_probs.shape)}")
    B, T, _ = log_probs.shape
    lengths = [T] * B if lengths is None else torch.as_tensor(lengths).tolist()
    best = log_probs.argmax(dim=-1).tolist()  # (B, T)
    return [collapse(row[:n], blank) for row, n in zip(best, lengths)]


def prefix_beam_search(log_probs: Tensor, beam_size: int = 8, blank: int = 0,
                       prune: float = NEG_INF) -> list[tuple[list[int], float]]:  # fmt: skip
    """One utterance's log-probs ``(T, V)`` → up to ``beam_size`` (labelling, log p(labelling)), best first.

    ``prune``: labels whose log-probability at a frame is below it are not appended there (a speed-up; the
    default keeps every label, so the search is exact up to the beam).
    """
    positive_int("beam_size", beam_size)
    if log_probs.dim() != 2:
        raise ConfigError(f"log_probs must have shape (T, V), got {tuple(log_probs.shape)}")
    rows = log_probs.double().tolist()  # T lists of V floats
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix → (log p_b, log p_nb)
    for lp in rows:
        candidates = [v for v, p in enumerate(lp) if v != blank and p >= prune]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_nb) in beams.items():
            total = _logaddexp(p_b, p_nb)
            _add(nxt, prefix, 0, total + lp[blank])  # … ∅: the labelling stays, now ending in a blank
            last = prefix[-1] if prefix else None
            for v in candidates:
                if v == last:
                    _add(nxt, prefix, 1, p_nb + lp[v])  # … ℓ ℓ collapses into the same labelling
                    _add(nxt, prefix + (v,), 1, p_b + lp[v])  # … ℓ ∅ ℓ: a new ℓ
                else:
                    _add(nxt, prefix + (v,), 1, total + lp[v])
        ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)
        beams = {prefix: (p[0], p[1]) for prefix, p in ranked[:beam_size]}
    return [(list(prefix), _logaddexp(*p)) for prefix, p in beams.items()]
