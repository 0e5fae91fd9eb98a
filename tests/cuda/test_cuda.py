"""On a CUDA GPU (skipped elsewhere): training, kill-and-resume, prediction and serving on the GPU, and fp16 / bf16
training within a stated tolerance of fp32. Run with `make test-cuda` on a machine that has one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "smoke"))
from resume_check import check_sigkill_resume  # noqa: E402

from dnn.cli import main  # noqa: E402
from dnn.run import load_run  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]

LENET = ["digits-lenet5", "train.epochs=2", "train.batch_size=64", "train.report=false", "train.device=cuda"]
DATES = ["dates-attention", "data.sizes=[2000,100,100]", "train.epochs=2", "train.report=false", "train.device=cuda",
         "train.threads=0"]  # fmt: skip


def _train(tmp_path: Path, name: str, args: list[str]) -> dict:
    run_dir = tmp_path / name
    assert main(["train", *args, "--run-dir", str(run_dir), "--quiet"]) == 0
    return json.loads((run_dir / "results.json").read_text())


def test_a_cnn_and_a_seq2seq_train_on_the_gpu_and_load_on_the_cpu(tmp_path):
    results = _train(tmp_path, "lenet", LENET)
    assert results["device"].startswith("cuda") and results["test"]["accuracy"] > 0.8
    cpu = load_run(tmp_path / "lenet", device="cpu")  # checkpoints are device-free
    assert next(cpu.model.parameters()).device.type == "cpu"
    results = _train(tmp_path, "dates", DATES)
    run = load_run(tmp_path / "dates", device="cuda")
    assert run.predictor.translate(["March 3, 2021"], beam_size=5)[0]["output"]


@pytest.mark.parametrize("precision,tolerance", [("bf16", 0.05), ("fp16", 0.05)])
def test_reduced_precision_matches_fp32_within_a_stated_tolerance(tmp_path, precision, tolerance):
    fp32 = _train(tmp_path, "fp32", LENET)["test"]["accuracy"]
    low = _train(tmp_path, precision, [*LENET, f"train.precision={precision}"])["test"]["accuracy"]
    assert abs(fp32 - low) <= tolerance


def test_kill_and_resume_on_the_gpu_is_identical(tmp_path):
    args = [*LENET, "train.checkpoint_every=1", "train.log_every=1", "deterministic=true"]
    check_sigkill_resume(args, tmp_path, steps=2 * 20)


def test_predict_and_serve_on_the_gpu(tmp_path):
    _train(tmp_path, "lenet", LENET)
    from fastapi.testclient import TestClient

    from dnn.serve import create_app

    with TestClient(create_app([tmp_path / "lenet"], load=lambda p: load_run(p, device="cuda"))) as client:
        assert client.get("/runs").status_code == 200
