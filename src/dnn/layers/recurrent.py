"""Recurrent layers written from the lecture's equations: RNN, LSTM and GRU.

A *cell* is one time step. The *runner* (:class:`RNN`, :class:`LSTM`, :class:`GRU`) owns time, stacked layers,
direction, residual or dense connections, dropout between layers, variable lengths and the carried state.

Connections between stacked layers (o_k the output of layer k, o_{−1} = x the input)::

    plain:     o_k = rnn_k(o_{k−1})
    residual:  o_k = rnn_k(o_{k−1}) + o_{k−1}                     k ≥ 1 (skip connections, He et al. 2016)
    dense:     o_k = rnn_k([x; o_0; …; o_{k−1}])                  DenseNet-style (Huang et al. 2017): layer k
                                                                  reads the input and every earlier output, so
                                                                  weight_ih_l{k} is (G·H, I + k·D·H)

The stack's output is the top layer's o_{L−1} in every case. Dropout (``dropout``) acts on each layer's output
before a later layer reads it; under ``dense`` a layer's output is dropped once and every later layer reads the
same dropped copy.

Parameters are named and shaped exactly as torch's (``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``; gate order i, f, g, o for the LSTM and r, z, n for the GRU), so a
``torch.nn.LSTM``'s ``state_dict`` loads into ours with ``strict=True`` and back, and torch's modules are the
test oracle.

Two implementations run the same parameters (both in :mod:`dnn.layers.recurrent_kernels`):

- ``"reference"`` — step by step in Python through the kernels of :mod:`dnn.layers.bptt`, which run the same
  equations as the cells (:func:`lstm_update`, :func:`gru_update`) with the gradient through time written out by
  hand. The input projection of all steps is one matmul; each step is one matmul for the recurrence plus the
  gate arithmetic. The cells themselves (:class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell`) are the one-step
  modules, checked against torch's.
- ``"fused"`` — torch's native kernel (``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh``) on our parameters,
  with packing for ``lengths``.

``"auto"`` (the default) picks whichever was measured faster for the batch (:func:`scan_is_faster`): in training on
a CPU the reference path for the GRU and for padded batches with little padding, ``"fused"`` otherwise. Every
configuration, ``residual`` and ``dense`` included, runs fused (a residual or dense stack calls the kernel one layer
at a time).

Shapes (time-major unless ``batch_first``): input ``(T, B, I)``, output ``(T, B, D·H)``, states
``(L·D, B, H)`` with L layers and D = 2 if bidirectional else 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dnn.checks import choice, number_in, positive_int
from dnn.errors import ConfigError
from dnn.layers.cells import (
    NONLINEARITIES,
    GRUCell,
    LSTMCell,
    RNNCell,
    check_forget_bias,
    gru_update,
    init_forget_bias,
    lstm_update,
)
from dnn.layers.recurrent_kernels import (
    check_lengths,
    fused_kernel,
    length_masks,
    reverse_in_time,
    scan_is_faster,
    scan_layer,
)

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "gru_update",
    "lstm_update",
]

IMPLEMENTATIONS = ("auto", "reference", "fused")
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# --------------------------------------------------------------------------------------------------------------
# The runner: time, layers, directions, residual and dense connections, lengths
# --------------------------------------------------------------------------------------------------------------


class _RecurrentBase(nn.Module):
    """Shared runner of :class:`RNN`, :class:`LSTM` and :class:`GRU` (see the module docstring)."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        residual: bool,
        dense: bool,
        implementation: str,
    ):
        super().__init__()
        self.mode = mode
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        number_in("dropout", dropout, 0, 1)
        choice("implementation", implementation, IMPLEMENTATIONS)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.residual = bool(residual)
        self.dense = bool(dense)
        if self.residual and self.dense:
            raise ConfigError(
                "residual and dense exclude each other (a layer adds its input, or reads every earlier output); "
                "got residual=True, dense=True"
            )
        self.implementation = implementation
        self.num_directions = 2 if bidirectional else 1

        gh = GATES[mode] * hidden_size
        self._weight_names: list[list[list[str]]] = []  # [layer][direction] -> names in torch's flat order
        for layer in range(num_layers):
            DH = hidden_size * self.num_directions
            if self.dense:
                layer_input = input_size + layer * DH  # [x; o_0; …; o_{k−1}]
            else:
                layer_input = input_size if layer == 0 else DH  # o_{k−1}
            per_direction = []
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (gh, layer_input), "weight_hh": (gh, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gh,), bias_hh=(gh,))
                names = []
                for kind, shape in shapes.items():
                    self.register_parameter(kind + suffix, nn.Parameter(torch.empty(shape)))
                    names.append(kind + suffix)
                per_direction.append(names)
            self._weight_names.append(per_direction)
        self.reset_parameters()

    # -- parameters ------------------------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias ~ U(−1/√H, 1/√H)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self, layer: int, direction: int) -> list[Tensor]:
        return [getattr(self, name) for name in self._weight_names[layer][direction]]

    def _flat_weights(self) -> list[Tensor]:
        return [
            w for per_direction in self._weight_names for names in per_direction for w in map(self.__getattr__, names)
        ]

    @property
    def uses_fused(self) -> bool:
        """Whether forward may run torch's native kernel ("fused" or "auto") rather than only our step-by-step
        cells ("reference"); which one "auto" runs for a given batch: :func:`scan_is_faster`."""
        return self.implementation != "reference"

    def _runs_fused(self, x: Tensor, lengths: Tensor | None) -> bool:
        if self.implementation != "auto":
            return self.implementation == "fused"
        training = torch.is_grad_enabled() and any(w.requires_grad for w in self._flat_weights())
        return not scan_is_faster(self.mode, x, lengths, training)

    # -- forward -----------------------------------------------------------------------------------------------

    def forward(self, input: Tensor, hx=None, lengths: Tensor | None = None):
        """Run the stack over a sequence.

        Args:
            input: ``(T, B, I)`` (``(B, T, I)`` if ``batch_first``), or unbatched ``(T, I)``.
            hx: initial state in torch's shapes, ``(L·D, B, H)`` (LSTM: a tuple ``(h_0, c_0)``); zeros if None.
            lengths: ``(B,)`` true lengths of a padded batch. Outputs past a sequence's length are exactly 0, its
                final state is the state at its own last step, and the reverse direction starts there.

        Returns:
            ``(output, h_n)``; for the LSTM ``(output, (h_n, c_n))``. output ``(T, B, D·H)``.
        """
        return self._run(input, hx, lengths, scan=None)

    def trace(self, input: Tensor, hx=None, lengths: Tensor | None = None, *, scan):
        """:meth:`forward` through the step-by-step path, with ``scan`` running each layer in each direction.

        ``scan(layer, direction, seq (T, B, I), state, weights, mask (T, B, 1)) -> (output (T, B, H), final
        state)`` replaces the built-in recurrence of one layer in one direction; the stack around it (layers,
        directions, residual or dense connections, dropout, lengths) is this runner's own. ``mask`` is always given
        (every step is real when ``lengths`` is None). :mod:`dnn.inspect.gradient_flow` records every state h_t
        with it.
        """
        return self._run(input, hx, lengths, scan=scan)

    def _run(self, input: Tensor, hx, lengths: Tensor | None, scan):
        batched = input.dim() == 3
        self._check_input(input)
        if not batched:
            input = input.unsqueeze(1)  # (T, 1, I)
            if lengths is not None:
                raise ConfigError("lengths is only supported for batched input (T, B, I)")
        x = input.transpose(0, 1) if self.batch_first and batched else input  # (T, B, I)
        T, B = x.shape[0], x.shape[1]
        state = self._initial_state(x, hx, batched)
        if scan is not None:  # traced: every step masked, real ones included
            lengths = torch.full((B,), T) if lengths is None else check_lengths(lengths, T, B)
            output, state = self._forward_reference(x, state, lengths, scan)
        else:
            if lengths is not None:
                lengths = check_lengths(lengths, T, B)
                if int(lengths.min()) == T:  # nothing is padding: packing would only cost time (~5× here)
                    lengths = None
            if self._runs_fused(x, lengths):
                output, state = self._forward_fused(x, state, lengths)
            else:
                output, state = self._forward_reference(x, state, lengths)
        if not batched:
            output = output.squeeze(1)
            state = tuple(s.squeeze(1) for s in state)
        elif self.batch_first:
            output = output.transpose(0, 1)  # (B, T, D·H)
        return output, (state if self.mode == "LSTM" else state[0])

    def _check_input(self, input: Tensor) -> None:
        if input.dim() not in (2, 3):
            raise ConfigError(
                f"input must be 3-D (T, B, I) or (B, T, I) with batch_first, or 2-D (T, I); got {input.dim()}-D"
            )
        if input.shape[-1] != self.input_size:
            raise ConfigError(f"input's last dimension must be input_size={self.input_size}, got {input.shape[-1]}")

    def _initial_state(self, x: Tensor, hx, batched: bool) -> tuple[Tensor, ...]:
        LD, B, H = self.num_layers * self.num_directions, x.shape[1], self.hidden_size
        n_states = 2 if self.mode == "LSTM" else 1
        if hx is None:
            zeros = x.new_zeros(LD, B, H)
            return (zeros,) * n_states
        states = tuple(hx) if self.mode == "LSTM" else (hx,)
        if len(states) != n_states or not all(isinstance(s, Tensor) for s in states):
            raise ConfigError("hx for an LSTM must be a tuple (h_0, c_0) of tensors")
        expected = (LD, B, H) if batched else (LD, H)
        for name, s in zip(("h_0", "c_0"), states):
            if tuple(s.shape) != expected:
                raise ConfigError(f"{name} must have shape {expected} (L·D, B, H), got {tuple(s.shape)}")
        return states if batched else tuple(s.unsqueeze(1) for s in states)

    # -- fused: torch's kernel on our parameters -----------------------------------------------------------------

    def _forward_fused(self, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None):
        T = x.shape[0]
        if lengths is not None:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            x, batch_sizes = packed.data, packed.batch_sizes  # x: (sum of lengths, I)
            state = tuple(s.index_select(1, packed.sorted_indices.to(s.device)) for s in state)
        else:
            batch_sizes = None
        if not (self.residual or self.dense):
            out, state = fused_kernel(self.mode, self.bias, self.training, x, batch_sizes, state, self._flat_weights(),
                                      self.num_layers, self.dropout, self.bidirectional)  # fmt: skip
        else:  # one kernel call per layer, with the skip or dense connections between them
            D, finals, features = self.num_directions, [], [x]
            for layer in range(self.num_layers):
                layer_in = self._layer_input(layer, features)  # packed data: (N, I_k), N = Σ lengths
                weights = [w for d in range(D) for w in self._weights(layer, d)]
                layer_state = tuple(s[layer * D : (layer + 1) * D] for s in state)
                out, final = fused_kernel(self.mode, self.bias, self.training, layer_in, batch_sizes, layer_state,
                                          weights, 1, 0.0, self.bidirectional)  # fmt: skip
                out = self._layer_output(layer, out, layer_in, features)
                finals.append(final)
            state = tuple(torch.cat(parts, 0) for parts in zip(*finals))
        if lengths is not None:
            packed = packed._replace(data=out)
            out, _ = pad_packed_sequence(packed, total_length=T)  # (T, B, D·H), zeros past each length
            state = tuple(s.index_select(1, packed.unsorted_indices.to(s.device)) for s in state)
        return out, state

    # -- reference: our cells, step by step ------------------------------------------------------------------

    def _forward_reference(self, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None, scan=None):
        """``scan(layer, direction, seq, state, weights, mask) -> (output, final state)`` runs one layer in one
        direction (default :func:`scan_layer`; :meth:`trace` passes the caller's)."""
        T = x.shape[0]
        D = self.num_directions
        reverse_index, mask = length_masks(lengths, T, x.device)  # (T, B), (T, B, 1); None without lengths

        finals, features = [], [x]
        for layer in range(self.num_layers):
            layer_in = self._layer_input(layer, features)  # (T, B, I_k)
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                seq = layer_in if direction == 0 else reverse_in_time(layer_in, reverse_index)
                layer_state, weights = tuple(s[k] for s in state), self._weights(layer, direction)
                if scan is None:
                    y, final = scan_layer(self.mode, self.bias, seq, layer_state, weights, mask)
                else:
                    y, final = scan(layer, direction, seq, layer_state, weights, mask)
                outputs.append(y if direction == 0 else reverse_in_time(y, reverse_index))
                finals.append(final)
            out = outputs[0] if D == 1 else torch.cat(outputs, dim=-1)  # (T, B, D·H)
            out = self._layer_output(layer, out, layer_in, features)
        if mask is not None:
            out = out.masked_fill(~mask, 0.0)
        state = tuple(torch.stack(parts, 0) for parts in zip(*finals))  # (L·D, B, H) each
        return out, state

    # -- between layers: plain, residual, dense -------------------------------------------------------------------

    def _layer_input(self, layer: int, features: list[Tensor]) -> Tensor:
        """What layer k reads: x for k = 0; [x; o_0; …; o_{k−1}] (dense); o_{k−1} otherwise.

        ``features`` holds x and the outputs of the layers so far, each already through dropout.
        """
        if layer > 0 and self.dense:
            return torch.cat(features, dim=-1)  # (…, I + k·D·H)
        return features[-1]

    def _layer_output(self, layer: int, out: Tensor, layer_in: Tensor, features: list[Tensor]) -> Tensor:
        """o_k (+ o_{k−1} with residual, k ≥ 1); appends it to ``features``, through dropout unless it is the top
        layer's. Returns the layer's output before dropout (the stack's output when k is the top layer)."""
        if self.residual and layer > 0:
            out = out + layer_in
        read_later = layer < self.num_layers - 1
        dropped = F.dropout(out, self.dropout, self.training) if read_later and self.dropout > 0 else out
        if self.dense:
            features.append(dropped)
        else:
            features[:] = [dropped]  # a plain or residual layer reads its predecessor only
        return out

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in [
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
            ("residual", False),
            ("dense", False),
            ("implementation", "auto"),
        ]:
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s


