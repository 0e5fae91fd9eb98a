"""Recurrent cells: one time step of the tanh RNN, the LSTM and the GRU, written from the lecture's equations.

The equations (:func:`lstm_update`, :func:`gru_update`, h' = tanh(W_ih x + b_ih + W_hh h + b_hh)) are shared with
the runner in :mod:`dnn.layers.recurrent`, which owns time, layers, direction, residuals, lengths and the carried
state. Parameters are named and shaped as torch's cells' (gate order i, f, g, o for the LSTM; r, z, n for the
GRU), so torch's ``RNNCell`` / ``LSTMCell`` / ``GRUCell`` are the test oracle.

Shapes: input ``(B, I)`` (or unbatched ``(I,)``), state ``(B, H)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import choice, number_in, positive_int
from dnn.errors import ConfigError

__all__ = [
    "NONLINEARITIES",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "check_forget_bias",
    "gru_update",
    "init_forget_bias",
    "lstm_update",
]

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


# --------------------------------------------------------------------------------------------------------------
# The equations, shared by the cells and the runner
# --------------------------------------------------------------------------------------------------------------


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM update from the gate pre-activations ``gates = W_ih x + b_ih + W_hh h + b_hh`` ``(B, 4H)``.

    i = σ(gates_i)             input gate: how much of the candidate to write
    f = σ(gates_f)             forget gate: how much of the old cell state to keep
    g = tanh(gates_g)          candidate cell state
    o = σ(gates_o)             output gate
    c' = f ⊙ c + i ⊙ g         the cell state: the "highway" the gradient travels along
    h' = o ⊙ tanh(c')
    """
    i, f, g, o = gates.chunk(4, dim=-1)  # 4 × (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_update(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """One GRU update from ``gi = W_ih x + b_ih`` and ``gh = W_hh h + b_hh`` (both ``(B, 3H)``, order r, z, n).

    r = σ(gi_r + gh_r)               reset gate
    z = σ(gi_z + gh_z)               update gate: forget and input gates merged into one
    n = tanh(gi_n + r ⊙ gh_n)        candidate state
    h' = (1 − z) ⊙ n + z ⊙ h         one state: cell and hidden state merged
    """
    i_r, i_z, i_n = gi.chunk(3, dim=-1)  # 3 × (B, H)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)  # 3 × (B, H)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # = (1 − z) ⊙ n + z ⊙ h, one operation fewer


# --------------------------------------------------------------------------------------------------------------
# The forget gate's initial bias
# --------------------------------------------------------------------------------------------------------------


def init_forget_bias(bias_ih: Tensor, bias_hh: Tensor, hidden_size: int, forget_bias: float | None) -> None:
    """Set the forget gate's total initial bias (b_ih + b_hh) to ``forget_bias``; None keeps torch's init."""
    if forget_bias is None:
        return
    with torch.no_grad():
        bias_ih[hidden_size : 2 * hidden_size].fill_(float(forget_bias))
        bias_hh[hidden_size : 2 * hidden_size].zero_()


def check_forget_bias(forget_bias: object) -> None:
    if forget_bias is not None:
        number_in("forget_bias", forget_bias, expected="a number or None (torch's init)")


# --------------------------------------------------------------------------------------------------------------
# Cells: one time step
# --------------------------------------------------------------------------------------------------------------


class _CellBase(nn.Module):
    gates: int = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        gh = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gh))
            self.bias_hh = nn.Parameter(torch.empty(gh))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias ~ U(−1/√H, 1/√H)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _zeros(self, input: Tensor) -> Tensor:
        return input.new_zeros(*input.shape[:-1], self.hidden_size)

    def _check_input(self, input: Tensor) -> None:
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ConfigError(
                f"input must have shape (B, {self.input_size}) or ({self.input_size},), got {tuple(input.shape)}"
            )

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"


class RNNCell(_CellBase):
    """Elman RNN cell: the lecture's recurrence formula, one step.

    h' = act(W_ih x + b_ih + W_hh h + b_hh),   act = tanh (default) or relu

    Shapes: x ``(B, I)``, h ``(B, H)`` → h' ``(B, H)``.
    """

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        choice("nonlinearity", nonlinearity, tuple(NONLINEARITIES))
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        self._check_input(input)
        h = self._zeros(input) if hx is None else hx
        act = NONLINEARITIES[self.nonlinearity]
        return act(F.linear(input, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(_CellBase):
    """LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate), one step.

    gates = W_ih x + b_ih + W_hh h + b_hh        (B, 4H), order i, f, g, o
    i, f, o = σ(gates_i), σ(gates_f), σ(gates_o)
    g = tanh(gates_g)
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

    ``forget_bias`` is the initial value of the forget gate's bias (b_ih + b_hh), 1.0 as in Keras: the cell then
    starts out remembering, and the gradient along c survives many steps. ``None`` keeps torch's uniform
    initialisation (forget bias ≈ 0), under which the gradient vanishes almost as fast as in a tanh RNN.

    Shapes: x ``(B, I)``, (h, c) ``(B, H)`` each → (h', c').
    """

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, forget_bias: float | None = 1.0):
        check_forget_bias(forget_bias)
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias:
            init_forget_bias(self.bias_ih, self.bias_hh, self.hidden_size, self.forget_bias)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(input)
        h, c = (self._zeros(input), self._zeros(input)) if hx is None else hx
        gates = F.linear(input, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        return lstm_update(gates, c)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_bias={self.forget_bias}"


class GRUCell(_CellBase):
    """GRU cell (Cho et al. 2014), one step: fewer gates and one state, so 3/4 of an LSTM's parameters.

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

    Shapes: x ``(B, I)``, h ``(B, H)`` → h' ``(B, H)``.
    """

    gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        self._check_input(input)
        h = self._zeros(input) if hx is None else hx
        gi = F.linear(input, self.weight_ih, self.bias_ih)  # (B, 3H)
        gh = F.linear(h, self.weight_hh, self.bias_hh)  # (B, 3H)
        return gru_update(gi, gh, h)
