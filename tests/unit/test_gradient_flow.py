"""The lecture's vanishing-gradient claim, measured: tanh RNNs lose the gradient over time, gated cells keep it."""

import pytest
import torch

from dnn.data.synthetic import adding_problem
from dnn.errors import ConfigError
from dnn.inspect import gradient_norms_through_time
from dnn.layers import GRUCell, LSTMCell, RNNCell


def ratio_50_steps_back(cell, key="h", T=60):
    x, _ = adding_problem(8, T, torch.Generator().manual_seed(0))
    norms = gradient_norms_through_time(cell, x)[key]
    return (norms[-1 - 50] / norms[-1]).item()


def test_gradient_vanishes_for_tanh_rnn_and_far_less_for_lstm_with_forget_bias_1():
    torch.manual_seed(0)
    tanh = ratio_50_steps_back(RNNCell(2, 64))
    torch.manual_seed(0)
    lstm = ratio_50_steps_back(LSTMCell(2, 64, forget_bias=1.0))
    torch.manual_seed(0)
    lstm_cell_state = ratio_50_steps_back(LSTMCell(2, 64, forget_bias=1.0), key="c")
    assert tanh < 1e-2
    assert lstm > 1e3 * tanh
    assert lstm_cell_state > lstm  # the cell state is the highway
    assert tanh > 0.0  # computed in float64: a vanished gradient must not read as exactly 0


def test_forget_bias_is_what_keeps_the_lstm_gradient():
    torch.manual_seed(0)
    torch_init = ratio_50_steps_back(LSTMCell(2, 64, forget_bias=None))
    torch.manual_seed(0)
    bias_one = ratio_50_steps_back(LSTMCell(2, 64, forget_bias=1.0))
    assert bias_one > 1e3 * torch_init


def test_norms_cover_every_step_and_gru_has_no_cell_state():
    x, _ = adding_problem(4, 12, torch.Generator().manual_seed(0))
    norms = gradient_norms_through_time(GRUCell(2, 8), x)
    assert set(norms) == {"h"} and norms["h"].shape == (12,)
    assert torch.all(norms["h"] > 0)


def test_rejects_what_it_cannot_measure():
    with pytest.raises(ConfigError, match="cell"):
        gradient_norms_through_time(torch.nn.Linear(2, 2), torch.zeros(3, 1, 2))
    with pytest.raises(ConfigError, match=r"\(T, B, I\)"):
        gradient_norms_through_time(RNNCell(2, 4), torch.zeros(3, 2))
