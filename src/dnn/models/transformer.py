"""A small Transformer encoder–decoder (Vaswani et al. 2017): what came after the RNN seq2seq.

No recurrence: every position of a sentence is computed at once, and a position reaches any other in one step
of attention (an RNN needs as many steps as they lie apart, one after the other)::

    x_s = √E · E_src[w_s] + PE(s)                                    (B, S, E), then dropout
    m = Encoder(x)         N_enc × [self-attention, FFN]             memory (B, S, E), 0 at padded steps
    y_t = √E · E_tgt[y_{t−1}] + PE(t)                                (B, T, E), y_0 = <sos>
    z = Decoder(y, m)      N_dec × [causal self-attention, attention over m, FFN]
    logits_t = W_o z_t + b_o                                         (B, T, V)

The layers are :mod:`dnn.layers.transformer`'s; ``norm_first`` (default True) makes them pre-norm, with a final
LayerNorm after each stack — it trains on small data without the paper's learning-rate warm-up — and False gives
the paper's post-norm layers. The interface is :class:`~dnn.models.seq2seq.Seq2Seq`'s, so the seq2seq task,
``greedy`` and ``beam_search`` run it unchanged: ``forward(src, src_lengths, tgt_in) -> (logits, attention)``,
``encode(src, src_lengths) -> state``, ``decode_step(prev_token, state) -> (logits, state, attention)``. Training
is teacher-forced over all T steps in one pass (the causal mask keeps step t from seeing later steps);
:meth:`TransformerSeq2Seq.decode_step` runs one step against the keys and values of the earlier ones, kept in the
:class:`TransformerState` (no state on the module). The attention it reports is the last decoder layer's
attention over the source, averaged over the heads.

Shapes: B batch, S source time, T target time, E model size (``d_model``), h heads, d = E / h, V target vocab,
L decoder layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.checks import number_in, positive_int
from dnn.errors import ConfigError
from dnn.io import PAD_ID
from dnn.layers.output import linear_cross_entropy
from dnn.layers.transformer import TransformerDecoderLayer, TransformerEncoderLayer, sinusoidal_positions
from dnn.models.registry import register_model
from dnn.models.token_ids import IGNORE_INDEX, check_tokens, token_cross_entropy

__all__ = ["TransformerConfig", "TransformerSeq2Seq", "TransformerState"]


@dataclass
class TransformerConfig:
    """Transformer encoder–decoder; the defaults are a small one for the built-in character tasks."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    feedforward_size: int = 256
    dropout: float = 0.1
    norm_first: bool = True

    def __post_init__(self):
        where = "transformer_seq2seq"
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "num_heads", "num_encoder_layers",
                     "num_decoder_layers", "feedforward_size"):  # fmt: skip
            positive_int(f"{where}: {name}", getattr(self, name))
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if getattr(self, name) < 4:
                raise ConfigError(f"{where}: {name} must be at least 4 (ids 0..3 are <pad>, <unk>, <sos>, <eos>), "
                                  f"got {getattr(self, name)}")  # fmt: skip
        if self.d_model % self.num_heads:
            raise ConfigError(f"{where}: d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.d_model % 2:
            raise ConfigError(f"{where}: d_model must be even (sine and cosine positions pair up), got {self.d_model}")
        number_in(f"{where}: dropout", self.dropout, 0, 1, high_open=True)


@dataclass(frozen=True, eq=False)
class TransformerState:
    """What :meth:`TransformerSeq2Seq.decode_step` needs; batch along dim 0.

    ``memory_keys`` / ``memory_values``: per decoder layer, its cross-attention's K and V of the memory ``(B, h, S,
    d)``, projected once in :meth:`~TransformerSeq2Seq.encode`; ``past_keys`` / ``past_values``: per decoder
    layer, its self-attention's K and V of the steps decoded so far ``(B, h, t, d)``.
    """

    memory_keys: tuple[Tensor, ...]
    memory_values: tuple[Tensor, ...]
    mask: Tensor  # (B, S) bool, True = real source token
    past_keys: tuple[Tensor, ...]
    past_values: tuple[Tensor, ...]
    position: int  # t: the position of the next target token
    source: Tensor | None = None  # (B,) the encoded sentence each row reads; None: row b reads sentence b

    def index_select(self, indices: Tensor) -> TransformerState:
        """The state of the batch rows ``indices (B',)`` (repeats allowed): beam search's reordering. Rows that
        stay on their sentence (every step of beam search after the first) leave the memory where it is."""
        source = indices if self.source is None else self.source.index_select(0, indices)  # (B',)
        past_keys = tuple(k.index_select(0, indices) for k in self.past_keys)
        past_values = tuple(v.index_select(0, indices) for v in self.past_values)
        if self.source is not None and torch.equal(source, self.source):
            memory = (self.memory_keys, self.memory_values, self.mask)
        else:
            memory = (tuple(k.index_select(0, indices) for k in self.memory_keys),
                      tuple(v.index_select(0, indices) for v in self.memory_values),
                      self.mask.index_select(0, indices))  # fmt: skip
        return TransformerState(*memory, past_keys, past_values, self.position, source)

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]


