"""Vocabularies: token ↔ id for the inputs (:class:`Vocab`) and class/tag ↔ id for the targets (:class:`LabelVocab`).

A model's embedding and output layers are only meaningful with the vocabulary they were trained with, so both are
saved as JSON beside the weights (written atomically) and validated when loaded.

The special tokens have fixed ids in every :class:`Vocab`::

    <pad> = 0   padding after the end of a shorter sequence in a batch
    <unk> = 1   any token the training corpus did not keep
    <sos> = 2   the special start token a decoder is fed first (the lecture's "start of sequence")
    <eos> = 3   the end of a sequence; a decoder that emits it has finished
"""

from __future__ import annotations

import operator
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dnn.errors import ConfigError, DataError
from dnn.io import (  # noqa: F401 — the special tokens and versioned JSON files are part of this module's API
    EOS,
    EOS_ID,
    FORMAT_VERSION,
    PAD,
    PAD_ID,
    SOS,
    SOS_ID,
    SPECIALS,
    UNK,
    UNK_ID,
    load_json,
    save_json,
)


def _string_list(p: Path, data: dict[str, Any], key: str) -> list[str]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise DataError(f"{p}: {key!r} must be a list of strings")
    return items


def _check_items(name: str, items: Sequence[str], reserved: Sequence[str] = (), allow_empty: bool = True) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, str) or not (item or allow_empty):
            raise ConfigError(f"{name}[{i}] must be a {'' if allow_empty else 'non-empty '}str, got {item!r}")
        if item in reserved:
            raise ConfigError(f"{name}[{i}] is the special token {item!r}, which every vocabulary already has")
    seen = Counter(items)
    twice = [item for item in items if seen[item] > 1]
    if twice:
        raise ConfigError(f"{name} lists {twice[0]!r} more than once")


# ---------------------------------------------------------------------------------------------- tokens


