import io
import json

import torch
from torch import nn

from dnn.layers import GRU
from dnn.training import Trainer
from dnn.training.callbacks import EarlyStopping, Evaluate, MetricsLog, ProgressBar, TruncatedBPTT


def data(n=6):
    g = torch.Generator().manual_seed(0)
    return [(x, x.sum(1, keepdim=True)) for x in (torch.randn(8, 3, generator=g) for _ in range(n))]


def step(model, batch, context):
    x, y = batch
    return nn.functional.mse_loss(model(x), y), len(x)


def test_metrics_log_records_loss_gradient_norm_clip_rate_and_evaluations(tmp_path):
    model = nn.Linear(3, 1)
    log = MetricsLog(tmp_path / "metrics.jsonl", every=2)
    evaluate = Evaluate(lambda m: {"mse": 0.5})
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.0), step, clip_norm=1e-6, callbacks=[evaluate, log]
    )
    trainer.fit(lambda e: data(), epochs=1)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6]
    assert all(r["clip_rate"] == 1.0 and r["grad_norm"] > 1e-6 and r["lr"] == 0.0 for r in train)
    assert records[-1] == {"kind": "eval", "split": "valid", "step": 6, "epoch": 1, "mse": 0.5}


def test_plain_progress_lines_when_not_a_terminal():
    out = io.StringIO()
    model = nn.Linear(3, 1)
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.01), step, callbacks=[ProgressBar(6, every=3, stream=out)]
    )
    trainer.fit(lambda e: data(), epochs=1)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 3/6", "step 6/6"]
    assert "loss" in lines[0] and "steps/s" in lines[0]


def test_early_stopping_stops_after_patience_evaluations_without_improvement():
    scores = iter([0.5, 0.6, 0.6, 0.55, 0.9, 0.9])
    model = nn.Linear(3, 1)
    stopper = EarlyStopping("acc", mode="max", patience=2)
    trainer = Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        step,
        callbacks=[Evaluate(lambda m: {"acc": next(scores)}), stopper],
    )
    stats = trainer.fit(lambda e: data(2), epochs=6)
    assert stats.epoch == 4 and stopper.best == 0.6


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = GRU(1, 4, batch_first=True)
        self.out = nn.Linear(4, 1)

    def forward(self, x, state):
        y, state = self.rnn(x, state)
        return self.out(y), state


def test_truncated_bptt_carries_the_state_across_batches_and_cuts_the_graph():
    torch.manual_seed(0)
    model = TinyLM()
    stream = torch.randn(1, 12, 1)
    chunks = [(stream[:, i : i + 4], stream[:, i + 1 : i + 5]) for i in range(0, 8, 4)]
    seen = []

    def lm_step(model, batch, context):
        x, y = batch
        state = context.get("state")
        seen.append(None if state is None else (state.clone(), state.requires_grad))
        pred, context["state"] = model(x, state)
        return nn.functional.mse_loss(pred, y), x.numel()

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), lm_step, callbacks=[TruncatedBPTT()])
    trainer.fit(lambda e: chunks, epochs=1)
    assert seen[0] is None
    carried, requires_grad = seen[1]
    assert not requires_grad  # detached: back-propagation stops at the chunk boundary
    with torch.no_grad():
        _, expected = model(stream[:, :4], None)  # lr 0: the state after the first chunk, recomputed
    torch.testing.assert_close(carried, expected)


def test_evaluation_runs_once_when_max_steps_stops_right_after_one():
    import torch

    from dnn.training import Trainer
    from dnn.training.callbacks import Evaluate

    model = torch.nn.Linear(2, 1)
    calls = []
    evaluate = Evaluate(lambda m: calls.append(1) or {"loss": 0.0}, every_steps=2)

    def step(m, batch, context):
        return m(batch).pow(2).mean(), len(batch)

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), step, callbacks=[evaluate])
    trainer.fit(lambda epoch: [torch.randn(4, 2) for _ in range(10)], epochs=1, max_steps=4)
    assert trainer.stats.step == 4 and len(calls) == 2  # at steps 2 and 4, not again when the epoch is cut short