class TransformerSeq2Seq(nn.Module):
    """Transformer encoder–decoder with the seq2seq interface (equations in the module docstring)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=PAD_ID)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(c.dropout)
        layer = dict(dim_feedforward=c.feedforward_size, dropout=c.dropout, norm_first=c.norm_first)
        self.encoder_layers = nn.ModuleList(
            TransformerEncoderLayer(c.d_model, c.num_heads, **layer) for _ in range(c.num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            TransformerDecoderLayer(c.d_model, c.num_heads, **layer) for _ in range(c.num_decoder_layers)
        )
        # pre-norm layers leave their residual stream un-normalised: one LayerNorm at the top of each stack
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.output = nn.Linear(c.d_model, c.tgt_vocab_size)  # W_o, b_o
        with torch.no_grad():  # embeddings ~ N(0, 1/E): after the √E scale, of the positions' size
            for embedding in (self.src_embedding, self.tgt_embedding):
                nn.init.normal_(embedding.weight, std=c.d_model**-0.5)
                embedding.weight[PAD_ID].zero_()

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        """√E · E[w] + PE(offset …) then dropout: ``(B, T)`` → ``(B, T, E)``."""
        E = self.config.d_model
        x = embedding(tokens) * math.sqrt(E)  # (B, T, E)
        positions = sinusoidal_positions(tokens.shape[1], E, offset, device=x.device, dtype=x.dtype)  # (T, E)
        return self.dropout(x + positions)

    def _memory(self, src: Tensor, src_lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """The encoder over ``src (B, S)`` → memory ``(B, S, E)`` (0 at padding) and mask ``(B, S)``."""
        check_tokens("src", src, self.config.src_vocab_size)
        B, S = src.shape
        if src_lengths is None:
            mask = torch.ones(B, S, dtype=torch.bool, device=src.device)
        else:
            mask = torch.arange(S, device=src.device) < torch.as_tensor(src_lengths).to(src.device).unsqueeze(1)
        x = self._embed(self.src_embedding, src)  # (B, S, E)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x).masked_fill(~mask.unsqueeze(-1), 0.0), mask  # (B, S, E)

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> TransformerState:
        """Run the encoder and project its output into every decoder layer's keys and values, once."""
        memory, mask = self._memory(src, src_lengths)
        kv = [layer.multihead_attn.project_keys_values(memory) for layer in self.decoder_layers]  # (B, h, S, d)
        c = self.config
        empty = memory.new_zeros(memory.shape[0], c.num_heads, 0, c.d_model // c.num_heads)  # (B, h, 0, d)
        L = len(self.decoder_layers)
        return TransformerState(tuple(k for k, _ in kv), tuple(v for _, v in kv), mask, (empty,) * L, (empty,) * L, 0)

    def decode_step(self, prev_token: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState, Tensor]:
        """``prev_token (B,)`` at position t → logits ``(B, V)``, the state at t + 1, attention ``(B, S)``."""
        check_tokens("prev_token", prev_token, self.config.tgt_vocab_size, dim=1)
        y = self._embed(self.tgt_embedding, prev_token.unsqueeze(1), state.position)  # (B, 1, E)
        keys, values = [], []
        for k, layer in enumerate(self.decoder_layers):
            memory_kv = (state.memory_keys[k], state.memory_values[k])
            y, (key, value), weights = layer.step(y, (state.past_keys[k], state.past_values[k]), memory_kv, state.mask)
            keys.append(key)
            values.append(value)
        logits = self.output(self.decoder_norm(y)).squeeze(1)  # (B, V)
        new_state = TransformerState(state.memory_keys, state.memory_values, state.mask, tuple(keys), tuple(values),
                                     state.position + 1, state.source)  # fmt: skip
        return logits, new_state, weights.mean(dim=1).squeeze(1)  # heads averaged: (B, S)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor | None,
        tgt_in: Tensor,
        *,
        teacher_forcing: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """All T target steps at once from the gold ``tgt_in (B, T)`` (``<sos> y_1 … y_{T−1}``, padded at the end).

        ``teacher_forcing`` and ``generator`` are :class:`~dnn.models.seq2seq.Seq2Seq`'s arguments: a Transformer
        decoder is always teacher-forced in training (that is what lets it run all steps at once), so only None and
        1.0 are accepted. Returns logits ``(B, T, V)`` and the last decoder layer's attention over the source,
        averaged over heads, ``(B, T, S)``. Padding at the end of ``tgt_in`` cannot reach earlier steps (causal).
        """
        if teacher_forcing is not None and teacher_forcing != 1.0:
            raise ConfigError(f"transformer_seq2seq trains teacher-forced only (teacher_forcing=1.0); got "
                              f"{teacher_forcing!r}")  # fmt: skip
        features, weights = self._features(src, src_lengths, tgt_in)
        return self.output(features), weights.mean(dim=1)  # (B, T, V), (B, T, S)

    def _features(self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """What the output layer reads ``(B, T, E)`` and the last layer's attention ``(B, h, T, S)``."""
        check_tokens("tgt_in", tgt_in, self.config.tgt_vocab_size)
        memory, mask = self._memory(src, src_lengths)
        y = self._embed(self.tgt_embedding, tgt_in)  # (B, T, E)
        for layer in self.decoder_layers:
            y, weights = layer(y, memory, mask)  # (B, T, E), (B, h, T, S)
        return self.decoder_norm(y), weights

    @staticmethod
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy per real target token; ``targets (B, T)`` = ``y_1 … y_T <eos>`` padded with -100."""
        return token_cross_entropy(logits, targets)

    def forward_loss(self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        """``loss(forward(src, src_lengths, tgt_in)[0], tgt_out)`` without the ``(B, T, V)`` logits: the output layer
        runs only at the real target positions, with its cross-entropy
        (:func:`~dnn.layers.output.linear_cross_entropy`); equal to the two calls within float rounding."""
        features, _ = self._features(src, src_lengths, tgt_in)
        return linear_cross_entropy(features, self.output.weight, self.output.bias, tgt_out,
                                    ignore_index=IGNORE_INDEX)  # fmt: skip


@register_model("transformer_seq2seq", TransformerConfig)
def transformer_seq2seq(config: TransformerConfig) -> TransformerSeq2Seq:
    """Transformer encoder–decoder: multi-head self-attention, sinusoidal positions, pre- or post-norm layers."""
    return TransformerSeq2Seq(config)