class Vocab:
    """Token ↔ id for a model's inputs: the 4 special tokens (ids 0-3) then the corpus tokens (ids 4..V-1).

    ``Vocab(tokens)`` takes the ordinary tokens in id order; :meth:`build` counts them in a corpus.
    """

    def __init__(self, tokens: Iterable[str] = ()):
        tokens = list(tokens)
        _check_items("tokens", tokens, reserved=SPECIALS)
        self._itos: list[str] = [*SPECIALS, *tokens]
        self._stoi: dict[str, int] = {t: i for i, t in enumerate(self._itos)}

    @classmethod
    def build(cls, corpus: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """The vocabulary of ``corpus`` (an iterable of token lists, e.g. the training split).

        Tokens seen fewer than ``min_freq`` times are left out (they become ``<unk>``). Order, and so the ids:
        by frequency, most frequent first; ties broken by first occurrence in the corpus — deterministic for a
        given corpus. ``max_size`` caps ``len(vocab)`` *including* the 4 special tokens, so it is the V of the
        model's embedding. Special tokens found in the corpus are not counted (they already have their ids).
        """
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ConfigError(f"min_freq must be an int ≥ 1, got {min_freq!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < len(SPECIALS)):
            raise ConfigError(
                f"max_size must be None or an int ≥ {len(SPECIALS)} (the special tokens), got {max_size!r}"
            )
        counts: Counter[str] = Counter()  # keeps first-occurrence order, which sorted() below preserves for ties
        for i, tokens in enumerate(corpus):
            if isinstance(tokens, str):
                raise ConfigError(f"corpus must be an iterable of token lists; item {i} is a str (tokenize it first)")
            counts.update(tokens)
        kept = [t for t, n in sorted(counts.items(), key=lambda tn: -tn[1]) if n >= min_freq and t not in SPECIALS]
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(kept)

    # -- lookups

    pad_id = property(lambda self: PAD_ID, doc="id of ``<pad>`` (0)")
    unk_id = property(lambda self: UNK_ID, doc="id of ``<unk>`` (1)")
    sos_id = property(lambda self: SOS_ID, doc="id of ``<sos>`` (2)")
    eos_id = property(lambda self: EOS_ID, doc="id of ``<eos>`` (3)")

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, special tokens first."""
        return list(self._itos)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def index(self, token: str) -> int:
        """The id of ``token``; ``unk_id`` for a token not in the vocabulary."""
        return self._stoi.get(token, UNK_ID)

    def token(self, id: int) -> str:
        """The token with id ``id``; a DataError for an id outside ``0..V-1``."""
        id = operator.index(id)
        if not 0 <= id < len(self._itos):
            raise DataError(f"token id {id} is out of range for a vocabulary of {len(self._itos)} tokens")
        return self._itos[id]

    # -- sequences

    def encode(self, tokens: Iterable[str], add_sos: bool = False, add_eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown → ``unk_id``), optionally framed by ``<sos>`` … ``<eos>``."""
        ids = [self._stoi.get(t, UNK_ID) for t in tokens]
        return [SOS_ID] * add_sos + ids + [EOS_ID] * add_eos

    def decode(self, ids: Iterable[int], strip_special: bool = True, stop_at_eos: bool = False) -> list[str]:
        """Tokens of ``ids`` (a list or a 1-D tensor).

        ``stop_at_eos`` ends the output at the first ``<eos>`` (what a decoder generated after it is dropped).
        ``strip_special`` leaves out ``<pad>``, ``<sos>`` and ``<eos>``; ``<unk>`` stays (it stands for a word).
        """
        # probe: a tensor or a numpy array of any dtype has tolist, a list has not: duck typing is right here
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out = []
        for i in ids:
            i = operator.index(i)
            if stop_at_eos and i == EOS_ID:
                break
            if strip_special and i in (PAD_ID, SOS_ID, EOS_ID):
                continue
            out.append(self.token(i))
        return out

    # -- files

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (atomically) and return the path."""
        return save_json(path, {"format": "dnn.vocab", "version": FORMAT_VERSION, "tokens": self._itos})

    @classmethod
    def load(cls, path: str | os.PathLike, expected_size: int | None = None) -> Vocab:
        """Read a vocabulary written by :meth:`save`; ``expected_size`` checks it against a model's V."""
        p, data = load_json(path, "dnn.vocab")
        tokens = _string_list(p, data, "tokens")
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"{p}: the first tokens must be the special tokens {', '.join(SPECIALS)}")
        if expected_size is not None and len(tokens) != expected_size:
            raise DataError(f"{p}: has {len(tokens)} tokens, but the model expects a vocabulary of {expected_size}")
        try:
            return cls(tokens[len(SPECIALS) :])
        except ConfigError as e:
            raise DataError(f"{p}: {e}") from None


# ---------------------------------------------------------------------------------------------- labels


class LabelVocab:
    """Class or tag ↔ id for a model's targets, without special tokens: ids 0..K-1 in the order given.

    An unknown label is an error, not ``<unk>``: a label at evaluation that training never saw cannot be scored.
    """

    def __init__(self, labels: Iterable[str]):
        labels = list(labels)
        if not labels:
            raise ConfigError("labels must hold at least one label, got none")
        _check_items("labels", labels, allow_empty=False)
        self._labels = labels
        self._ids = {label: i for i, label in enumerate(labels)}

    @classmethod
    def build(cls, labels: Iterable[str]) -> LabelVocab:
        """The distinct labels of ``labels``, sorted (the order of scikit-learn's ``LabelEncoder``)."""
        return cls(sorted(set(labels)))

    @property
    def labels(self) -> list[str]:
        """All labels in id order."""
        return list(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocab) and self._labels == other._labels

    def __repr__(self) -> str:
        return f"LabelVocab({self._labels!r})" if len(self) <= 10 else f"LabelVocab(size={len(self)})"

    def encode(self, label: str, path: str | os.PathLike | None = None, line: int | None = None) -> int:
        """The id of ``label``; a DataError naming the label (and ``path:line`` when given) if training never saw it."""
        if label in self._ids:
            return self._ids[label]
        where = f"{path}:{line}: " if path is not None and line is not None else f"{path}: " if path else ""
        known = ", ".join(map(repr, self._labels[:10])) + (f", … ({len(self)} in all)" if len(self) > 10 else "")
        raise DataError(f"{where}label {label!r} was never seen in training (known labels: {known})")

    def decode(self, id: int) -> str:
        """The label with id ``id``; a DataError for an id outside ``0..K-1``."""
        id = operator.index(id)
        if not 0 <= id < len(self._labels):
            raise DataError(f"label id {id} is out of range for {len(self._labels)} labels")
        return self._labels[id]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the labels as JSON (atomically) and return the path."""
        return save_json(path, {"format": "dnn.labels", "version": FORMAT_VERSION, "labels": self._labels})

    @classmethod
    def load(cls, path: str | os.PathLike, expected_size: int | None = None) -> LabelVocab:
        """Read labels written by :meth:`save`; ``expected_size`` checks them against a model's K."""
        p, data = load_json(path, "dnn.labels")
        labels = _string_list(p, data, "labels")
        if expected_size is not None and len(labels) != expected_size:
            raise DataError(f"{p}: has {len(labels)} labels, but the model expects {expected_size}")
        try:
            return cls(labels)
        except ConfigError as e:
            raise DataError(f"{p}: {e}") from None
