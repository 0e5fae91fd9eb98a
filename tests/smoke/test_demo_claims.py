"""The demo's claim about learning, checked at its full length (slow: about a minute)."""

import pytest
import torch

from dnn.demo import adding_problem_training


@pytest.mark.slow
def test_tanh_rnn_stays_at_the_baseline_while_the_gru_learns_the_adding_problem():
    torch.set_num_threads(2)
    mse = adding_problem_training(1500)
    assert mse["tanh RNN"] > 0.15  # the baseline of always predicting 1 is 1/6
    assert mse["GRU"] < 0.05
