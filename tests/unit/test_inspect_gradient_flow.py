"""Gradient flow through time for whole models on real batches: the traced stack is the stack (same output),
the gradient it reads is the cell-level one, padding changes nothing, and the lecture's claim holds for models —
a tanh RNN loses the gradient over 50 steps, an LSTM with forget-gate bias 1 keeps far more of it."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from dnn.data.synthetic import adding_problem
from dnn.errors import ConfigError
from dnn.inspect import gradient_flow, gradient_norms_through_time
from dnn.inspect.gradient_flow import _TraceHook
from dnn.layers.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from dnn.models.regression import SequenceRegressor, SequenceRegressorConfig


def traced_call(module, *args, **kwargs):
    calls = []
    handle = module.register_forward_hook(_TraceHook(calls), with_kwargs=True)
    try:
        return module(*args, **kwargs), calls
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "cls,options",
    list(itertools.product([RNN, LSTM, GRU], [{}, {"num_layers": 2, "bidirectional": True}, {"num_layers": 3,
                                                                                           "residual": True}])),
)  # fmt: skip
def test_the_traced_stack_gives_the_stacks_own_output_and_final_state(cls, options):
    torch.manual_seed(0)
    rnn = cls(3, 5, batch_first=True, **options).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1])
    expected = rnn(x, lengths=lengths)
    (out, final), calls = traced_call(rnn, x, lengths=lengths)
    assert_close(out, expected[0])
    assert_close(final, expected[1])
    assert len(calls) == 1
    per_layer = 2 if cls is LSTM else 1  # h, and the LSTM's c
    assert len(calls[0].states) == per_layer * rnn.num_layers * rnn.num_directions


def test_the_traced_stack_takes_a_given_initial_state_time_major():
    torch.manual_seed(0)
    rnn = LSTM(3, 4, num_layers=2).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)  # (T, B, I)
    hx = (torch.randn(2, 2, 4, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64))
    expected = rnn(x, hx)
    (out, (h, c)), _ = traced_call(rnn, x, hx)
    assert_close(out, expected[0])
    assert_close(h, expected[1][0])
    assert_close(c, expected[1][1])


@pytest.mark.parametrize("cell_cls,stack_cls", [(RNNCell, RNN), (LSTMCell, LSTM), (GRUCell, GRU)])
def test_model_level_norms_equal_the_cell_level_measurement(cell_cls, stack_cls):
    """One layer, loss = Σ h_T: ‖∂L/∂h_t‖ by distance is exactly gradient_norms_through_time read backwards."""
    torch.manual_seed(0)
    cell, stack = cell_cls(2, 16), stack_cls(2, 16)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(stack, f"{name}_l0").copy_(getattr(cell, name))
    x, _ = adding_problem(4, 30, torch.Generator().manual_seed(0))  # (T, B, 2)
    expected = gradient_norms_through_time(cell, x)

    def loss(model):
        _, final = model(x)
        return (final[0] if isinstance(final, tuple) else final)[-1].sum()

    flow = gradient_flow(stack, loss)
    assert flow.counts == [4] * 30
    assert_close(torch.tensor(flow.norms["layer 1"], dtype=torch.float64), expected["h"].flip(0))
    if cell_cls is LSTMCell:
        assert_close(torch.tensor(flow.norms["layer 1 cell state c"], dtype=torch.float64), expected["c"].flip(0))


def regressor_ratio(cell: str, **options) -> float:
    """‖δh‖ 50 steps back ÷ 1 step back, for a freshly initialised sequence regressor on an adding batch."""
    torch.manual_seed(0)
    model = SequenceRegressor(SequenceRegressorConfig(input_size=2, hidden_size=64, cell=cell, **options))
    x, y = adding_problem(8, 60, torch.Generator().manual_seed(0))
    x = x.transpose(0, 1)  # (B, T, 2)
    flow = gradient_flow(model, lambda m: F.mse_loss(m(x), y))
    assert flow.counts == [8] * 60
    return flow.ratio("layer 1", 50)


def test_the_gradient_vanishes_over_50_steps_for_a_tanh_rnn_and_far_less_for_an_lstm_with_forget_bias_1():
    tanh = regressor_ratio("rnn")
    lstm = regressor_ratio("lstm", forget_bias=1.0)
    assert 0.0 < tanh < 1e-2
    assert lstm > 1e3 * tanh


def test_padding_changes_nothing_each_sequence_counts_at_its_own_end():
    torch.manual_seed(0)
    rnn = GRU(3, 6, num_layers=2, bidirectional=True, batch_first=True).double()
    lengths = [7, 3, 5, 1]
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in lengths]
    batch = torch.zeros(4, 7, 3, dtype=torch.float64)
    for b, s in enumerate(seqs):
        batch[b, : len(s)] = s

    def loss(model, x, lengths=None):
        out, h_n = model(x, lengths=lengths)
        return out.pow(2).sum() + h_n.sum()  # for a batch: the losses of its sequences, each on its own, summed

    flow = gradient_flow(rnn, lambda m: loss(m, batch, torch.tensor(lengths)))
    assert flow.counts == [4, 3, 3, 2, 2, 1, 1]
    alone = [gradient_flow(rnn, lambda m, s=s: loss(m, s[None])) for s in seqs]
    for label in flow.labels:
        for k, value in enumerate(flow.norms[label]):
            longer = [a.norms[label][k] for a, n in zip(alone, lengths) if n > k]
            assert value == pytest.approx(sum(longer) / len(longer), rel=1e-9)


def test_the_model_is_left_as_it_was_and_the_table_has_the_numbers():
    torch.manual_seed(0)
    model = SequenceRegressor(SequenceRegressorConfig(input_size=2, hidden_size=8, cell="lstm", num_layers=2))
    model.train()
    x, y = adding_problem(4, 12, torch.Generator().manual_seed(0))
    x = x.transpose(0, 1)
    model.eval()
    expected = F.mse_loss(model(x), y).item()
    model.train()
    flow = gradient_flow(model, lambda m: F.mse_loss(m(x), y))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert flow.loss == pytest.approx(expected, rel=1e-6)  # eval mode, same output as the untraced model
    assert flow.labels == ["layer 1", "layer 1 cell state c", "layer 2", "layer 2 cell state c"]
    rows = flow.table()
    assert [r["distance"] for r in rows] == [0, 1, 2, 5, 10]
    assert rows[1]["layer 2"] == flow.norms["layer 2"][1] and rows[3]["sequences"] == 4
    assert flow.ratio("layer 1", 5) == pytest.approx(flow.norms["layer 1"][5] / flow.norms["layer 1"][1])
    with pytest.raises(ConfigError, match="distance must be below the sequence length 12, got 50"):
        flow.ratio("layer 1", 50)


def test_a_model_without_recurrent_layers_or_a_loss_that_skips_them_is_a_clear_error():
    with pytest.raises(ConfigError, match="Linear has no dnn RNN / LSTM / GRU layer"):
        gradient_flow(torch.nn.Linear(2, 2), lambda m: m(torch.zeros(1, 2)).sum())
    with pytest.raises(ConfigError, match="never ran a recurrent layer"):
        gradient_flow(RNN(2, 3), lambda m: torch.zeros((), requires_grad=True))
