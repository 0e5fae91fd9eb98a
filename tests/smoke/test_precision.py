"""bf16 and fp16 training on the CPU: the run records its device and precision, learns, and a run killed with
SIGKILL and resumed is bit-identical to an uninterrupted one (fp16's gradient scaler is part of the checkpoint).
Each needs the CPU's units for its precision: skipped without them (tests/unit/test_precision_units.py tests the
refusal)."""

from __future__ import annotations

import json

import pytest
from resume_check import check_sigkill_resume

from dnn.cli import main

LENET = ["digits-lenet5", "train.epochs=1", "train.batch_size=64", "train.threads=1", "train.report=false",
         "train.tensorboard=false"]  # fmt: skip


@pytest.mark.parametrize(
    "precision", [pytest.param("bf16", marks=pytest.mark.bf16), pytest.param("fp16", marks=pytest.mark.fp16)]
)
def test_a_cnn_trains_in_reduced_precision_and_says_so(tmp_path, precision):
    run_dir = tmp_path / precision
    args = [*LENET, "train.epochs=3", f"train.precision={precision}", "--run-dir", str(run_dir), "--quiet"]
    assert main(["train", *args]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["device"] == "cpu" and results["precision"] == precision
    assert results["test"]["accuracy"] > 0.7  # 60 steps (fp16: a few skipped while the loss scale settles); chance 0.1
    if precision == "fp16":
        assert results["skipped_batches"] < 30


@pytest.mark.bf16
def test_the_sentiment_lstm_trains_in_bf16(tmp_path):
    rows = [f"a {'good great fine' if i % 2 else 'bad awful poor'} film {i},{'pos' if i % 2 else 'neg'}" for i in
            range(200)]  # fmt: skip
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    args = ["sentiment-lstm", f"data.train={data}", "train.precision=bf16", "train.epochs=3", "model.hidden_size=16",
            "train.report=false", "--run-dir", str(run_dir), "--quiet"]  # fmt: skip
    assert main(["train", *args]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["precision"] == "bf16" and results["test"]["accuracy"] > 0.9


@pytest.mark.parametrize(
    "precision", [pytest.param("bf16", marks=pytest.mark.bf16), pytest.param("fp16", marks=pytest.mark.fp16)]
)
def test_a_killed_and_resumed_reduced_precision_run_is_bit_identical(tmp_path, precision):
    args = [*LENET[:-2], "train.epochs=2", "train.checkpoint_every=1", "train.log_every=1",
            f"train.precision={precision}"]  # fmt: skip
    check_sigkill_resume(args, tmp_path, steps=None if precision == "fp16" else 2 * 20)  # fp16 skips overflows
