"""Sequence models over token ids: a classifier (many-to-one) and a tagger (many-to-many).

Both read their tokens through a :class:`RecurrentEncoder`, which the sequence-to-sequence encoder reuses::

    x_t = E[w_t]                              embedding; row 0 (<pad>) stays 0 and gets no gradient
    o_1 … o_T, h_n = RNN(x_1 … x_T)           dnn's RNN / LSTM / GRU (layers, direction, residual or dense
                                              connections, lengths)

The classifier pools the encoded sequence into one vector and maps it to K logits (the lecture's Keras example
``Embedding → LSTM → Dense`` is :class:`SequenceClassifier` with its defaults); the tagger maps every o_t to K
logits. With ``lengths``, padding never changes a sequence's result: the RNN stops at each sequence's own end
and every pooling ignores the padded steps.

Shapes: B batch, T time, E embedding, H hidden, D = 2 if bidirectional else 1, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import choice, number_in, positive_int
from dnn.errors import ConfigError
from dnn.io import PAD_ID
from dnn.layers.attention import Attention
from dnn.layers.recurrent import GRU, LSTM, RNN
from dnn.models.registry import register_model

__all__ = [
    "CELLS",
    "IGNORE_INDEX",
    "StackConfig",
    "POOLINGS",
    "EncoderOutput",
    "RecurrentEncoder",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "SequenceTagger",
    "SequenceTaggerConfig",
    "check_connections",
    "check_tokens",
    "make_rnn",
    "stack_of",
    "token_cross_entropy",
    "validate_recurrent_fields",
]

IGNORE_INDEX = -100  # targets at padded positions: no loss there
CELLS = ("rnn", "lstm", "gru")
POOLINGS = ("last", "mean", "max", "attention")
_ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


# --------------------------------------------------------------------------------------------------------------
# Shared pieces: validation, the recurrent stack, the encoder, the token loss
# --------------------------------------------------------------------------------------------------------------


def validate_recurrent_fields(
    where: str, config, min_vocab: int = 2, vocab_fields: tuple[str, ...] = (), dense: bool = False
) -> None:
    """Check the fields every recurrent model config shares; the ConfigError names the field at fault.

    ``dense``: the config's own ``dense`` field, for the configs that have one.
    """
    for name in (*vocab_fields, "embedding_size", "hidden_size", "num_layers"):
        positive_int(f"{where}: {name}", getattr(config, name))
    for name in vocab_fields:
        if getattr(config, name) < min_vocab:
            raise ConfigError(
                f"{where}: {name} must be at least {min_vocab} (ids 0..{min_vocab - 1} are <pad>, <unk>, <sos>, "
                f"<eos>), got {getattr(config, name)}"
            )
    choice(f"{where}: cell", config.cell, CELLS)
    number_in(f"{where}: dropout", config.dropout, 0, 1, high_open=True)
    check_connections(where, config.residual, dense, config.num_layers)
    if config.forget_bias is not None:
        number_in(f"{where}: forget_bias", config.forget_bias, expected="a number or None")


def check_connections(where: str, residual: bool, dense: bool, num_layers: int) -> None:
    """Residual or dense connections (not both) join stacked layers, so either needs num_layers ≥ 2."""
    if residual and dense:
        raise ConfigError(f"{where}: residual and dense exclude each other; set one of them, got both true")
    for name, on in (("residual", residual), ("dense", dense)):
        if on and num_layers < 2:
            raise ConfigError(f"{where}: {name} needs num_layers ≥ 2 (it joins stacked layers), got num_layers=1")


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """The recurrent stack every recurrent model shares, passed whole down to the layer (keyword-only)::

        cell          rnn | lstm | gru
        hidden_size   H per direction
        num_layers    L stacked layers
        bidirectional D = 2 reads the sequence both ways
        residual      a layer adds its input to its output (skip connections)
        dense         a layer reads the concatenation of the input and every earlier layer's output
        dropout       between layers
        forget_bias   the LSTM's initial forget-gate bias (None: torch's init)

    A model's own config keeps these as flat keys (``model.hidden_size=256`` on the command line) and builds its
    stack from them once (e.g. :meth:`SequenceClassifierConfig.stack`).
    """

    cell: str
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    residual: bool = False
    dense: bool = False
    dropout: float = 0.0
    forget_bias: float | None = 1.0


def make_rnn(input_size: int, stack: StackConfig) -> nn.Module:
    """dnn's batch-first ``RNN`` / ``LSTM`` / ``GRU`` of ``stack`` over inputs of ``input_size`` features."""
    s = stack
    common = dict(num_layers=s.num_layers, batch_first=True, dropout=s.dropout, bidirectional=s.bidirectional,
                  residual=s.residual, dense=s.dense)  # fmt: skip
    if s.cell == "lstm":
        return LSTM(input_size, s.hidden_size, forget_bias=s.forget_bias, **common)
    if s.cell == "gru":
        return GRU(input_size, s.hidden_size, **common)
    if s.cell == "rnn":
        return RNN(input_size, s.hidden_size, **common)
    raise ConfigError(f"cell must be one of {', '.join(map(repr, CELLS))}; got {s.cell!r}")