class RNN(_RecurrentBase):
    """Multi-layer Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh), act = tanh or relu.

    torch's arguments and parameter names, plus ``residual`` (skip connections between stacked layers: layer
    k ≥ 1 outputs rnn_k(x) + x) or ``dense`` (layer k reads the input and every earlier layer's output) and
    ``lengths`` in :meth:`forward`. See the module docstring.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        residual: bool = False,
        dense: bool = False,
        implementation: str = "auto",
    ):
        choice("nonlinearity", nonlinearity, tuple(NONLINEARITIES))
        self.nonlinearity = nonlinearity
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, residual,
            dense, implementation,
        )  # fmt: skip

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"


class LSTM(_RecurrentBase):
    """Multi-layer LSTM; each step is :class:`LSTMCell`'s equations (h_t = o_t ⊙ tanh(c_t)).

    torch's arguments and parameter names, plus ``forget_bias`` (initial forget-gate bias, 1.0 as in Keras;
    ``None`` keeps torch's init), ``residual`` or ``dense`` and ``lengths`` in :meth:`forward`. Returns
    ``(output, (h_n, c_n))``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        residual: bool = False,
        dense: bool = False,
        forget_bias: float | None = 1.0,
        implementation: str = "auto",
    ):
        check_forget_bias(forget_bias)
        self.forget_bias = forget_bias
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, residual,
            dense, implementation,
        )  # fmt: skip

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias:
            for per_direction in self._weight_names:
                for _, _, b_ih, b_hh in (map(self.__getattr__, names) for names in per_direction):
                    init_forget_bias(b_ih, b_hh, self.hidden_size, self.forget_bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_bias={self.forget_bias}"


class GRU(_RecurrentBase):
    """Multi-layer GRU; each step is :class:`GRUCell`'s equations. 3/4 of an LSTM's parameters.

    torch's arguments and parameter names, plus ``residual`` or ``dense`` and ``lengths`` in :meth:`forward`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        residual: bool = False,
        dense: bool = False,
        implementation: str = "auto",
    ):
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, residual,
            dense, implementation,
        )  # fmt: skip
