"""The check every resume test makes: a run killed with SIGKILL after a random number of training steps and
continued with ``dnn train --resume`` logs the same per-step losses and ends with bit-identical weights (best and
last) as an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

DNN = [sys.executable, "-m", "dnn.cli"]


def train_losses(run_dir: Path) -> dict[int, list[float]]:
    """Every logged training loss by step (a step logged twice — before a kill and after the resume — twice)."""
    out: dict[int, list[float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "train":
            out.setdefault(record["step"], []).append(record["loss"])
    return out


def check_sigkill_resume(
    args: list[str],
    tmp_path: Path,
    steps: int | None,
    kill_range: Callable[[int], tuple[int, int]] = lambda total: (3, total - 5),
) -> None:
    """``args``: ``dnn train`` arguments with ``train.log_every=1``; ``steps``: the steps the whole run must take
    (None: not checked); ``kill_range(total steps)``: the range the number of steps before the kill is drawn from."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = subprocess.run(DNN + ["train", *args, "--run-dir", str(whole), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout.strip().splitlines()[-1])["steps"]
    assert steps is None or total == steps

    kill_after = random.Random(os.getpid()).randint(*kill_range(total))
    proc = subprocess.Popen(DNN + ["train", *args, "--run-dir", str(broken), "--quiet"], stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        log = broken / "metrics.jsonl"
        if log.exists() and sum('"train"' in line for line in log.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (broken / "results.json").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(DNN + ["train", "--resume", "--run-dir", str(broken), "--quiet"], capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr

    expected, got = train_losses(whole), train_losses(broken)
    # a kill after a step's checkpoint was saved but before its log line was written loses that one line
    assert len(set(range(1, total + 1)) - set(got)) <= 1 and set(got) <= set(range(1, total + 1))
    for step, values in got.items():
        assert all(v == expected[step][0] for v in values), f"step {step}: {values} != {expected[step]}"
    for name in ("last.safetensors", "model.safetensors"):
        a, b = load_file(whole / name), load_file(broken / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
