"""Sequence to sequence: an RNN encoder, a bridge, and a decoder with or without (Luong) attention.

Encoder (a :class:`~dnn.models.recurrent_stack.RecurrentEncoder` over the source, with lengths)::

    m_1 … m_S, h_n = RNN_enc(E_src[x_1] … E_src[x_S])       memory m_s = [m→_s; m←_s]   (B, S, M), M = D·H_enc

Bridge (the decoder's initial state from the encoder's final one, one Linear per layer k)::

    s_0^(k) = tanh(W_b^(k) [h→_k; h←_k] + b_b^(k))           (B, H) for each of the L layers
    c_0^(k) = tanh(W_c^(k) [c→_k; c←_k] + b_c^(k))           LSTM only: the cell state gets its own bridge

Decoder, one target step t (Luong et al. 2015, "global attention")::

    x_t = E_tgt[y_{t−1}]                                      y_0 = <sos> = 2
    x_t = [E_tgt[y_{t−1}]; h̃_{t−1}]                           with input feeding (h̃_0 = 0)
    h_t, s_t = RNN_dec(x_t, s_{t−1})                          top layer's output h_t (B, H)
    without attention:  h̃_t = h_t
    with attention:     a_t = softmax_s(score(h_t, m_s))      padded source steps get a_{t,s} = 0 exactly
                        c_t = Σ_s a_{t,s} m_s                  (B, M)
                        h̃_t = tanh(W_c [c_t; h_t])             the attentional hidden state (B, H)
    logits_t = W_o dropout(h̃_t) + b_o                         (B, V); p(y_t | y_<t, x) = softmax(logits_t)

Decoding ends at <eos> = 3. Training is teacher-forced: with ratio ρ (``teacher_forcing``) the gold y_{t−1} is
fed, otherwise the model's own argmax prediction (drawn per sequence and step from a ``torch.Generator``). The
model keeps no state between calls: :meth:`Seq2Seq.encode` returns a :class:`DecoderState`,
:meth:`Seq2Seq.decode_step` returns a new one, and ``state.index_select(indices)`` reorders it along the batch
for beam search (:mod:`dnn.decoding`).

Shapes: B batch, S source time, T target time, E embedding, H decoder hidden, M memory size, V target vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from dnn.checks import choice, number_in, positive_int
from dnn.errors import ConfigError
from dnn.io import PAD_ID
from dnn.layers.attention import Attention
from dnn.layers.output import linear_cross_entropy
from dnn.models.recurrent_stack import RecurrentEncoder, RecurrentFields, check_connections, make_rnn
from dnn.models.registry import register_model
from dnn.models.token_ids import IGNORE_INDEX, check_tokens, check_vocab_size, token_cross_entropy

__all__ = ["ATTENTIONS", "Bridge", "Decoder", "DecoderState", "Encoder", "Seq2Seq", "Seq2SeqConfig"]

ATTENTIONS = ("none", "dot", "general", "concat")
Encoder = RecurrentEncoder  # the source side is the shared recurrent encoder: embedding → (bi)RNN with lengths


@dataclass(kw_only=True)
class Seq2SeqConfig(RecurrentFields):
    """Encoder–decoder. ``encoder_hidden_size`` (per direction) defaults to ``hidden_size`` (the decoder's).

    The recurrent stack's keys (cell, hidden_size 256, num_layers 1, dropout, forget_bias): :class:`RecurrentFields`.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    embedding_size: int = 128
    hidden_size: int = 256
    encoder_hidden_size: int | None = None
    bidirectional: bool = True
    residual: bool = False
    attention: Literal["none", "dot", "general", "concat"] = "general"
    attention_hidden_size: int | None = None
    input_feeding: bool = False
    teacher_forcing: float = 1.0
    label_smoothing: float = 0.0  # ε of the training loss; evaluation reports the plain cross-entropy

    def __post_init__(self):
        where = "seq2seq"
        for name in ("src_vocab_size", "tgt_vocab_size"):
            check_vocab_size(f"{where}: {name}", getattr(self, name), 4)
        positive_int(f"{where}: embedding_size", self.embedding_size)
        self._check_recurrent(where)
        check_connections(where, self.residual, False, self.num_layers)
        number_in(f"{where}: label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        if self.encoder_hidden_size is None:
            self.encoder_hidden_size = self.hidden_size
        enc = positive_int(
            f"{where}: encoder_hidden_size", self.encoder_hidden_size, expected="a positive integer or None"
        )
        choice(f"{where}: attention", self.attention, ATTENTIONS)
        # options that fit one attention kind follow the kind (switching model.attention never needs two edits):
        # concat's own hidden size is dropped by the others, and dot scores s·h need a memory as wide as the decoder
        directions = 2 if self.bidirectional else 1
        if self.attention != "concat":
            self.attention_hidden_size = None
        if self.attention == "dot" and enc * directions != self.hidden_size:
            if self.hidden_size % directions:
                raise ConfigError(
                    f"{where}: attention='dot' needs the memory (encoder_hidden_size × {directions} directions) as "
                    f"wide as hidden_size={self.hidden_size}, which is odd; use an even hidden_size or 'general'"
                )
            self.encoder_hidden_size = enc = self.hidden_size // directions
        if self.input_feeding and self.attention == "none":
            raise ConfigError(f"{where}: input_feeding needs an attention (feeds h̃_(t−1)), got attention='none'")
        number_in(f"{where}: teacher_forcing", self.teacher_forcing, 0, 1)

    @property
    def memory_size(self) -> int:
        return self.encoder_hidden_size * (2 if self.bidirectional else 1)


@dataclass(frozen=True, eq=False)
class DecoderState:
    """What :meth:`Seq2Seq.decode_step` needs, batch along dim 0 except ``hidden`` (torch's ``(L, B, H)``)."""

    hidden: Tensor | tuple[Tensor, Tensor]  # s_{t−1}: (L, B, H); LSTM: (h, c)
    memory: Tensor  # m: (B, S, M)
    mask: Tensor  # (B, S) bool, True = real source token
    projected_memory: Tensor | None  # the attention's key projection of m, computed once; None without attention
    feed: Tensor | None  # h̃_{t−1} (B, H) with input feeding; None otherwise
    source: Tensor | None = None  # (B,) the encoded sentence each row reads; None: row b reads sentence b

    def index_select(self, indices: Tensor) -> DecoderState:
        """The state of the batch rows ``indices (B',)`` (repeats allowed): beam search's reordering.

        Rows that read the same source sentence hold the same memory, mask and projected memory. A reordering
        that leaves every row on its sentence (beam search's, at every step after the first) therefore only moves
        the decoder's own state, and the memory (B·K copies of S × M numbers) stays where it is.
        """
        source = indices if self.source is None else self.source.index_select(0, indices)  # (B',)
        hidden = tuple(h.index_select(1, indices) for h in self.hidden) if isinstance(self.hidden, tuple) else None
        hidden = hidden if hidden is not None else self.hidden.index_select(1, indices)
        feed = None if self.feed is None else self.feed.index_select(0, indices)
        if self.source is not None and torch.equal(source, self.source):  # every row stays on its sentence
            return DecoderState(hidden, self.memory, self.mask, self.projected_memory, feed, source)
        return DecoderState(
            hidden=hidden,
            memory=self.memory.index_select(0, indices),
            mask=self.mask.index_select(0, indices),
            projected_memory=None if self.projected_memory is None else self.projected_memory.index_select(0, indices),
            feed=feed,
            source=source,
        )

    @property
    def batch_size(self) -> int:
        return self.memory.shape[0]


class Bridge(nn.Module):
    """s_0^(k) = tanh(W^(k) [h→_k; h←_k] + b^(k)) per layer k; the LSTM's cell state through its own Linears."""

    def __init__(self, num_layers: int, num_directions: int, encoder_hidden: int, decoder_hidden: int, lstm: bool):
        super().__init__()
        self.num_layers, self.num_directions = num_layers, num_directions
        size = num_directions * encoder_hidden
        self.hidden = nn.ModuleList(nn.Linear(size, decoder_hidden) for _ in range(num_layers))
        self.cell = nn.ModuleList(nn.Linear(size, decoder_hidden) for _ in range(num_layers)) if lstm else None

    def _map(self, states: Tensor, linears: nn.ModuleList) -> Tensor:
        L, D = self.num_layers, self.num_directions
        B, He = states.shape[1], states.shape[2]
        x = states.view(L, D, B, He).permute(0, 2, 1, 3).reshape(L, B, D * He)  # [h→_k; h←_k]: (L, B, D·He)
        return torch.stack([torch.tanh(linear(x[k])) for k, linear in enumerate(linears)])  # (L, B, H)

    def forward(self, final: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
        if self.cell is None:
            return self._map(final, self.hidden)
        h_n, c_n = final
        return self._map(h_n, self.hidden), self._map(c_n, self.cell)


class Decoder(nn.Module):
    """Embedding → RNN stack stepping one token at a time → (attention) → output layer; see the module docstring."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = config
        self.vocab_size = c.tgt_vocab_size
        self.input_feeding = c.input_feeding
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_size, padding_idx=PAD_ID)
        rnn_input = c.embedding_size + (c.hidden_size if c.input_feeding else 0)
        self.rnn = make_rnn(rnn_input, c.stack(residual=c.residual))  # one way, whatever the encoder reads
        if c.attention == "none":
            self.attention, self.combine = None, None
        else:
            self.attention = Attention(c.hidden_size, c.memory_size, c.attention, c.attention_hidden_size)
            self.combine = nn.Linear(c.memory_size + c.hidden_size, c.hidden_size, bias=False)  # W_c
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.hidden_size, c.tgt_vocab_size)  # W_o, b_o

    def _attend(self, h: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """h ``(B, H)`` or ``(B, T, H)`` → h̃ of the same shape and the weights ``(B, S)`` / ``(B, T, S)``."""
        if self.attention is None:
            return h, None
        context, weights = self.attention(
            h, state.memory, mask=state.mask, projected_keys=state.projected_memory
        )  # c_t: (B, [T,] M), a_t: (B, [T,] S)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1))), weights  # h̃_t: (B, [T,] H)

    def step(self, prev_token: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One step: ``prev_token (B,)`` → logits ``(B, V)``, the next state, attention weights ``(B, S)``."""
        x = self.embedding(prev_token)  # (B, E)
        if self.input_feeding:
            x = torch.cat([x, state.feed], dim=-1)  # (B, E + H)
        out, hidden = self.rnn(x.unsqueeze(1), state.hidden)  # (B, 1, H)
        attentional, weights = self._attend(out.squeeze(1), state)  # (B, H), (B, S)
        logits = self.output(self.dropout(attentional))  # (B, V)
        feed = attentional if self.input_feeding else None
        new_state = DecoderState(hidden, state.memory, state.mask, state.projected_memory, feed, state.source)
        return logits, new_state, weights

    def features(self, tgt_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """All steps at once with the gold inputs ``tgt_in (B, T)`` (no input feeding): what the output layer reads,
        ``dropout(h̃_t)`` ``(B, T, H)``, and the attention weights ``(B, T, S)``.

        Without input feeding, h_t does not depend on the attention, so the RNN runs over the whole sequence in
        one call and the attention over all T queries in one batched product.
        """
        if self.input_feeding:
            raise ConfigError("Decoder.features runs all steps at once, which input feeding rules out; use step()")
        out, _ = self.rnn(self.embedding(tgt_in), state.hidden)  # (B, T, H)
        attentional, weights = self._attend(out, state)  # (B, T, H), (B, T, S)
        return self.dropout(attentional), weights

    def forward(self, tgt_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """:meth:`features` through the output layer: logits ``(B, T, V)`` and the weights ``(B, T, S)``."""
        features, weights = self.features(tgt_in, state)
        return self.output(features), weights  # (B, T, V)


class Seq2Seq(nn.Module):
    """RNN encoder–decoder with optional Luong attention (equations in the module docstring).

    ``encode(src, src_lengths) -> DecoderState``; ``decode_step(prev_token, state) -> (logits, state, weights)``;
    ``forward(src, src_lengths, tgt_in) -> (logits (B, T, V), attention (B, T, S) | None)``.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        c = config
        stack = c.stack(hidden_size=c.encoder_hidden_size, bidirectional=c.bidirectional, residual=c.residual)
        self.encoder = Encoder(c.src_vocab_size, c.embedding_size, stack)
        D = 2 if c.bidirectional else 1
        self.bridge = Bridge(c.num_layers, D, c.encoder_hidden_size, c.hidden_size, lstm=c.cell == "lstm")
        self.decoder = Decoder(c)

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> DecoderState:
        """Run the encoder over ``src (B, S)`` and return the decoder's initial state (memory, mask, s_0)."""
        memory, final, mask = self.encoder(src, src_lengths)  # (B, S, M), ..., (B, S)
        attention = self.decoder.attention
        projected = None if attention is None else attention.project_keys(memory)  # (B, S, P)
        feed = memory.new_zeros(memory.shape[0], self.config.hidden_size) if self.config.input_feeding else None
        return DecoderState(self.bridge(final), memory, mask, projected, feed)

    def decode_step(self, prev_token: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """``prev_token (B,)`` → logits ``(B, V)``, the next :class:`DecoderState`, attention ``(B, S)`` or None."""
        check_tokens("prev_token", prev_token, self.config.tgt_vocab_size, dim=1)
        return self.decoder.step(prev_token, state)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor | None,
        tgt_in: Tensor,
        *,
        teacher_forcing: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding of ``tgt_in (B, T)`` (``<sos> y_1 … y_{T−1}``, padded with <pad> at the end).

        Args:
            teacher_forcing: ρ, the probability of feeding the gold token; None: the config's ρ while training,
                1.0 in eval mode. Where the gold token is not fed, the previous step's argmax is.
            generator: the RNG of the teacher-forcing draws (the global RNG if None).

        Returns:
            logits ``(B, T, V)`` and attention weights ``(B, T, S)`` (None without attention). Padding at the end
            of ``tgt_in`` cannot affect earlier steps; give :meth:`loss` targets with -100 there.
        """
        check_tokens("tgt_in", tgt_in, self.config.tgt_vocab_size)
        ratio = self._teacher_forcing(teacher_forcing)
        state = self.encode(src, src_lengths)
        if self._all_steps_at_once(ratio):
            return self.decoder(tgt_in, state)

        B, T = tgt_in.shape
        logits, weights = [], []
        prev = tgt_in[:, 0]
        for t in range(T):
            step_logits, state, step_weights = self.decoder.step(prev, state)  # (B, V), ..., (B, S)
            logits.append(step_logits)
            weights.append(step_weights)
            if t + 1 < T:
                prev = tgt_in[:, t + 1]
                if ratio < 1.0:
                    device = generator.device if generator is not None else tgt_in.device
                    use_gold = (torch.rand(B, generator=generator, device=device) < ratio).to(tgt_in.device)  # (B,)
                    prev = torch.where(use_gold, prev, step_logits.detach().argmax(dim=-1))
        attention = None if weights[0] is None else torch.stack(weights, dim=1)  # (B, T, S)
        return torch.stack(logits, dim=1), attention  # (B, T, V)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy per real target token; ``targets (B, T)`` = ``y_1 … y_T <eos>`` padded with -100.
        In training mode with ``label_smoothing`` ε > 0, against the smoothed targets (the objective only: an
        evaluation, in eval mode, measures the plain cross-entropy)."""
        return token_cross_entropy(logits, targets, label_smoothing=self._smoothing())

    def forward_loss(self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        """``loss(forward(src, src_lengths, tgt_in)[0], tgt_out)`` without the logits, as training computes it.

        Teacher-forced without input feeding (the default), the output layer runs only at the real target
        positions and together with its cross-entropy (:func:`~dnn.layers.output.linear_cross_entropy`): no
        ``(B, T, V)`` logits or log-probabilities are kept. Equal to the two calls within float rounding, with the
        same random draws; otherwise it is the two calls.
        """
        if not self._all_steps_at_once(self._teacher_forcing(None)):
            return self.loss(self(src, src_lengths, tgt_in)[0], tgt_out)
        check_tokens("tgt_in", tgt_in, self.config.tgt_vocab_size)
        features, _ = self.decoder.features(tgt_in, self.encode(src, src_lengths))  # (B, T, H)
        output = self.decoder.output
        return linear_cross_entropy(features, output.weight, output.bias, tgt_out, ignore_index=IGNORE_INDEX,
                                    label_smoothing=self._smoothing())  # fmt: skip

    def _teacher_forcing(self, ratio: float | None) -> float:
        """ρ as given, or the config's while training and 1.0 in eval mode."""
        if ratio is None:
            ratio = self.config.teacher_forcing if self.training else 1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"teacher_forcing must be in [0, 1], got {ratio!r}")
        return ratio

    def _all_steps_at_once(self, ratio: float) -> bool:
        """Whether the decoder can run every target step in one call: always gold inputs, no input feeding."""
        return ratio >= 1.0 and not self.config.input_feeding

    def _smoothing(self) -> float:
        return self.config.label_smoothing if self.training else 0.0


@register_model("seq2seq", Seq2SeqConfig)
def seq2seq(config: Seq2SeqConfig) -> Seq2Seq:
    """Encoder–decoder (bi)RNN/LSTM/GRU with a bridge and optional dot/general/concat attention."""
    return Seq2Seq(config)
