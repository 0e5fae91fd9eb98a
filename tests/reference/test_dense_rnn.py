"""Dense connections between stacked layers (``dense=True``): layer k reads [x; o_0; …; o_{k−1}].

The twin is a stack of torch's own single-layer modules, each fed the concatenation of the input and the outputs of
the layers below it, with the weights of our layer k copied into torch's layer 0. Outputs, final states and every
gradient must agree, through our fused path and our step-by-step reference path alike.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dnn.errors import ConfigError
from dnn.inspect import gradient_flow
from dnn.layers.recurrent import GRU, LSTM, RNN
from dnn.models import create_model, model_config

I, H, T, B, L = 3, 4, 6, 3, 3
LENGTHS = torch.tensor([6, 2, 4])
OURS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
SUFFIXES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def dense_stack(kind: str, bidirectional: bool, implementation: str = "auto", seed: int = 0):
    torch.manual_seed(seed)
    return OURS[kind](I, H, num_layers=L, bidirectional=bidirectional, dense=True, implementation=implementation)


def torch_twin(ours) -> nn.ModuleList:
    """One single-layer torch module per layer of ``ours``, layer k of input size I + k·D·H, weights copied."""
    kind = {LSTM: "lstm", GRU: "gru", RNN: "rnn"}[type(ours)]
    D = ours.num_directions
    layers = nn.ModuleList()
    for k in range(ours.num_layers):
        layer = TORCH[kind](I + k * D * H, H, bidirectional=ours.bidirectional).to(ours.weight_hh_l0.dtype)
        state = {}
        for name in SUFFIXES:
            for reverse in [False, True] if ours.bidirectional else [False]:
                tail = "_reverse" if reverse else ""
                state[f"{name}_l0{tail}"] = getattr(ours, f"{name}_l{k}{tail}").detach().clone()
        layer.load_state_dict(state, strict=True)
        layers.append(layer)
    return layers


def run_twin(layers: nn.ModuleList, x, lengths):
    """x (T, B, I) through the torch stack, each layer reading [x; o_0; …; o_{k−1}]; packed when lengths given."""
    features, finals = [x], []
    for layer in layers:
        inp = torch.cat(features, dim=-1)  # (T, B, I + k·D·H)
        if lengths is None:
            out, state = layer(inp)
        else:
            packed = pack_padded_sequence(inp, lengths, enforce_sorted=False)
            out, state = layer(packed)
            out, _ = pad_packed_sequence(out, total_length=T)  # (T, B, D·H), zeros past each length
        features.append(out)
        finals.append(state)
    if isinstance(finals[0], tuple):
        return out, tuple(torch.cat(parts, 0) for parts in zip(*finals))
    return out, torch.cat(finals, 0)


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def weighted(out, state):
    total = (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)).sum()
    for s in flat(state):
        total = total + (s * torch.linspace(-1.0, 1.0, s.numel(), dtype=s.dtype).view_as(s)).sum()
    return total


GRID = list(itertools.product(["lstm", "gru", "rnn"], [False, True], [False, True]))


@pytest.mark.parametrize("kind, bidirectional, with_lengths", GRID)
def test_dense_stack_equals_torch_layers_fed_the_concatenations(kind, bidirectional, with_lengths):
    lengths = LENGTHS if with_lengths else None
    x = torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    results = []
    for implementation in ("fused", "reference"):
        ours = dense_stack(kind, bidirectional, implementation).double()
        xo = x.clone().requires_grad_(True)
        out, state = ours(xo, lengths=lengths)
        weighted(out, state).backward()
        grads = {n: p.grad for n, p in ours.named_parameters()}
        results.append((out.detach(), [s.detach() for s in flat(state)], grads, xo.grad))

    twin = torch_twin(dense_stack(kind, bidirectional).double())
    xt = x.clone().requires_grad_(True)
    out_t, state_t = run_twin(twin, xt, lengths)
    weighted(out_t, state_t).backward()
    tail = lambda d: "_reverse" if d else ""  # noqa: E731
    for out, states, grads, x_grad in results:
        torch.testing.assert_close(out, out_t.detach())
        for s, st in zip(states, flat(state_t)):
            torch.testing.assert_close(s, st.detach())
        torch.testing.assert_close(x_grad, xt.grad)
        for k, name, d in itertools.product(range(L), SUFFIXES, range(2 if bidirectional else 1)):
            torch.testing.assert_close(grads[f"{name}_l{k}{tail(d)}"], getattr(twin[k], f"{name}_l0{tail(d)}").grad)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_weight_ih_grows_by_the_outputs_of_the_layers_below(kind):
    for bidirectional in (False, True):
        rnn = OURS[kind](I, H, num_layers=L, bidirectional=bidirectional, dense=True)
        D, G = (2 if bidirectional else 1), (4 if kind == "lstm" else 3)
        for k in range(L):
            assert rnn.get_parameter(f"weight_ih_l{k}").shape == (G * H, I + k * D * H)
            assert rnn.get_parameter(f"weight_hh_l{k}").shape == (G * H, H)
        out, _ = rnn(torch.randn(T, B, I))
        assert out.shape == (T, B, D * H)  # the top layer's output, as without dense
    assert "dense=True" in repr(rnn)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_padding_never_changes_a_sequence_of_a_dense_stack(kind):
    torch.manual_seed(0)
    rnn = OURS[kind](I, H, num_layers=L, bidirectional=True, dense=True, batch_first=True).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, _ = rnn(x, lengths=LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        alone, state = rnn(x[b : b + 1, :n])  # the sequence alone, without padding
        torch.testing.assert_close(out[b, :n], alone[0])
        assert out[b, n:].abs().max() == 0 if n < T else True
        bigger = torch.cat([x[b : b + 1, :n], torch.randn(1, T + 3 - n, I, dtype=torch.float64)], dim=1)
        padded, _ = rnn(bigger, lengths=torch.tensor([n]))  # other values in the padding: no effect
        torch.testing.assert_close(padded[0, :n], alone[0])


def test_dropout_between_dense_layers_is_the_same_in_both_paths_and_off_in_eval():
    x = torch.randn(T, B, I, dtype=torch.float64)
    outs = []
    for implementation in ("fused", "reference"):
        rnn = dense_stack("lstm", True, implementation).double()
        rnn.dropout = 0.5
        torch.manual_seed(7)
        outs.append(rnn(x)[0])
    # one mask per layer, drawn in the same order (packed data, with lengths, would draw a mask of another shape)
    torch.testing.assert_close(outs[0], outs[1])
    rnn.eval()
    torch.testing.assert_close(rnn(x)[0], rnn(x)[0])
    rnn.train()
    assert not torch.allclose(rnn(x)[0], rnn(x)[0])


def test_dense_and_residual_exclude_each_other():
    with pytest.raises(ConfigError, match="residual and dense exclude each other"):
        LSTM(I, H, num_layers=2, residual=True, dense=True)
    with pytest.raises(ConfigError, match="sequence_classifier: residual and dense exclude each other"):
        create_model(
            "sequence_classifier",
            model_config("sequence_classifier", vocab_size=10, num_classes=2, num_layers=2, residual=True, dense=True),
        )
    with pytest.raises(ConfigError, match="language_model: dense needs num_layers ≥ 2"):
        create_model("language_model", model_config("language_model", vocab_size=10, num_layers=1, dense=True))
    with pytest.raises(ConfigError, match="sequence_regressor: dense needs num_layers ≥ 2"):
        create_model("sequence_regressor", model_config("sequence_regressor", num_layers=1, dense=True))


@pytest.mark.parametrize(
    "name, config",
    [
        ("sequence_classifier", dict(vocab_size=12, num_classes=3, bidirectional=True)),
        ("sequence_tagger", dict(vocab_size=12, num_classes=3)),
        ("language_model", dict(vocab_size=12)),
    ],
)
def test_sequence_models_take_dense_from_their_config(name, config):
    torch.manual_seed(0)
    model = create_model(name, model_config(name, **config, embedding_size=5, hidden_size=4, num_layers=3, dense=True))
    D = 2 if config.get("bidirectional", name == "sequence_tagger") else 1
    rnn = model.encoder.rnn if name != "language_model" else model.rnn
    assert rnn.dense and rnn.weight_ih_l2.shape[1] == 5 + 2 * D * 4
    tokens = torch.randint(4, 12, (2, 5))
    out = model(tokens, torch.tensor([5, 3])) if name != "language_model" else model(tokens)[0]
    assert torch.isfinite(out).all()


def test_regressor_with_dense_layers_and_gradient_flow_through_them():
    torch.manual_seed(0)
    model = create_model(
        "sequence_regressor", model_config("sequence_regressor", input_size=2, hidden_size=4, num_layers=3, dense=True)
    )
    x = torch.randn(2, 7, 2)
    flow = gradient_flow(model, lambda m: m(x).sum())
    # h and c of every layer, the first reached through every dense connection
    assert flow.labels == [f"layer {k}{c}" for k in (1, 2, 3) for c in ("", " cell state c")]
    assert all(max(curve) > 0 for curve in flow.norms.values())