def stack_of(config, **changes) -> StackConfig:
    """The :class:`StackConfig` of a recurrent model's config (its flat keys), with ``changes`` (e.g. a decoder
    that reads one way: ``bidirectional=False``)."""
    fields = {f: getattr(config, f) for f in ("cell", "hidden_size", "num_layers", "dropout", "forget_bias")}
    for name in ("bidirectional", "residual", "dense"):  # not every model has these keys: False where absent
        # probe: not every recurrent model's config declares these keys; an absent one means False
        fields[name] = bool(getattr(config, name, False))
    return StackConfig(**{**fields, **changes})


def check_tokens(name: str, tokens: Tensor, vocab_size: int, dim: int = 2) -> None:
    """Raise a one-line ConfigError unless ``tokens`` is an integer tensor of rank ``dim`` with ids < vocab_size."""
    if not isinstance(tokens, Tensor) or tokens.dim() != dim or tokens.dtype not in _ID_DTYPES:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        letters = "(B, T)" if dim == 2 else "(B,)"
        raise ConfigError(f"{name} must be an integer tensor of shape {letters}, got {got}")
    if tokens.numel():
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= vocab_size:
            raise ConfigError(f"{name} must hold ids in [0, {vocab_size - 1}] (the vocabulary), got [{lo}, {hi}]")


def token_cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX,
                        label_smoothing: float = 0.0) -> Tensor:  # fmt: skip
    """Mean cross-entropy over the real tokens: ``logits (..., V)``, ``targets (...)``; ``ignore_index`` = padding.

    ``label_smoothing`` ε (Szegedy et al. 2016): the target distribution is (1 − ε)·one-hot + ε/V, as torch's."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index,
                           label_smoothing=label_smoothing)  # fmt: skip


class EncoderOutput(NamedTuple):
    outputs: Tensor  # (B, T, D·H), exactly 0 past each length
    final: Tensor | tuple[Tensor, Tensor]  # h_n (L·D, B, H); LSTM: (h_n, c_n)
    mask: Tensor  # (B, T) bool, True = real token


class RecurrentEncoder(nn.Module):
    """Embedding → multi-layer (bi)directional RNN / LSTM / GRU over padded token ids.

    x_t = E[w_t]                              (B, T, E), E[<pad>] = 0
    o_t, h_n = RNN(x_t, h_{t−1})              o_t = [o→_t; o←_t] (B, T, D·H); h_n at each sequence's own end
    """

    def __init__(self, vocab_size: int, embedding_size: int, stack: StackConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.num_directions = 2 if stack.bidirectional else 1
        self.output_size = self.num_directions * stack.hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        self.rnn = make_rnn(embedding_size, stack)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``tokens (B, T)`` and optional ``lengths (B,)`` → outputs ``(B, T, D·H)``, final state, mask ``(B, T)``."""
        check_tokens("tokens", tokens, self.vocab_size)
        lengths = None if lengths is None else torch.as_tensor(lengths)
        x = self.embedding(tokens)  # (B, T, E)
        outputs, final = self.rnn(x, lengths=lengths)  # (B, T, D·H)
        B, T = tokens.shape
        if lengths is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=tokens.device)
        else:
            mask = torch.arange(T, device=tokens.device) < lengths.to(tokens.device).unsqueeze(1)  # (B, T)
        return EncoderOutput(outputs, final, mask)


# --------------------------------------------------------------------------------------------------------------
# Many-to-one: the sequence classifier
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SequenceClassifierConfig:
    """Sequence classifier; the defaults are the lecture's Keras example (Embedding → LSTM → Dense).

    ``num_classes = 1`` gives one logit for a binary task trained with BCE (the Keras example's sigmoid output).
    """

    vocab_size: int
    num_classes: int
    embedding_size: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    bidirectional: bool = False
    residual: bool = False
    dense: bool = False
    pooling: Literal["last", "mean", "max", "attention"] = "last"
    dropout: float = 0.0
    forget_bias: float | None = 1.0

    def __post_init__(self):
        validate_recurrent_fields("sequence_classifier", self, 2, ("vocab_size",), dense=self.dense)
        positive_int("sequence_classifier: num_classes", self.num_classes)
        choice("sequence_classifier: pooling", self.pooling, POOLINGS)


