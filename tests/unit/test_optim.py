import math

import pytest
import torch

from dnn.errors import ConfigError
from dnn.training.optim import make_optimizer, make_scheduler


def lrs(name, steps, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([p], "sgd", lr=1.0)
    sched = make_scheduler(opt, name, total_steps=steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warmup_then_cosine_to_zero():
    values = lrs("cosine", 10, warmup_steps=2)
    assert values[:2] == pytest.approx([0.5, 1.0])
    assert values[2] == pytest.approx(1.0)
    assert values[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(values[2:], values[3:]))


def test_cosine_anneals_over_a_time_budget_when_it_ends_before_the_steps():
    clock = {"fraction": 0.0}
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([p], "sgd", lr=1.0)
    sched = make_scheduler(opt, "cosine", total_steps=1000, warmup_steps=2, time_fraction=lambda: clock["fraction"])
    seen = []
    for fraction in (0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.7):  # the share of train.max_time spent before each step
        clock["fraction"] = fraction
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen[:2] == pytest.approx([1.0, 1.0])  # the end of the warm-up, the start of the decay
    assert seen[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 1 / 998)), abs=1e-9)  # the steps lead at time 0
    assert seen[3:] == pytest.approx([0.5 * (1 + math.cos(math.pi * f)) for f in (0.25, 0.5, 1.0, 1.0)])
    assert lrs("cosine", 10, warmup_steps=2, time_fraction=lambda: 0.0) == lrs("cosine", 10, warmup_steps=2)


def test_step_schedule_and_constant():
    assert lrs("step", 6, step_size=2, gamma=0.5) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert lrs("constant", 3) == [1.0, 1.0, 1.0]


def test_optimizers_by_name_and_errors():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(make_optimizer(p, "adamw", 1e-3), torch.optim.AdamW)
    assert make_optimizer(p, "sgd", 0.1).param_groups[0]["momentum"] == 0.9
    with pytest.raises(ConfigError, match="train.optimizer must be one of sgd, adam, adamw; got 'rmsprop'"):
        make_optimizer(p, "rmsprop", 1e-3)
    with pytest.raises(ConfigError, match="train.lr must be positive"):
        make_optimizer(p, "adam", 0)
    with pytest.raises(ConfigError, match="train.schedule"):
        make_scheduler(make_optimizer(p, "adam", 1e-3), "linear", 10)


@pytest.mark.parametrize(
    "name,reference",
    [
        ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-3, foreach=False)),
        ("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-3, foreach=False)),
        ("sgd", lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=1e-3, foreach=False)),
    ],
)
def test_fused_update_matches_torchs_per_parameter_loop(name, reference):
    torch.manual_seed(0)
    ours, theirs = torch.nn.LSTM(5, 7), torch.nn.LSTM(5, 7)
    theirs.load_state_dict(ours.state_dict())
    opt = make_optimizer(ours.parameters(), name, 1e-2, weight_decay=1e-3)
    assert opt.defaults["fused"] is True  # dense fp32 parameters on the CPU take the fused kernel
    ref = reference(list(theirs.parameters()))
    x = torch.randn(4, 3, 5)
    for _ in range(20):
        for model, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            model(x)[0].pow(2).mean().backward()
            o.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_the_fused_kernel_cannot_take_fall_back_to_the_loop():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-2}]
    assert make_optimizer(groups, "adam", 1e-3).defaults["fused"] is True
    meta = [torch.nn.Parameter(torch.zeros(2, device="meta"))]
    assert make_optimizer(meta, "adam", 1e-3).defaults["fused"] is None
