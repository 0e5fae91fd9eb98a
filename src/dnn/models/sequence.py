"""Sequence models over token ids: a classifier (many-to-one) and a tagger (many-to-many).

Both read their tokens through a :class:`~dnn.models.recurrent_stack.RecurrentEncoder` (the sequence-to-sequence
encoder is the same one)::

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
from typing import Literal

import torch
from torch import Tensor, nn

from dnn.checks import choice, positive_int
from dnn.layers.attention import Attention
from dnn.models.recurrent_stack import RecurrentEncoder, RecurrentFields, check_connections
from dnn.models.registry import register_model
from dnn.models.token_ids import check_vocab_size, token_cross_entropy

__all__ = [
    "POOLINGS",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "SequenceModelFields",
    "SequenceTagger",
    "SequenceTaggerConfig",
]

POOLINGS = ("last", "mean", "max", "attention")


# --------------------------------------------------------------------------------------------------------------
# Many-to-one: the sequence classifier
# --------------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SequenceModelFields(RecurrentFields):
    """The keys the classifier and the tagger share, declared once: their token encoder's (``vocab_size``,
    ``embedding_size``, ``bidirectional``, ``residual``, ``dense``, and the recurrent stack's keys of
    :class:`RecurrentFields`) and ``num_classes`` (K). A model that wants another default redeclares that field alone
    (the tagger's ``bidirectional: bool = True``); the field keeps its place in the config."""

    vocab_size: int
    num_classes: int
    embedding_size: int = 128
    bidirectional: bool = False
    residual: bool = False
    dense: bool = False

    def _check_sequence_model(self, where: str) -> None:
        """Check the shared keys; the ConfigError names the key (``"<where>: embedding_size must be ..."``)."""
        check_vocab_size(f"{where}: vocab_size", self.vocab_size, 2)
        positive_int(f"{where}: embedding_size", self.embedding_size)
        self._check_recurrent(where)
        check_connections(where, self.residual, self.dense, self.num_layers)
        positive_int(f"{where}: num_classes", self.num_classes)

    def build_encoder(self) -> RecurrentEncoder:
        """The token encoder these keys describe: embedding → RNN stack, outputs ``(B, T, D·H)``."""
        stack = self.stack(bidirectional=self.bidirectional, residual=self.residual, dense=self.dense)
        return RecurrentEncoder(self.vocab_size, self.embedding_size, stack)


@dataclass(kw_only=True)
class SequenceClassifierConfig(SequenceModelFields):
    """Sequence classifier; the defaults are the lecture's Keras example (Embedding → LSTM → Dense).

    ``num_classes = 1`` gives one logit for a binary task trained with BCE (the Keras example's sigmoid output).
    The encoder's keys and ``num_classes``: :class:`SequenceModelFields`; the recurrent stack's (cell, hidden_size
    128, num_layers 1, dropout, forget_bias): :class:`RecurrentFields`.
    """

    pooling: Literal["last", "mean", "max", "attention"] = "last"

    def __post_init__(self):
        where = "sequence_classifier"
        self._check_sequence_model(where)
        choice(f"{where}: pooling", self.pooling, POOLINGS)


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
        self.encoder = config.build_encoder()
        size = self.encoder.output_size
        if config.pooling == "attention":
            self.query = nn.Parameter(torch.randn(size) / size**0.5)  # q
            self.attention = Attention(size, size, score="dot")
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(size, config.num_classes)

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


@dataclass(kw_only=True)
class SequenceTaggerConfig(SequenceModelFields):
    """Sequence tagger: one of ``num_classes`` labels per token; bidirectional by default.

    The encoder's keys and ``num_classes``: :class:`SequenceModelFields`; the recurrent stack's (cell, hidden_size
    128, num_layers 1, dropout, forget_bias): :class:`RecurrentFields`.
    """

    bidirectional: bool = True

    def __post_init__(self):
        self._check_sequence_model("sequence_tagger")


class SequenceTagger(nn.Module):
    """Many-to-many, aligned: one label per token.

    o_1 … o_T = RNN(E[w_1] … E[w_T])          (B, T, D·H)
    logits_t = W dropout(o_t) + b             (B, T, K); positions past a length carry no meaning: their
                                              targets are ``IGNORE_INDEX`` and :meth:`loss` skips them
    """

    def __init__(self, config: SequenceTaggerConfig):
        super().__init__()
        self.config = config
        self.encoder = config.build_encoder()
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.num_classes)

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
