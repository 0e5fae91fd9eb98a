"""Train for a time, not a guess: ``train.max_time`` stops at the first step past the budget, saves, evaluates the
best weights and records the budget in results.json; a run killed and resumed continues its budget instead of
starting it again; a time that is not one is a one-line error naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnn.cli import main
from dnn.errors import ConfigError
from dnn.run_config import duration_seconds

KILLER = [sys.executable, str(Path(__file__).parent / "killer.py")]
# 5,000 steps an epoch (longer than the budgets below on a fast machine), 250,000 in all
LONG = ["adding-lstm", "data.sizes=[100000,40,40]", "data.length=10", "model.hidden_size=8", "train.batch_size=20",
        "train.epochs=50", "train.threads=1", "train.report=false", "train.tensorboard=false"]  # fmt: skip


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150),
                                          (45, 45), ("45", 45)])  # fmt: skip
def test_a_duration_reads_as_seconds(text, seconds):
    assert duration_seconds(text, "train.max_time") == seconds


@pytest.mark.parametrize("text", ["soon", "10x", "m", "-5", "1h-5m"])
def test_a_duration_that_is_not_one_is_one_line_naming_the_key(text, tmp_path, capsys):
    with pytest.raises(ConfigError, match="train.max_time"):
        duration_seconds(text, "train.max_time")
    assert main(["train", *LONG, f"train.max_time={text}", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnn: error: train.max_time") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_run_with_a_time_budget_stops_past_it_and_records_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *LONG, "train.max_time=2s", "--run-dir", str(run), "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["max_time"] == 2.0 and 2.0 <= results["seconds"] < 30
    assert results["steps"] < 250_000 and results["finished"].startswith("train.max_time=2s reached at step")
    assert results["test"]  # the best weights were evaluated
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["finished"] == results["finished"] and state["stats"]["step"] == results["steps"]


def test_a_killed_run_continues_its_budget_instead_of_starting_it_again(tmp_path):
    run = tmp_path / "run"
    budget = ["train.max_time=3s", "train.checkpoint_interval=1s"]  # a checkpoint every second of training
    killed = subprocess.run(KILLER + ["committed", "state.pt", "3", "--", "train", *LONG, *budget, "--run-dir",
                                      str(run), "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    spent = torch.load(run / "state.pt", weights_only=True)["stats"]["elapsed"]
    assert spent >= 2.0  # the checkpoints at 0, 1 and 2 seconds
    resumed = subprocess.run([sys.executable, "-m", "dnn.cli", "train", "--resume", "--run-dir", str(run), "--quiet"],
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((run / "results.json").read_text())
    # a budget started again would end past spent + 3 s; continued, it ends just past 3 s of training in all
    assert 3.0 <= results["seconds"] < spent + 3.0, (spent, results["seconds"])
    assert results["max_time"] == 3.0