class SequenceClassifier(nn.Module):
    """Many-to-one: embedding → RNN stack → pooling over time → dense layer → K logits.

    o_1 … o_T, h_n = RNN(E[w_1] … E[w_T])                  (B, T, D·H)
    pooling "last":      z = [h→_T; h←_1]                   the top layer's final state(s), at the own last step
            "mean":      z = (1/n) Σ_{t≤n} o_t              n = the sequence's length
            "max":       z_j = max_{t≤n} o_{t,j}
            "attention": a = softmax_t(qᵀ o_t),  z = Σ_{t≤n} a_t o_t     q a learned query (D·H,)
    logits = W dropout(z) + b                               (B, K)
    """

    def __init__(self, config: SequenceClassifierConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = RecurrentEncoder(c.vocab_size, c.embedding_size, stack_of(c))
        size = self.encoder.output_size
        if c.pooling == "attention":
            self.query = nn.Parameter(torch.randn(size) / size**0.5)  # q
            self.attention = Attention(size, size, score="dot")
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(size, c.num_classes)

    def forward_features(self, tokens: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The pooled vector ``z (B, D·H)`` and the attention pooling's weights ``(B, T)`` (None otherwise)."""
        outputs, final, mask = self.encoder(tokens, lengths)  # (B, T, D·H), ..., (B, T)
        pooling = self.config.pooling
        if pooling == "last":
            h_n = final[0] if isinstance(final, tuple) else final  # (L·D, B, H)
            D = self.encoder.num_directions
            top = h_n[-D:]  # (D, B, H): forward, then backward
            return top.transpose(0, 1).reshape(h_n.shape[1], -1), None  # (B, D·H)
        if pooling == "mean":
            real = mask.unsqueeze(-1)  # (B, T, 1)
            total = outputs.masked_fill(~real, 0.0).sum(dim=1)  # (B, D·H)
            return total / real.sum(dim=1).to(outputs.dtype), None
        if pooling == "max":
            return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1), None  # (B, D·H)
        query = self.query.expand(outputs.shape[0], -1)  # (B, D·H)
        return self.attention(query, outputs, mask=mask)  # (B, D·H), (B, T)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(self.dropout(features))  # (B, K)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``tokens (B, T)``, ``lengths (B,)`` or None (all full) → logits ``(B, K)``."""
        features, _ = self.forward_features(tokens, lengths)
        return self.forward_head(features)


@register_model("sequence_classifier", SequenceClassifierConfig)
def sequence_classifier(config: SequenceClassifierConfig) -> SequenceClassifier:
    """Many-to-one: embedding → (bi)RNN/LSTM/GRU → last/mean/max/attention pooling → dense (Keras example)."""
    return SequenceClassifier(config)


# --------------------------------------------------------------------------------------------------------------
# Many-to-many: the sequence tagger
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SequenceTaggerConfig:
    """Sequence tagger: one of ``num_classes`` labels per token."""

    vocab_size: int
    num_classes: int
    embedding_size: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    bidirectional: bool = True
    residual: bool = False
    dense: bool = False
    dropout: float = 0.0
    forget_bias: float | None = 1.0

    def __post_init__(self):
        validate_recurrent_fields("sequence_tagger", self, 2, ("vocab_size",), dense=self.dense)
        positive_int("sequence_tagger: num_classes", self.num_classes)


class SequenceTagger(nn.Module):
    """Many-to-many, aligned: one label per token.

    o_1 … o_T = RNN(E[w_1] … E[w_T])          (B, T, D·H)
    logits_t = W dropout(o_t) + b             (B, T, K); positions past a length carry no meaning: their
                                              targets are ``IGNORE_INDEX`` and :meth:`loss` skips them
    """

    def __init__(self, config: SequenceTaggerConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = RecurrentEncoder(c.vocab_size, c.embedding_size, stack_of(c))
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(self.encoder.output_size, c.num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``tokens (B, T)``, ``lengths (B,)`` or None → logits ``(B, T, K)``."""
        outputs, _, _ = self.encoder(tokens, lengths)  # (B, T, D·H)
        return self.head(self.dropout(outputs))  # (B, T, K)

    @staticmethod
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy over real tokens: ``targets (B, T)`` hold ``IGNORE_INDEX`` (-100) at padding."""
        return token_cross_entropy(logits, targets)


@register_model("sequence_tagger", SequenceTaggerConfig)
def sequence_tagger(config: SequenceTaggerConfig) -> SequenceTagger:
    """Many-to-many: embedding → (bi)RNN/LSTM/GRU → dense per token (one label per token)."""
    return SequenceTagger(config)
