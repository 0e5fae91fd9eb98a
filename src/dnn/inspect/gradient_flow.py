"""Gradient flow through time: ‖∂L/∂h_t‖ against the distance from the loss.

The lecture's claim — the gradient of a tanh RNN vanishes over time because each step multiplies it by
W_hhᵀ·diag(tanh'), while the LSTM's cell state carries it along a "highway" scaled only by the forget gate — is
measured here directly: run a cell step by step under autograd, keep every state, put the loss on the last step
and read the gradient that reaches each earlier state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.layers.recurrent import GRUCell, LSTMCell, RNNCell


def gradient_norms_through_time(cell: nn.Module, inputs: Tensor, loss_fn=None) -> dict[str, Tensor]:
    """‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖ for an LSTM) for every step t of ``inputs (T, B, I)``.

    The loss is ``loss_fn(h_T)`` (default: the sum of the last hidden state), so the gradient at step t has
    travelled T − t steps. Returns ``{"h": (T,), "c": (T,)}``: the norm over the hidden units, averaged over the
    batch; index −1 is the last step (distance 0), index −1−k lies k steps back.
    """
    if not isinstance(cell, (RNNCell, LSTMCell, GRUCell)):
        raise ConfigError(f"cell must be a dnn RNNCell, LSTMCell or GRUCell, got {type(cell).__name__}")
    if inputs.dim() != 3:
        raise ConfigError(f"inputs must have shape (T, B, I), got {tuple(inputs.shape)}")
    T, B, _ = inputs.shape
    h = inputs.new_zeros(B, cell.hidden_size)
    c = inputs.new_zeros(B, cell.hidden_size)
    hs, cs = [], []
    for t in range(T):
        if isinstance(cell, LSTMCell):
            h, c = cell(inputs[t], (h, c))
            c.retain_grad()
            cs.append(c)
        else:
            h = cell(inputs[t], h)
        h.retain_grad()
        hs.append(h)
    loss = h.sum() if loss_fn is None else loss_fn(h)
    loss.backward()
    # in float64: the squares of a vanished gradient (~1e-20) underflow float32 and would read as exactly 0
    norms = {"h": torch.stack([x.grad.double().norm(dim=-1).mean() for x in hs])}
    if cs:
        norms["c"] = torch.stack([x.grad.double().norm(dim=-1).mean() for x in cs])
    return norms
