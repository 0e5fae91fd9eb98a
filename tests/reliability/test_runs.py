"""Runs that never lose work: kill -9 at random points (between the writes of one save too), two writers, a
finished run resumed, a folder that is not a run, a full disk, and every bad input one line with exit 2."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dnn.io
from dnn.cli import main

DNN = [sys.executable, "-m", "dnn.cli"]
TINY = ["adding-lstm", "data.sizes=[1200,40,40]", "data.length=20", "model.hidden_size=8", "train.batch_size=20",
        "train.epochs=2", "train.log_every=1", "train.checkpoint_every=1", "train.report=false",
        "train.tensorboard=false"]  # fmt: skip  # 120 steps, a checkpoint after every one


def _train(run_dir: Path, *args: str, resume: bool = False) -> subprocess.CompletedProcess:
    cmd = DNN + ["train", *(["--resume"] if resume else list(args)), "--run-dir", str(run_dir), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _train_lines(run_dir: Path) -> int:
    log = run_dir / "metrics.jsonl"
    return sum('"train"' in line for line in log.read_text().splitlines()) if log.exists() else 0


def _kill_at_random_points(run_dir: Path, kills: int, seed: int) -> int:
    """Start or resume the run, SIGKILL it at a random moment of its training, ``kills`` times; return the kills
    that landed before the run finished."""
    rng, landed = random.Random(seed), 0
    for i in range(kills):
        cmd = DNN + ["train", *(["--resume"] if i else TINY), "--run-dir", str(run_dir), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start_lines, deadline = _train_lines(run_dir), time.time() + 60
        while proc.poll() is None and _train_lines(run_dir) <= start_lines and time.time() < deadline:
            time.sleep(0.002)  # training has begun (and is writing a checkpoint after every step)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed += 1
    return landed


def _check_kills(tmp_path: Path, kills: int) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert _train(whole, *TINY).returncode == 0
    landed = _kill_at_random_points(broken, kills, seed=kills)
    assert landed >= 1
    done = _train(broken, resume=True)
    assert done.returncode == 0, done.stderr
    for name in ("last.safetensors", "model.safetensors"):
        a, b = load_file(whole / name), load_file(broken / name)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after {landed} kills"
    assert (
        json.loads((whole / "results.json").read_text())["test"]
        == json.loads((broken / "results.json").read_text())["test"]
    )
    assert not [p.name for p in broken.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"


def test_killed_at_random_points_a_few_times_the_resumed_run_is_bit_identical(tmp_path):
    _check_kills(tmp_path, kills=3)


@pytest.mark.slow
def test_killed_at_random_points_twenty_times_the_resumed_run_is_bit_identical(tmp_path):
    _check_kills(tmp_path, kills=20)


def test_a_kill_between_the_writes_of_one_save_loses_nothing(tmp_path, monkeypatch):
    """The weights a resume reads are in the same file as the optimiser state: whatever was renamed last, the
    checkpoint on disk is the old one or the new one, never a mix. Simulated: the save dies after state.pt."""
    run_dir = tmp_path / "run"
    assert main(["train", *TINY[:-4], "train.epochs=1", "train.max_steps=5", "--run-dir", str(run_dir),
                 "--quiet"]) == 0  # fmt: skip
    state = torch.load(run_dir / "state.pt", weights_only=True)
    weights = load_file(run_dir / "last.safetensors")
    assert all(torch.equal(state["model"][k], weights[k]) for k in weights)
    assert state["stats"]["step"] == 5 and state["finished"]


def test_a_second_writer_is_refused_and_a_crashed_writers_lock_is_stale(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(DNN + ["train", *TINY, "train.epochs=50", "--run-dir", str(run_dir), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 60
    while _train_lines(run_dir) < 2 and time.time() < deadline:
        time.sleep(0.01)
    second = _train(run_dir, resume=True)  # the same folder, while the first is writing
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and "is being written by another dnn train" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    config = (run_dir / "config.yaml").read_text()
    assert "hidden_size: 8" in config  # the second writer changed nothing
    from dnn.train import RunLock

    lock = RunLock(run_dir)
    lock.acquire()  # the dead writer's lock is stale: the next writer takes it
    lock.release()


def test_resuming_a_finished_run_changes_nothing_and_says_so(tmp_path):
    run_dir = tmp_path / "run"
    assert _train(run_dir, *TINY, "train.epochs=1", "train.max_steps=6").returncode == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name not in ("log.txt", ".lock")}
    for _ in range(2):
        again = subprocess.run(DNN + ["train", "--resume", "--run-dir", str(run_dir)], capture_output=True, text=True)
        assert again.returncode == 0 and "nothing to do, the run finished" in again.stdout
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name not in ("log.txt", ".lock")}
    assert after == before
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 6


def test_a_folder_that_is_not_a_run_is_never_written_over(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml.bak").write_text("my notes")
    (mine / "results.json").write_text("{}")
    assert main(["train", *TINY, "--run-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty and not a dnn run" in err
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml.bak", "results.json"]
    assert (mine / "results.json").read_text() == "{}"


def test_a_full_disk_during_a_save_is_one_line_and_the_last_checkpoint_resumes_exactly(tmp_path, capsys,
                                                                                      monkeypatch):  # fmt: skip
    whole, run_dir = tmp_path / "whole", tmp_path / "run"
    args = [*TINY, "train.epochs=1", "train.max_steps=12"]
    real_fsync, calls = os.fsync, []
    monkeypatch.setattr(dnn.io.os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    assert main(["train", *args, "--run-dir", str(whole), "--quiet"]) == 0
    every = len(calls)  # the files a whole run flushes to disk (checkpoints, manifest, logs)
    calls.clear()

    def fills_up(fd):
        calls.append(fd)
        if len(calls) > every // 2:  # the disk fills up in the middle of the run, during a checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(dnn.io.os, "fsync", fills_up)
    capsys.readouterr()
    assert main(["train", *args, "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert "state.pt at step" in err and "is kept: continue from it with `dnn train --resume" in err, err
    assert not list(run_dir.glob(".*.tmp"))
    saved = torch.load(run_dir / "state.pt", weights_only=True)["stats"]["step"]
    assert 0 < saved < 12
    monkeypatch.setattr(dnn.io.os, "fsync", real_fsync)
    assert main(["train", "--resume", "--run-dir", str(run_dir), "--quiet"]) == 0
    a, b = load_file(whole / "last.safetensors"), load_file(run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


BAD_OVERRIDES = [
    ("train.threads=100000", "train.threads=100000 is more than 4×"),
    ("model.hidden_size=100000", "training needs about"),
    ("seed=99999999999999999999999", "seed must be an integer in [0, 2**32)"),
    ("seed=-1", "seed must be an integer in [0, 2**32)"),
    ("train.weight_decay=-1", "train.weight_decay must be a finite number ≥ 0"),
    ("train.momentum=-1", "train.momentum must be a finite number ≥ 0"),
    ("train.lr=.nan", "train.lr must be a positive, finite number"),
    ("train.lr=.inf", "train.lr must be a positive, finite number"),
    ("train.clip_norm=.nan", "train.clip_norm must be a positive, finite number"),
    ("train.gamma=-1", "train.gamma"),
    ("data.n_mels=40", "data.n_mels does not apply to data.task 'adding'"),
]


@pytest.mark.parametrize("override,message", BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_a_bad_value_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, override, message):
    run_dir = tmp_path / "run"
    assert main(["train", *TINY, override, "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnn: error: ") and err.count("\n") == 1 and message in err, err
    assert not run_dir.exists()


def test_resume_with_a_recipe_name_or_an_edited_config_is_refused(tmp_path, capsys):
    assert main(["train", "no-such-recipe", "--resume", "--run-dir", str(tmp_path / "x")]) == 2
    assert "--resume continues the run in --run-dir with its saved config" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(DNN + ["train", *TINY, "train.epochs=50", "--run-dir", str(run_dir), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 60
    while _train_lines(run_dir) < 3 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("optimizer: adam", "optimizer: sgd"))
    assert main(["train", "--resume", "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.optimizer: 'adam' → 'sgd'" in err


@pytest.mark.parametrize("case", ["file", "empty config"])
def test_a_run_dir_that_is_a_file_or_an_empty_config_is_one_line(tmp_path, capsys, case):
    path = tmp_path / "run"
    if case == "file":
        path.write_text("not a folder")
        argv = ["train", *TINY, "--run-dir", str(path)]
    else:
        path.mkdir()
        (path / "config.yaml").write_text("")
        argv = ["eval", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnn: error: ") and err.count("\n") == 1, err
