"""The recurrent stack every recurrent model shares: its config keys (declared once), the layer built from them,
and the token encoder that puts an embedding in front of it.

    RecurrentFields     the keys cell, hidden_size, num_layers, dropout, forget_bias and their one check; the
                        recurrent models' configs inherit it (``model.hidden_size=256`` on the command line)
    StackConfig         the whole stack as the layer takes it (those keys, plus direction and connections)
    make_rnn            dnn's batch-first RNN / LSTM / GRU of a StackConfig
    RecurrentEncoder    x_t = E[w_t], o_1 … o_T, h_n = RNN(x_1 … x_T): the sequence models' and seq2seq's encoder

Shapes: B batch, T time, E embedding, H hidden, L layers, D = 2 if bidirectional else 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from dnn.checks import choice, number_in, positive_int
from dnn.errors import ConfigError
from dnn.io import PAD_ID
from dnn.layers.recurrent import GRU, LSTM, RNN
from dnn.models.token_ids import check_tokens

__all__ = [
    "CELLS",
    "EncoderOutput",
    "RecurrentEncoder",
    "RecurrentFields",
    "StackConfig",
    "check_connections",
    "make_rnn",
]

CELLS = ("rnn", "lstm", "gru")


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
    stack from them once (:meth:`RecurrentFields.stack`).
    """

    cell: str
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    residual: bool = False
    dense: bool = False
    dropout: float = 0.0
    forget_bias: float | None = 1.0


@dataclass(kw_only=True)
class RecurrentFields:
    """The keys of the recurrent stack, declared once; every recurrent model's config inherits them.

    ``cell``, ``hidden_size``, ``num_layers``, ``dropout`` and ``forget_bias`` as in :class:`StackConfig`. A config
    whose model wants another default redeclares that field alone (``hidden_size: int = 256``), and one that takes
    fewer cells narrows ``cell``'s Literal and passes the same ``cells`` to :meth:`_check_recurrent`. The keys are
    keyword-only, and the configs that inherit them are too (``@dataclass(kw_only=True)``): their required keys
    may then follow these defaults, and a redeclared default stays keyword-only.

    The keys a model may have beyond these (``bidirectional``, ``residual``, ``dense``) are its own: not every
    recurrent model reads both ways or joins its layers. Its ``__post_init__`` calls :meth:`_check_recurrent`
    (and :func:`check_connections` where it has ``residual`` or ``dense``).
    """

    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    forget_bias: float | None = 1.0

    def _check_recurrent(self, where: str, cells: tuple[str, ...] = CELLS) -> None:
        """Check the shared keys; the ConfigError names the key (``"<where>: hidden_size must be ..."``)."""
        positive_int(f"{where}: hidden_size", self.hidden_size)
        positive_int(f"{where}: num_layers", self.num_layers)
        choice(f"{where}: cell", self.cell, cells)
        number_in(f"{where}: dropout", self.dropout, 0, 1, high_open=True)
        if self.forget_bias is not None:
            number_in(f"{where}: forget_bias", self.forget_bias, expected="a number or None")

    def stack(self, **changes) -> StackConfig:
        """The :class:`StackConfig` of these keys with ``changes``: the model's own keys beyond them (False where not
        given: ``bidirectional=c.bidirectional``) or a changed one (an encoder's ``hidden_size``)."""
        shared = dict(cell=self.cell, hidden_size=self.hidden_size, num_layers=self.num_layers, dropout=self.dropout,
                      forget_bias=self.forget_bias)  # fmt: skip
        return StackConfig(**{**shared, **changes})


def check_connections(where: str, residual: bool, dense: bool, num_layers: int) -> None:
    """Residual or dense connections (not both) join stacked layers, so either needs num_layers ≥ 2."""
    if residual and dense:
        raise ConfigError(f"{where}: residual and dense exclude each other; set one of them, got both true")
    for name, on in (("residual", residual), ("dense", dense)):
        if on and num_layers < 2:
            raise ConfigError(f"{where}: {name} needs num_layers ≥ 2 (it joins stacked layers), got num_layers=1")


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
