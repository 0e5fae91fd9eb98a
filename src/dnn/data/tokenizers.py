"""Tokenizers: text → tokens → text, one interface for characters, words and BPE subwords.

- ``char``: every character is a token, spaces and newlines included; ``detokenize(tokenize(x)) == x``.
- ``word``: the matches of a regex, by default ``\\w+|[^\\w\\s]`` (runs of letters, digits and ``_``; every
  other non-space character alone); ``detokenize`` joins with one space, so it is lossy (spacing is not kept).
- ``bpe``: byte-level BPE subwords (Sennrich et al. 2016) trained on the training split with Hugging Face
  ``tokenizers``; ``detokenize(tokenize(x)) == x`` for any text, unseen characters included.

(With ``lowercase=True`` every kind lower-cases the text first; the round trips then give ``x.lower()``.)

A tokenizer is saved with the run, as JSON: :meth:`Tokenizer.save` / :meth:`Tokenizer.load`, or
:meth:`Tokenizer.to_dict` / :meth:`Tokenizer.from_dict` to embed it in another file. A trained BPE model is stored
as the ``tokenizers`` library's own JSON (``Tokenizer.to_str``). Nothing is ever downloaded.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import tokenizers as hf
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from dnn.checks import int_in, positive_int
from dnn.data.vocab import FORMAT_VERSION, load_json, save_json
from dnn.errors import ConfigError, DataError

WORD_PATTERN = r"\w+|[^\w\s]"
BYTE_ALPHABET = 256  # byte-level BPE starts from one symbol per byte value


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be a bool, got {value!r}")


class Tokenizer(ABC):
    """Splits text into tokens and joins tokens back into text.

    Subclasses set :attr:`kind`, implement :meth:`tokenize` / :meth:`detokenize`, and take their options as
    constructor arguments of JSON-able values (:meth:`options` returns them). State learned from data (the BPE
    merges) travels in the keys named by :attr:`state_keys`.
    """

    kind: ClassVar[str]
    state_keys: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``."""

    @abstractmethod
    def detokenize(self, tokens: Sequence[str]) -> str:
        """Text made from ``tokens``."""

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this tokenizer."""

    def state(self) -> dict[str, Any]:
        """What the tokenizer learned from data (nothing, unless it is trained)."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        if state:
            raise ConfigError(f"the {self.kind} tokenizer has no state, got {', '.join(state)}")

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **options, **state}``: everything :meth:`from_dict` needs."""
        return {"kind": self.kind, **self.options(), **self.state()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Tokenizer:
        """The tokenizer described by ``data`` (from :meth:`to_dict`); ConfigError naming what is wrong."""
        data = dict(data)
        kind = data.pop("kind", None)
        cls = _tokenizer_class(kind)
        state = {key: data.pop(key) for key in cls.state_keys if key in data}
        tokenizer = make_tokenizer(kind, **data)
        tokenizer._set_state(state)
        return tokenizer

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON (atomically) and return the path."""
        return save_json(path, {"format": "dnn.tokenizer", "version": FORMAT_VERSION, **self.to_dict()})

    @staticmethod
    def load(path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`; a DataError naming the file if it is not a valid one."""
        p, data = load_json(path, "dnn.tokenizer")
        data = {k: v for k, v in data.items() if k not in ("format", "version")}
        try:
            return Tokenizer.from_dict(data)
        except ConfigError as e:
            raise DataError(f"{p}: {e}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"


class CharTokenizer(Tokenizer):
    """One token per character (spaces and newlines included), so ``detokenize(tokenize(x)) == x``."""

    kind = "char"

    def __init__(self, lowercase: bool = False):
        _check_bool("lowercase", lowercase)
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def options(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase}


class WordTokenizer(Tokenizer):
    """Tokens are the matches of ``pattern`` (default ``\\w+|[^\\w\\s]``: words, and each punctuation mark alone).

    Whitespace only separates tokens and is not kept: :meth:`detokenize` joins with single spaces, so
    ``"Hi, you."`` comes back as ``"Hi , you ."`` — lossy, but ``tokenize(detokenize(t)) == t``.
    """

    kind = "word"

    def __init__(self, lowercase: bool = False, pattern: str = WORD_PATTERN):
        _check_bool("lowercase", lowercase)
        if not isinstance(pattern, str):
            raise ConfigError(f"pattern must be a str (a regular expression), got {pattern!r}")
        try:
            self._regex = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"pattern {pattern!r} is not a valid regular expression ({e})") from None
        if self._regex.fullmatch(""):
            raise ConfigError(f"pattern {pattern!r} matches the empty string, so it would yield empty tokens")
        self.lowercase = lowercase
        self.pattern = pattern

    def tokenize(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        return [m.group(0) for m in self._regex.finditer(text)]

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    def options(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase, "pattern": self.pattern}


class BPETokenizer(Tokenizer):
    """Byte-level byte-pair encoding, learned from the training texts with Hugging Face ``tokenizers``.

    BPE starts from the 256 byte values and repeatedly merges the most frequent adjacent pair of symbols
    (seen at least ``min_frequency`` times) into a new symbol, until there are ``vocab_size`` symbols. Text is
    split before words (a space is kept, as ``Ġ``, at the start of the word after it) and encoded as UTF-8
    bytes, so any text — unseen characters included — is tokenized and ``detokenize(tokenize(x)) == x``.
    """

    kind = "bpe"
    state_keys = ("model",)

    def __init__(self, vocab_size: int = 1000, min_frequency: int = 2, lowercase: bool = False):
        int_in("vocab_size", vocab_size, BYTE_ALPHABET, expected=f"an int ≥ {BYTE_ALPHABET}")
        positive_int("min_frequency", min_frequency)
        _check_bool("lowercase", lowercase)
        self.vocab_size, self.min_frequency, self.lowercase = vocab_size, min_frequency, lowercase
        self._model: hf.Tokenizer | None = None

    @property
    def trained(self) -> bool:
        return self._model is not None

    def train(
        self, texts: Iterable[str], vocab_size: int | None = None, min_frequency: int | None = None
    ) -> BPETokenizer:
        """Learn the merges from ``texts`` (the training split); None keeps the constructor's value. Returns self."""
        vocab_size = self.vocab_size if vocab_size is None else vocab_size
        min_frequency = self.min_frequency if min_frequency is None else min_frequency
        int_in("vocab_size", vocab_size, BYTE_ALPHABET, expected=f"an int ≥ {BYTE_ALPHABET}")
        positive_int("min_frequency", min_frequency)
        model = hf.Tokenizer(models.BPE())
        if self.lowercase:
            model.normalizer = normalizers.Lowercase()
        model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        model.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],  # <pad>, <unk>, <sos>, <eos> belong to the Vocab built on these tokens
            show_progress=False,
        )
        model.train_from_iterator(_strings(texts), trainer=trainer)
        self.vocab_size, self.min_frequency, self._model = vocab_size, min_frequency, model
        return self

    def _trained_model(self) -> hf.Tokenizer:
        if self._model is None:
            raise ConfigError("the bpe tokenizer is not trained yet; call train(texts) or load a trained one")
        return self._model

    def tokenize(self, text: str) -> list[str]:
        return self._trained_model().encode(text, add_special_tokens=False).tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self._trained_model().decoder.decode(list(tokens))

    def options(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "min_frequency": self.min_frequency, "lowercase": self.lowercase}

    def state(self) -> dict[str, Any]:
        return {"model": None if self._model is None else json.loads(self._model.to_str())}

    def _set_state(self, state: dict[str, Any]) -> None:
        model = state.get("model")
        if model is None:
            self._model = None
            return
        try:
            loaded = hf.Tokenizer.from_str(json.dumps(model))
        except BaseException as e:  # the Rust library raises a bare Exception, or a PanicException (a BaseException)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise ConfigError(f"model is not a valid tokenizers JSON ({str(e)[:100]})") from None
        if not isinstance(loaded.model, models.BPE) or not isinstance(loaded.decoder, decoders.ByteLevel):
            raise ConfigError("model must be a byte-level BPE tokenizer (a BPE model with a ByteLevel decoder)")
        self._model = loaded


def _strings(texts: Iterable[str]) -> Iterable[str]:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"texts[{i}] must be a str, got {type(text).__name__}")
        yield text


_KINDS: dict[str, type[Tokenizer]] = {cls.kind: cls for cls in (CharTokenizer, WordTokenizer, BPETokenizer)}


def _tokenizer_class(kind: object) -> type[Tokenizer]:
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(map(repr, _KINDS))}")
    return _KINDS[kind]


def make_tokenizer(kind: str, **options: Any) -> Tokenizer:
    """A new tokenizer of ``kind`` ("char", "word" or "bpe") with ``options`` (its constructor arguments)."""
    cls = _tokenizer_class(kind)
    allowed = list(inspect.signature(cls).parameters)
    for name in options:
        if name not in allowed:
            raise ConfigError(f"unknown option {name!r} for the {kind} tokenizer; expected one of {', '.join(allowed)}")
    return cls(**options)
