"""A recurrent language model for text generation: p(w_t | w_<t) one token at a time.

    x_t = dropout(E[w_t])                         (B, T, E)
    h_t, s_t = RNN(x_t, s_{t−1})                  dnn's RNN / LSTM / GRU stack, state carried across calls
    logits_t = W_o dropout(h_t) + b_o             (B, T, V); tied weights (Press & Wolf 2017): W_o = E

Training runs truncated backpropagation through time: a long text is cut into chunks, the final state of one
chunk is the initial state of the next (``forward(tokens, state) -> (logits, state)``), and the caller cuts the
graph between chunks (:func:`dnn.training.callbacks.detach_state`). :meth:`LanguageModel.decode_step` feeds one
token, so the sampling functions of :mod:`dnn.decoding` generate text with it.

Shapes: B batch, T time, E embedding, H hidden, L layers, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.checks import positive_int
from dnn.errors import ConfigError
from dnn.io import PAD_ID
from dnn.models.recurrent_stack import RecurrentFields, check_connections, make_rnn
from dnn.models.registry import register_model
from dnn.models.token_ids import check_tokens, check_vocab_size, token_cross_entropy

__all__ = ["LMState", "LanguageModel", "LanguageModelConfig"]


@dataclass(kw_only=True)
class LanguageModelConfig(RecurrentFields):
    """Language model. ``tie_weights`` shares the embedding with the output layer (needs embedding = hidden).

    The recurrent stack's keys (cell, hidden_size 256, num_layers 2, dropout, forget_bias): :class:`RecurrentFields`.
    """

    vocab_size: int
    embedding_size: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    residual: bool = False
    dense: bool = False
    tie_weights: bool = False

    def __post_init__(self):
        where = "language_model"
        check_vocab_size(f"{where}: vocab_size", self.vocab_size, 4)
        positive_int(f"{where}: embedding_size", self.embedding_size)
        self._check_recurrent(where)
        check_connections(where, self.residual, self.dense, self.num_layers)
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ConfigError(
                f"language_model: tie_weights needs embedding_size == hidden_size (the output layer is Eᵀ), got "
                f"embedding_size={self.embedding_size}, hidden_size={self.hidden_size}"
            )


@dataclass(frozen=True, eq=False)
class LMState:
    """The carried recurrent state s_t: ``hidden (L, B, H)``, for the LSTM a tuple ``(h, c)``."""

    hidden: Tensor | tuple[Tensor, Tensor]

    def index_select(self, indices: Tensor) -> LMState:
        """The state of the batch rows ``indices`` (repeats allowed)."""
        if isinstance(self.hidden, tuple):
            return LMState(tuple(h.index_select(1, indices) for h in self.hidden))
        return LMState(self.hidden.index_select(1, indices))

    def detach(self) -> LMState:
        """The same values cut from the autograd graph."""
        if isinstance(self.hidden, tuple):
            return LMState(tuple(h.detach() for h in self.hidden))
        return LMState(self.hidden.detach())

    @property
    def batch_size(self) -> int:
        h = self.hidden[0] if isinstance(self.hidden, tuple) else self.hidden
        return h.shape[1]


class LanguageModel(nn.Module):
    """Embedding → RNN stack → dropout → output layer (optionally tied to the embedding); see the module docstring."""

    def __init__(self, config: LanguageModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=PAD_ID)
        self.rnn = make_rnn(c.embedding_size, c.stack(residual=c.residual, dense=c.dense))
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.hidden_size, c.vocab_size)
        # the word_language_model example's initialisation: small uniform embeddings (and so output weights)
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            self.embedding.weight[PAD_ID].zero_()  # E[<pad>] = 0, as nn.Embedding's own init leaves it
        nn.init.zeros_(self.output.bias)
        if c.tie_weights:
            self.output.weight = self.embedding.weight  # W_o = E: one (V, H) matrix
        else:
            nn.init.uniform_(self.output.weight, -0.1, 0.1)

    def init_state(self, batch_size: int) -> LMState:
        """The zero state s_0 for ``batch_size`` sequences."""
        weight = self.output.bias
        zeros = weight.new_zeros(self.config.num_layers, batch_size, self.config.hidden_size)  # (L, B, H)
        return LMState((zeros, zeros.clone()) if self.config.cell == "lstm" else zeros)

    def forward(self, tokens: Tensor, state: LMState | None = None) -> tuple[Tensor, LMState]:
        """``tokens (B, T)`` and the carried state (zeros if None) → logits ``(B, T, V)`` and the final state."""
        check_tokens("tokens", tokens, self.config.vocab_size)
        if state is not None and not isinstance(state, LMState):
            raise ConfigError(f"state must be an LMState (from forward or init_state) or None, got {type(state)}")
        if state is not None and state.batch_size != tokens.shape[0]:
            raise ConfigError(f"state holds {state.batch_size} sequences but tokens has {tokens.shape[0]} (B)")
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        out, hidden = self.rnn(x, None if state is None else state.hidden)  # (B, T, H)
        return self.output(self.dropout(out)), LMState(hidden)  # (B, T, V)

    def decode_step(self, prev_token: Tensor, state: LMState | None) -> tuple[Tensor, LMState, None]:
        """Feed one token ``(B,)``: logits of the next ``(B, V)``, the new state, and no attention."""
        check_tokens("prev_token", prev_token, self.config.vocab_size, dim=1)
        logits, state = self(prev_token.unsqueeze(1), state)  # (B, 1, V)
        return logits.squeeze(1), state, None

    @staticmethod
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy (nats per token) over real targets ``(B, T)``; -100 marks padding."""
        return token_cross_entropy(logits, targets)


@register_model("language_model", LanguageModelConfig)
def language_model(config: LanguageModelConfig) -> LanguageModel:
    """Language model: embedding → RNN/LSTM/GRU stack → output layer (optionally tied), for text generation."""
    return LanguageModel(config)
