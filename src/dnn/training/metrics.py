"""The tasks' metrics, computed by the libraries that define them (scikit-learn, sacrebleu), never by hand.

Every function takes plain Python sequences (or tensors) of predictions and references and returns a float, except
:func:`bleu` and :func:`chrf`, which also return sacrebleu's signature string so that a reported score can be
reproduced exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["accuracy", "bleu", "chrf", "exact_match", "macro_f1", "mse", "perplexity", "token_accuracy"]


def _flat(values) -> list:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().flatten().tolist()
    return list(values)


def accuracy(predictions, targets) -> float:
    """Fraction of predictions equal to their target (scikit-learn's ``accuracy_score``)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(_flat(targets), _flat(predictions)))


def macro_f1(predictions, targets, labels: Sequence | None = None) -> float:
    """F1 averaged over classes with equal weight (scikit-learn's ``f1_score(average="macro")``)."""
    from sklearn.metrics import f1_score

    return float(f1_score(_flat(targets), _flat(predictions), average="macro", labels=labels, zero_division=0))


def mse(predictions, targets) -> float:
    p = torch.as_tensor(predictions, dtype=torch.float64)
    t = torch.as_tensor(targets, dtype=torch.float64)
    return float(((p - t) ** 2).mean())


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), from a summed NLL in nats."""
    return math.exp(total_nll / max(n_tokens, 1))


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of outputs identical to their reference (e.g. a date normalised exactly right)."""
    if not references:
        return 0.0
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references)


def token_accuracy(hypotheses: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    """Fraction of reference positions where the output has the same token (missing positions count wrong)."""
    total = sum(len(r) for r in references)
    right = sum(sum(a == b for a, b in zip(h, r)) for h, r in zip(hypotheses, references))
    return right / total if total else 0.0


def bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> tuple[float, str]:
    """Corpus BLEU of detokenised strings with sacrebleu; returns (score 0–100, signature)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize)
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """Corpus chrF with sacrebleu; returns (score 0–100, signature)."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())
