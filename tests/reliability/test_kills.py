"""Every instant is resumable: a run SIGKILLed at exact instants — while its manifest, config, vocabulary, task
file, a checkpoint, the best weights, the manifest's pending hash, results.json or the report is written, and just
after each rename — then continued with ``dnn train --resume`` (or started again in place where it was stopped
before it had a config) ends bit-identical to a run that was never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
KILLER = [sys.executable, str(HERE / "killer.py")]
DNN = [sys.executable, "-m", "dnn.cli"]
RUN = ["adding-lstm", "data.sizes=[400,40,40]", "data.length=10", "model.hidden_size=8", "train.batch_size=20",
       "train.epochs=2", "train.log_every=1", "train.checkpoint_every=7", "train.threads=1", "train.report=false",
       "train.tensorboard=false"]  # fmt: skip  # 40 steps
RECIPE_FIRST = {(".dnn-manifest.json", "written", 1)}  # killed before the folder was a run: start it again

# (file, instant, which occurrence in that process): each kill in a process resumed after the one before
FAST = [
    (".dnn-manifest.json", "written", 1),  # the folder's birth: only a temporary file of the manifest
    ("config.yaml", "written", 1),  # no config.yaml yet: the config comes from the manifest
    ("state.pt", "written", 1),  # the checkpoint before the first step, not renamed yet
    ("state.pt", "committed", 1),  # renamed; its hash is in the manifest as pending only
    (".dnn-manifest.json", "written", 3),  # the pending hash of a later checkpoint, not renamed yet
    ("model.safetensors", "committed", 1),  # the best weights renamed, their checkpoint not yet written
    ("state.pt", "committed", 2),
    ("results.json", "written", 1),  # the end window: the final checkpoint saved, results.json not yet
]
CYCLE = [  # instants every resumed process reaches within its first two checkpoints (train.checkpoint_every=2)
    ("state.pt", "written", 1),
    (".dnn-manifest.json", "written", 1),  # the pending hashes of the first checkpoint
    ("last.safetensors", "committed", 1),
    (".dnn-manifest.json", "committed", 2),  # the hashes made current
    ("last.safetensors", "written", 1),
    ("state.pt", "committed", 1),
    (".dnn-manifest.json", "committed", 1),
    ("state.pt", "written", 2),
]
SLOW = [
    *FAST[:4],
    ("task.json", "written", 1),  # started again in place: the config is there, the task's file is not
    ("task.json", "committed", 1),
    ("model.safetensors", "written", 1),  # the first evaluation's best weights
    ("model.safetensors", "committed", 1),
    *CYCLE * 4,
    ("state.pt", "committed", 2),
    (".dnn-manifest.json", "written", 3),
    ("results.json", "written", 1),  # the end window
    ("curves.png", "written", 1),  # results written: only the report is left
]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def check_kill_sequence(tmp_path: Path, kills: list[tuple[str, str, int]], extra: list[str]) -> int:
    """Kill a run at each instant of ``kills`` in turn (each kill in the process that resumed after the one
    before), resume it to the end, and compare it with a run never stopped; return how many kills landed."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = _run(DNN + ["train", *RUN, *extra, "--run-dir", str(whole), "--quiet"])
    assert done.returncode == 0, done.stderr
    landed, started = 0, False
    for name, when, nth in kills:
        args = ["train", "--resume"] if started else ["train", *RUN, *extra]
        proc = _run(KILLER + [when, name, str(nth), "--", *args, "--run-dir", str(broken), "--quiet"])
        if proc.returncode == 3:  # the run did not reach that instant (finished before it): nothing to check
            continue
        assert proc.returncode == -signal.SIGKILL, (name, when, nth, proc.stderr)
        landed += 1
        if not started and (name, when, nth) in RECIPE_FIRST:
            assert [p.name[:20] for p in broken.iterdir()] == ["..dnn-manifest.json."]  # its temporary file only
            refused = _run(DNN + ["train", "--resume", "--run-dir", str(broken)])
            assert refused.returncode == 2 and f"dnn train RECIPE --run-dir {broken}" in refused.stderr
        else:
            started = True
    finished = _run(DNN + ["train", "--resume", "--run-dir", str(broken), "--quiet"])
    assert finished.returncode == 0, finished.stderr
    for file in ("last.safetensors", "model.safetensors"):
        a, b = load_file(whole / file), load_file(broken / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{file} differs after {landed} kills"
    expected, got = (json.loads((d / "results.json").read_text()) for d in (whole, broken))
    assert got["test"] == expected["test"] and got["steps"] == expected["steps"]
    assert _train_lines(broken) == _train_lines(whole), "metrics.jsonl: a step logged twice or lost"
    assert not [p.name for p in broken.rglob("*.tmp")], "temporary files left behind"
    return landed


def _train_lines(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def test_killed_at_eight_exact_instants_the_resumed_run_is_bit_identical(tmp_path):
    assert check_kill_sequence(tmp_path, FAST, []) == len(FAST)


@pytest.mark.slow
def test_killed_at_forty_four_exact_instants_with_a_report_the_resumed_run_is_bit_identical(tmp_path):
    extra = ["train.epochs=4", "train.checkpoint_every=2", "train.eval_every=4", "train.report=true"]  # 80 steps
    assert check_kill_sequence(tmp_path, SLOW, extra) == len(SLOW) == 44
