import math

import pytest
import torch
from torch import nn

from dnn.training import NonFiniteError, Trainer


def regression_data(n_batches=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([[2.0, -3.0]])
    batches = []
    for _ in range(n_batches):
        x = torch.randn(16, 2, generator=g)
        batches.append((x, x @ w.T + 0.5))
    return batches


def mse_step(model, batch, context):
    x, y = batch
    return nn.functional.mse_loss(model(x), y), len(x)


class Recorder:
    def __init__(self):
        self.events, self.grad_norms, self.losses = [], [], []

    def on_fit_start(self, trainer):
        self.events.append("fit_start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append(f"epoch_start {epoch}")

    def on_after_backward(self, trainer, grad_norm, clipped):
        self.grad_norms.append((grad_norm, clipped))

    def on_step_end(self, trainer, loss, **info):
        self.losses.append(loss)

    def on_epoch_end(self, trainer, epoch, complete):
        self.events.append(f"epoch_end {epoch} {complete}")

    def on_fit_end(self, trainer):
        self.events.append("fit_end")


def test_trainer_fits_a_model_it_knows_nothing_about_and_emits_events_in_order():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    rec = Recorder()
    data = regression_data()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mse_step, callbacks=[rec])
    stats = trainer.fit(lambda epoch: data, epochs=5)
    assert rec.events == ["fit_start"] + sum(([f"epoch_start {e}", f"epoch_end {e} True"] for e in range(5)), []) + [
        "fit_end"
    ]
    assert stats.step == 40 and stats.epoch == 5 and stats.items == 640
    assert rec.losses[-1] < 1e-3 < rec.losses[0]
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[2.0, -3.0]]), atol=0.02, rtol=0)


def test_pre_clip_gradient_norm_is_measured_and_clipping_is_counted():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    rec = Recorder()
    data = regression_data(4)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), mse_step, clip_norm=0.5, callbacks=[rec])
    trainer.fit(lambda epoch: data, epochs=1)
    x, y = data[0]
    model.zero_grad()
    mse_step(model, (x, y), {})[0].backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert math.isclose(rec.grad_norms[0][0], expected, rel_tol=1e-5)  # the norm before clipping
    assert trainer.stats.clipped == sum(c for _, c in rec.grad_norms) == 4


def test_max_steps_stops_mid_epoch():
    model = nn.Linear(2, 1)
    rec = Recorder()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), mse_step, callbacks=[rec])
    stats = trainer.fit(lambda epoch: regression_data(), epochs=3, max_steps=10)
    assert stats.step == 10 and stats.epoch == 1 and stats.batch_in_epoch == 2
    assert rec.events[-2:] == ["epoch_end 1 False", "fit_end"]


def nan_at(step_index):
    calls = {"n": 0}

    def step(model, batch, context):
        calls["n"] += 1
        loss, n = mse_step(model, batch, context)
        return (loss * float("nan") if calls["n"] == step_index else loss), n

    return step


def test_nonfinite_loss_stops_with_a_message_naming_the_step():
    model = nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), nan_at(3))
    with pytest.raises(NonFiniteError, match=r"^step 3: the loss is nan; training stopped"):
        trainer.fit(lambda epoch: regression_data(), epochs=1)
    assert trainer.stats.step == 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_nonfinite_batches_can_be_skipped_and_counted():
    model = nn.Linear(2, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), nan_at(3), on_nonfinite="skip")
    stats = trainer.fit(lambda epoch: regression_data(), epochs=1)
    assert stats.skipped == 1 and stats.step == 7
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_infinite_gradient_is_caught_too():
    model = nn.Linear(2, 1)
    model.weight.register_hook(lambda grad: grad * float("inf"))  # a finite loss with an exploded gradient
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), mse_step)
    with pytest.raises(NonFiniteError, match=r"^step 1: the gradient norm is (inf|nan)"):
        trainer.fit(lambda epoch: regression_data(), epochs=1)
