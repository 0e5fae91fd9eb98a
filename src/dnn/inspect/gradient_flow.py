"""Gradient flow through time: ‖∂L/∂h_t‖ against the distance from the loss.

The lecture's claim — the gradient of a tanh RNN vanishes over time because each step multiplies it by
W_hhᵀ·diag(tanh'), while the LSTM's cell state carries it along a "highway" scaled only by the forget gate — is
measured here directly: run the recurrence step by step under autograd, keep every state, and read the gradient
of the loss that reaches each of them.

Two entry points:

- :func:`gradient_norms_through_time` — one cell, a sequence, the loss on the last step (the lecture's set-up);
- :func:`gradient_flow` — a whole model (a trained run's, say) and the real loss of a real batch: every
  recurrent stack (dnn's :class:`~dnn.layers.recurrent.RNN`, ``LSTM``, ``GRU``) in it is re-run step by step
  on the same inputs and weights (its output is unchanged), and the total gradient ∂L/∂h_t — through the
  layer's output and through the next step — is read per layer and direction, against the distance
  k = n − 1 − s of step s from the sequence's own last step (in the order the direction reads it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.layers.recurrent import (
    GRU,
    LSTM,
    NONLINEARITIES,
    RNN,
    GRUCell,
    LSTMCell,
    RNNCell,
    gru_update,
    lstm_update,
)

__all__ = ["GradientFlow", "gradient_flow", "gradient_norms_through_time", "recurrent_stacks"]

TABLE_DISTANCES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


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


# --------------------------------------------------------------------------------------------------------------
# A whole model on a real batch
# --------------------------------------------------------------------------------------------------------------


@dataclass
class GradientFlow:
    """‖∂L/∂h_t‖ per recurrent layer (and direction; ``c`` for an LSTM's cell state) by distance from the end.

    ``norms[label][k]`` is the norm over the hidden units at distance k = n − 1 − s from each sequence's last
    step, averaged over the sequences of the batch long enough to have one (``counts[k]`` of them).
    """

    norms: dict[str, list[float]]
    counts: list[int]
    loss: float
    labels: list[str] = field(default_factory=list)  # curves in drawing order (= the keys of norms)

    def ratio(self, label: str, distance: int, reference: int = 1) -> float:
        """norm at ``distance`` ÷ norm at ``reference``: below 1, the gradient fades on its way back."""
        curve = self.norms[label]
        if max(distance, reference) >= len(curve):
            longest = max(distance, reference)
            raise ConfigError(f"distance must be below the sequence length {len(curve)}, got {longest}")
        return curve[distance] / curve[reference] if curve[reference] else float("nan")

    def table(self, distances: Sequence[int] = TABLE_DISTANCES) -> list[dict[str, float | int]]:
        """Rows ``{"distance": k, "sequences": counts[k], label: norm, …}`` at the ``distances`` that exist."""
        return [
            {"distance": k, "sequences": self.counts[k], **{label: self.norms[label][k] for label in self.labels}}
            for k in distances
            if k < len(self.counts)
        ]


def recurrent_stacks(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The dnn recurrent stacks (:class:`RNN`, :class:`LSTM`, :class:`GRU`) inside ``module``, by name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, (RNN, LSTM, GRU))]


def gradient_flow(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], modules: nn.Module | None = None
                  ) -> GradientFlow:  # fmt: skip
    """Trace the recurrent stacks in ``modules`` (default: the whole ``model``) while ``loss_fn(model)`` runs once.

    Each stack's forward is recomputed step by step by autograd on the same input, state, lengths and weights
    (a forward hook replaces its output with the identical traced one), then ``∂L/∂h_t`` is taken for every
    step with :func:`torch.autograd.grad` — the parameters' ``.grad`` stay untouched. The model runs in eval
    mode (no dropout) and gets its mode back. Only the first call of each stack is traced (an encoder; a
    decoder stepping one token per call would show nothing).

        δh_t = ∂L/∂h_t = ∂L/∂o_t (this step's output, used above) + (∂h_{t+1}/∂h_t)ᵀ δh_{t+1}

    Example::

        flow = gradient_flow(model, lambda m: F.mse_loss(m(x), y))
        flow.ratio("layer 1", 50)          # ‖δh‖ 50 steps back ÷ 1 step back
    """
    stacks = recurrent_stacks(model if modules is None else modules)
    if not stacks:
        raise ConfigError(f"{type(model).__name__} has no dnn RNN / LSTM / GRU layer whose gradient flow to trace")
    traces: dict[str, list[_Trace]] = {name: [] for name, _ in stacks}
    handles = [
        m.register_forward_hook(_TraceHook(traces[name]), with_kwargs=True) for name, m in stacks
    ]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            loss = loss_fn(model)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    traced = [(name, calls[0]) for name, calls in traces.items() if calls]
    if not traced:
        raise ConfigError("the loss never ran a recurrent layer of the model: nothing to trace")
    # the gradient reaching each step's own state tensor: through the output and through the next step
    states = [h for _, trace in traced for _, steps in trace.states for h in steps]
    grads = iter(torch.autograd.grad(loss, states, allow_unused=True))
    norms: dict[str, list[float]] = {}
    counts: list[int] = []
    for name, trace in traced:
        prefix = f"{name} " if len(traced) > 1 else ""
        for label, steps in trace.states:
            g = [next(grads) for _ in steps]
            g = torch.stack([torch.zeros_like(h) if d is None else d for h, d in zip(steps, g)])  # (T, B, H)
            norms[prefix + label], counts = _by_distance(g.double().norm(dim=-1), trace.lengths)
    return GradientFlow(norms, counts, float(loss.detach()), list(norms))


def _by_distance(norms: Tensor, lengths: Tensor) -> tuple[list[float], list[int]]:
    """Per distance k: the mean over sequences b with n_b > k of ``norms[n_b − 1 − k, b]``, and their number."""
    B = norms.shape[1]
    columns = torch.arange(B)
    curve, counts = [], []
    for k in range(int(lengths.max())):
        steps = lengths - 1 - k  # (B,)
        real = steps >= 0
        curve.append(float(norms[steps.clamp_min(0), columns][real].mean()))
        counts.append(int(real.sum()))
    return curve, counts


@dataclass
class _Trace:
    """One traced call of a stack: per layer and direction, its states ``(B, H)`` in processing order."""

    states: list[tuple[str, list[Tensor]]]
    lengths: Tensor  # (B,)


class _TraceHook:
    """Forward hook: recompute a stack's output step by step and record its states (see :func:`gradient_flow`)."""

    def __init__(self, calls: list[_Trace]):
        self.calls = calls

    def __call__(self, rnn, args, kwargs, output):
        if self.calls:  # traced already: this later call stays as it is
            return output
        bound = {**dict(zip(("input", "hx", "lengths"), args)), **kwargs}
        input, lengths = bound["input"], bound.get("lengths")
        batched = input.dim() == 3
        T = input.shape[1] if rnn.batch_first and batched else input.shape[0]
        B = input.shape[0 if rnn.batch_first else 1] if batched else 1
        lengths = torch.full((B,), T) if lengths is None else torch.as_tensor(lengths).cpu()
        D = rnn.num_directions
        recorded: list[tuple[str, list[Tensor]]] = []

        def scan(layer: int, direction: int, seq: Tensor, layer_state, weights, mask):
            y, final, hs, cs = _traced_scan(rnn, seq, layer_state, weights, mask)
            label = f"layer {layer + 1}" + ("" if D == 1 else (" →" if direction == 0 else " ←"))
            recorded.append((label, hs))
            if cs:
                recorded.append((label + " cell state c", cs))
            return y, final

        traced = rnn.trace(input, bound.get("hx"), lengths, scan=scan)  # the runner's own stack, every step recorded
        self.calls.append(_Trace(recorded, lengths))
        return traced


def _traced_scan(rnn, seq: Tensor, state: tuple[Tensor, ...], weights: list[Tensor], mask: Tensor):
    """One layer, one direction, step by step: the output ``(T, B, H)``, the final state, and the new states
    h_t (and c_t for the LSTM, else []) of every step, each ``(B, H)``.

    The cell equations (:func:`~dnn.layers.recurrent.lstm_update`, :func:`~dnn.layers.recurrent.gru_update`,
    h' = act(W_ih x + b_ih + W_hh h + b_hh)); a padded step carries the state through unchanged. The recorded
    states are the ones the step computes, before the padding mask: at a real step every later use of the state
    (this step's output and h_t, the next step) starts from them, so their gradient is the total ∂L/∂h_t.
    """
    w_ih, w_hh, b_ih, b_hh = weights if rnn.bias else (*weights, None, None)
    gi = F.linear(seq, w_ih, b_ih)  # (T, B, G·H)
    h, c = state[0], (state[1] if rnn.mode == "LSTM" else None)
    outs, hs, cs = [], [], []
    for t in range(seq.shape[0]):
        gh = F.linear(h, w_hh, b_hh)  # (B, G·H)
        if rnn.mode == "LSTM":
            h_new, c_new = lstm_update(gi[t] + gh, c)
            c = torch.where(mask[t], c_new, c)
            cs.append(c_new)
        elif rnn.mode == "GRU":
            h_new = gru_update(gi[t], gh, h)
        else:
            h_new = NONLINEARITIES["relu" if rnn.mode == "RNN_RELU" else "tanh"](gi[t] + gh)
        h = torch.where(mask[t], h_new, h)
        hs.append(h_new)
        outs.append(h)
    return torch.stack(outs), ((h,) if c is None else (h, c)), hs, cs
