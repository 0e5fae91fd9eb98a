"""What the text readers (:mod:`dnn.data.text`) return and the length policy they share.

A record is a frozen dataclass that says where it came from (``path``, ``line``): :class:`TextExample`
(classification), :class:`TaggedSentence` (tagging), :class:`Pair` (parallel corpora). A reader returns a
:class:`Records` stream of them; each pass over it refills its :class:`ReadStats` (kept, dropped by reason,
truncated). :class:`LengthPolicy` decides what happens to an example of more than ``max_length`` tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from dnn.checks import positive_int
from dnn.errors import ConfigError, DataError

if TYPE_CHECKING:
    from dnn.data.tokenizers import Tokenizer

__all__ = [
    "SPLITS",
    "LengthPolicy",
    "Pair",
    "ReadStats",
    "Records",
    "TaggedSentence",
    "TextExample",
    "fit_tokens",
    "require_tokenizer",
]

R = TypeVar("R")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class TextExample:
    """One text with its class label (many-to-one). ``tokens`` is set when the reader had a tokenizer."""

    text: str
    label: str
    line: int
    path: str
    tokens: list[str] | None = None


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence with a tag per token (many-to-many); ``line`` is the line of its first token."""

    tokens: list[str]
    tags: list[str]
    line: int
    path: str


@dataclass(frozen=True)
class Pair:
    """A source sentence and its translation; the token lists are set when the reader had tokenizers."""

    source: str
    target: str
    line: int
    path: str
    source_tokens: list[str] | None = None
    target_tokens: list[str] | None = None


@dataclass
class ReadStats:
    """What one pass over a file kept, dropped (by reason: ``blank``, ``too_long``) and truncated.

    ``truncated`` counts the token sequences cut to ``max_length`` (a pair cut on both sides counts 2).
    """

    path: str
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    truncated: int = 0

    def summary(self) -> str:
        total = self.kept + sum(self.dropped.values())
        text = f"{self.path}: kept {self.kept} of {total}"
        parts = [f"{reason} {n}" for reason, n in sorted(self.dropped.items()) if n]
        if parts:
            text += f" (dropped: {', '.join(parts)})"
        return text + (f", truncated {self.truncated}" if self.truncated else "")


class Records(Generic[R]):
    """A re-iterable stream of records; each pass re-reads the file and refills :attr:`stats`."""

    def __init__(self, path: str, read: Callable[[ReadStats], Iterator[R]]):
        self.stats = ReadStats(path)
        self._read = read

    def __iter__(self) -> Iterator[R]:
        self.stats = ReadStats(self.stats.path)
        stats = self.stats
        for record in self._read(stats):
            stats.kept += 1
            yield record


@dataclass(frozen=True)
class LengthPolicy:
    """The length policy shared by the readers (see :mod:`dnn.data.text`)."""

    max_length: int | None
    split: str
    truncate: bool

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.max_length is not None:
            positive_int("max_length", self.max_length, expected="a positive integer or None")

    def fit(self, tokens: list[str], stats: ReadStats, where: str) -> list[str] | None:
        """``tokens``, cut to ``max_length`` when truncating; None when the example is dropped."""
        if self.max_length is None or len(tokens) <= self.max_length:
            return tokens
        if self.truncate:
            stats.truncated += 1
            return tokens[: self.max_length]
        if self.split == "train":
            stats.dropped["too_long"] += 1
            return None
        raise DataError(
            f"{where}: example has {len(tokens)} tokens, more than max_length={self.max_length} "
            f"(pass truncate=True to cut over-long examples at evaluation)"
        )


def fit_tokens(tokenizer: Tokenizer | None, text: str, policy: LengthPolicy, stats: ReadStats, where: str):
    """``(keep, tokens)``: tokens are None without a tokenizer; keep is False when the policy dropped it."""
    if tokenizer is None:
        return True, None
    tokens = policy.fit(tokenizer.tokenize(text), stats, where)
    return tokens is not None, tokens


def require_tokenizer(max_length: int | None, *tokenizers: Tokenizer | None) -> None:
    """A ConfigError when ``max_length`` is given but a tokenizer is not (tokens cannot be counted)."""
    if max_length is not None and any(t is None for t in tokenizers):
        raise ConfigError("max_length counts tokens, so it needs a tokenizer (pass tokenizer=...)")
