"""A run killed with SIGKILL at a random step and resumed equals an uninterrupted run: same per-step losses,
bit-identical final weights (CPU). Dropout and augmentation are on, so every RNG has to be restored right."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

DNN = [sys.executable, "-m", "dnn.cli"]
ARGS = [
    "digits-lenet5",
    "train.epochs=2",
    "train.batch_size=64",
    "train.checkpoint_every=1",
    "train.log_every=1",
    "train.threads=1",
    "model.dropout=0.3",
    "data.augment=true",
]


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "train":
            out.setdefault(record["step"], []).append(record["loss"])
    return out


def test_sigkill_at_a_random_step_then_resume_equals_an_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = subprocess.run(DNN + ["train", *ARGS, "--run-dir", str(whole), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    total_steps = json.loads(done.stdout.strip().splitlines()[-1])["steps"]
    assert total_steps == 2 * 20  # 1,257 training images / 64 per batch = 20 batches per epoch

    kill_after = random.Random(os.getpid()).randint(3, total_steps - 5)
    proc = subprocess.Popen(DNN + ["train", *ARGS, "--run-dir", str(broken), "--quiet"], stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        log = broken / "metrics.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (broken / "results.json").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(
        DNN + ["train", "--resume", "--run-dir", str(broken), "--quiet"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr

    expected, got = losses(whole), losses(broken)
    assert sorted(got) == list(range(1, total_steps + 1)) or set(got) >= set(range(kill_after, total_steps + 1))
    for step, values in got.items():
        assert all(v == expected[step][0] for v in values), f"step {step}: {values} != {expected[step]}"
    for name in ("last.safetensors", "model.safetensors"):
        a, b = load_file(whole / name), load_file(broken / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
