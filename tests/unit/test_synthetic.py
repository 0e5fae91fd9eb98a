import pytest
import torch

from dnn.data.synthetic import adding_problem
from dnn.errors import ConfigError


def test_adding_problem_shapes_markers_and_targets():
    x, y = adding_problem(500, 40, torch.Generator().manual_seed(0))
    assert x.shape == (40, 500, 2) and y.shape == (500,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(0), torch.full((500,), 2.0))  # exactly two marked steps
    assert torch.equal(markers[:20].sum(0), torch.ones(500))  # one in each half
    torch.testing.assert_close((x[..., 0] * markers).sum(0), y)


def test_adding_problem_baseline_is_one_sixth_and_seed_is_deterministic():
    x, y = adding_problem(20000, 10, torch.Generator().manual_seed(1))
    assert abs(((y - 1.0) ** 2).mean().item() - 1 / 6) < 0.01
    a = adding_problem(5, 10, torch.Generator().manual_seed(7))
    b = adding_problem(5, 10, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_adding_problem_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="length"):
        adding_problem(4, 1)
