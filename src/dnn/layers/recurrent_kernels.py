"""One recurrent layer over a padded batch, as the runner (:mod:`dnn.layers.recurrent`) calls it.

Two ways to run the same parameters (torch's names and flat order: ``w_ih, w_hh[, b_ih, b_hh]`` per layer and
direction):

- :func:`scan_layer` — one layer in one direction, step by step: the input projection of every step is one
  matmul, the recurrence runs in :mod:`dnn.layers.bptt` with the gradient through time written out by hand;
- :func:`fused_kernel` — torch's native kernel (``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh`` /
  ``torch.rnn_relu``), one or more layers at once, on packed data when the batch has lengths.

And the bookkeeping of variable lengths: :func:`check_lengths`, :func:`length_masks` (which steps are real, and
where each step of a sequence reversed within its own length comes from) and :func:`reverse_in_time`.
Shapes: ``seq (T, B, I)``, outputs ``(T, B, H)``, states ``(B, H)`` per layer and direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dnn.device import run_in_fp32
from dnn.errors import ConfigError
from dnn.layers.bptt import gru_scan, lstm_scan, rnn_scan

__all__ = ["check_lengths", "fused_kernel", "length_masks", "reverse_in_time", "scan_is_faster", "scan_layer"]

KERNELS = {"LSTM": torch.lstm, "GRU": torch.gru, "RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu}
SCAN_MAX_PADDING = 0.2  # "auto" trains on the scan only while at most this share of a padded batch's steps is padding


def scan_is_faster(mode: str, x: Tensor, lengths: Tensor | None, training: bool) -> bool:
    """Whether ``implementation="auto"`` runs :func:`scan_layer` rather than torch's kernel, from measurements.

    Training (autograd recording) on a CPU in float32/float64 without autocast, the scan — the backward pass
    written out, the weight gradients as one product over all steps — against torch's kernels
    (``benchmarks/recurrent_paths.py`` → ``benchmarks/RECURRENT-PATHS.md``: batch 32 and 128, hidden 64–512, 10 and
    40 steps, 1 and 2 threads; speed-up = torch's time ÷ the scan's, median and range):

    - a padded batch with 6–8% padding (lengths within 6 of 40 steps): GRU 1.34× / 1.39× (bidirectional / one way;
      1.13–1.74×), LSTM 1.30× / 1.36× (1.14–1.57×): torch runs a packed batch step by step outside oneDNN;
    - the same with 26–32% padding (10 steps): GRU 0.87× / 0.94×, LSTM 0.91× / 0.94× — the scan computes padded
      steps too, so past :data:`SCAN_MAX_PADDING` torch's packed kernel runs;
    - without lengths: GRU 1.05× (0.91–1.39×; torch has no fused GRU on a CPU), LSTM 0.73× (0.42–0.87×: oneDNN's
      LSTM) — so the GRU takes the scan and the LSTM stays with torch.

    Inference (no gradient) stays with torch's kernels, which keep no activations.
    """
    if not training or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_autocast_enabled("cpu") or mode not in ("GRU", "LSTM"):
        return False
    if lengths is None:
        return mode == "GRU"
    padding = 1.0 - float(lengths.sum()) / (x.shape[0] * x.shape[1])
    return padding <= SCAN_MAX_PADDING


def check_lengths(lengths: Tensor, T: int, B: int) -> Tensor:
    """``lengths`` as a CPU int64 tensor ``(B,)``, each in [1, T]; a ConfigError saying what is wrong otherwise."""
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (B,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ConfigError(
            f"lengths must be an integer tensor of shape ({B},), got {tuple(lengths.shape)} {lengths.dtype}"
        )
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > T:
        raise ConfigError(f"lengths must lie in [1, {T}] (the padded length), got values in [{lo}, {hi}]")
    return lengths.to(device="cpu", dtype=torch.int64)


def length_masks(lengths: Tensor | None, T: int, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """``(reverse_index (T, B), mask (T, B, 1))`` on ``device`` for a padded batch; ``(None, None)`` without
    lengths. ``mask`` is True at the real steps."""
    if lengths is None:
        return None, None
    steps = torch.arange(T).unsqueeze(1)  # (T, 1)
    valid = (steps < lengths.unsqueeze(0)).to(device)  # (T, B)
    # position t of the reversed sequence b is position lengths[b] − 1 − t (padding stays in place)
    reverse_index = torch.where(valid.cpu(), lengths.unsqueeze(0) - 1 - steps, steps).to(device)  # (T, B)
    return reverse_index, valid.unsqueeze(-1)  # (T, B, 1)


def reverse_in_time(seq: Tensor, reverse_index: Tensor | None) -> Tensor:
    """Reverse each sequence in time within its own length (an involution)."""
    if reverse_index is None:
        return seq.flip(0)
    return seq.gather(0, reverse_index.unsqueeze(-1).expand_as(seq))  # (T, B, F)


def scan_layer(mode: str, bias: bool, seq: Tensor, state: tuple[Tensor, ...], weights: list[Tensor],
               mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:  # fmt: skip
    """One layer, one direction: ``seq (T, B, I)`` → outputs ``(T, B, H)`` and the final state.

    The input projection of every step is one matmul (differentiated by autograd); the recurrence runs in
    :mod:`dnn.layers.bptt`, one matmul per step forward and one backward, with the gradient through time
    written out by hand. Where ``mask`` says a step is padding, the state is carried through unchanged.
    """
    if bias:
        w_ih, w_hh, b_ih, b_hh = weights
    else:
        (w_ih, w_hh), b_ih, b_hh = weights, None, None
    if mode == "LSTM":
        gi = F.linear(seq, w_ih, None if b_ih is None else b_ih + b_hh)  # (T, B, 4H): both biases folded in
        out, h, c = lstm_scan(gi, state[0], state[1], w_hh, mask)
        return out, (h, c)
    if mode == "GRU":
        gi = F.linear(seq, w_ih, b_ih)  # (T, B, 3H); b_hh stays inside r ⊙ (W_hn h + b_hn)
        out, h = gru_scan(gi, state[0], w_hh, b_hh, mask)
        return out, (h,)
    gi = F.linear(seq, w_ih, None if b_ih is None else b_ih + b_hh)  # (T, B, H)
    out, h = rnn_scan(gi, state[0], w_hh, mask, relu=mode == "RNN_RELU")
    return out, (h,)


def fused_kernel(mode: str, bias: bool, train: bool, x: Tensor, batch_sizes: Tensor | None,
                 state: tuple[Tensor, ...], weights: list[Tensor], num_layers: int, dropout: float,
                 bidirectional: bool) -> tuple[Tensor, tuple[Tensor, ...]]:  # fmt: skip
    """torch's kernel for ``mode`` on ``weights``: ``x (T, B, I)``, or packed data ``(N, I)`` with its
    ``batch_sizes``, → ``(output, final state)``; ``train`` turns the dropout between its layers on."""
    kernel = KERNELS[mode]
    hx = list(state) if mode == "LSTM" else state[0]

    def run(x, hx, weights):
        if batch_sizes is None:
            return kernel(x, hx, weights, bias, num_layers, dropout, train, bidirectional, False)
        return kernel(x, batch_sizes, hx, weights, bias, num_layers, dropout, train, bidirectional)

    # a device without this cell's low-precision kernel (oneDNN's LSTM in fp16 on most CPUs) runs it in fp32
    result = run_in_fp32(mode, x.device, run, x, hx, weights)
    return result[0], tuple(result[1:])
