"""Recurrent cells: one time step of the tanh RNN, the LSTM and the GRU, written from the lecture's equations.

The equations are written once, here (:func:`rnn_update`, :func:`lstm_update`, :func:`gru_update`): the cells
call them, and so do the hand-written BPTT scans of :mod:`dnn.layers.bptt` (the reference path of the runner in
:mod:`dnn.layers.recurrent`, which owns time, layers, direction, residuals, lengths and the carried state). The
scans call them on preallocated buffers (``inplace`` / ``out``), keeping the activations their backward passes
read. Parameters are named and shaped as torch's cells' (gate order i, f, g, o for the LSTM; r, z, n for the
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
    "rnn_update",
]

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}
_IN_PLACE = {"tanh": torch.Tensor.tanh_, "relu": torch.Tensor.relu_}


# --------------------------------------------------------------------------------------------------------------
# The equations, shared by the cells, the runner's BPTT scans (dnn.layers.bptt) and dnn.inspect
# --------------------------------------------------------------------------------------------------------------


def rnn_update(pre: Tensor, nonlinearity: str = "tanh", inplace: bool = False) -> Tensor:
    """One Elman RNN update from the pre-activation ``pre = W_ih x + b_ih + W_hh h + b_hh`` ``(B, H)``.

    h' = act(pre)              act = tanh (default) or relu

    ``inplace=True`` overwrites ``pre`` with h' (the BPTT scan's buffer; no autograd through it).
    """
    return (_IN_PLACE if inplace else NONLINEARITIES)[nonlinearity](pre)


def lstm_update(gates: Tensor, c: Tensor, out: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM update from the gate pre-activations ``gates = W_ih x + b_ih + W_hh h + b_hh`` ``(B, 4H)``.

    i = σ(gates_i)             input gate: how much of the candidate to write
    f = σ(gates_f)             forget gate: how much of the old cell state to keep
    g = tanh(gates_g)          candidate cell state
    o = σ(gates_o)             output gate
    c' = f ⊙ c + i ⊙ g         the cell state: the "highway" the gradient travels along
    h' = o ⊙ tanh(c')

    Returns ``(h', c')``. Without ``out`` every result is a new tensor (autograd differentiates it). With
    ``out = (c', tanh c', h')``, three ``(B, H)`` buffers, the update runs in place for the BPTT scan: ``gates``
    is overwritten with i, f, g, o (what the scan's backward reads, with tanh c') and the results go into ``out``.
    """
    H = gates.shape[-1] // 4
    c_new, tanh_c, h_new = (None, None, None) if out is None else out
    pre_if, pre_g, pre_o = gates.tensor_split((2 * H, 3 * H), dim=-1)
    keep = out is not None  # squash the gates where they are
    i, f = torch.sigmoid(pre_if, out=pre_if if keep else None).chunk(2, dim=-1)
    g = torch.tanh(pre_g, out=pre_g if keep else None)
    o = torch.sigmoid(pre_o, out=pre_o if keep else None)
    c_new = torch.addcmul(torch.mul(f, c, out=c_new), i, g, out=c_new)  # c' = f ⊙ c + i ⊙ g
    tanh_c = torch.tanh(c_new, out=tanh_c)
    return torch.mul(o, tanh_c, out=h_new), c_new


def gru_update(gi: Tensor, gh: Tensor, h: Tensor, out: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """One GRU update from ``gi = W_ih x + b_ih`` and ``gh = W_hh h + b_hh`` (both ``(B, 3H)``, order r, z, n).

    r = σ(gi_r + gh_r)               reset gate
    z = σ(gi_z + gh_z)               update gate: forget and input gates merged into one
    n = tanh(gi_n + r ⊙ gh_n)        candidate state
    h' = (1 − z) ⊙ n + z ⊙ h         one state: cell and hidden state merged

    Returns h'. Without ``out`` every result is a new tensor (autograd differentiates it). With
    ``out = ([r; z] (B, 2H), n (B, H), h' (B, H), scratch (B, H))`` the update writes into those buffers, for the
    BPTT scan, whose backward reads r, z and n.
    """
    H = gh.shape[-1] // 3
    rz_out, n_out, h_new, scratch = (None, None, None, None) if out is None else out
    gi_rz, gi_n = gi.tensor_split((2 * H,), dim=-1)
    gh_rz, gh_n = gh.tensor_split((2 * H,), dim=-1)
    rz = torch.sigmoid(torch.add(gi_rz, gh_rz, out=rz_out), out=rz_out)  # r, z
    r, z = rz.chunk(2, dim=-1)
    n = torch.tanh(torch.addcmul(gi_n, r, gh_n, out=n_out), out=n_out)  # n = tanh(gi_n + r ⊙ gh_n)
    return torch.addcmul(n, z, torch.sub(h, n, out=scratch), out=h_new)  # = (1 − z) ⊙ n + z ⊙ h, one op fewer


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
        pre = F.linear(input, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        return rnn_update(pre, self.nonlinearity)

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
