"""A run directory trusts nothing it finds and loses nothing it is given (each case of issue 24 as a reproduction):
the user's files next to or inside a run, behind a symbolic or hard link, in an --out folder, stay byte-identical;
a changed checkpoint, weights file or data file is one line naming it; every refusal says what to do."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnn.cli import main

HERE = Path(__file__).parent
KILLER = [sys.executable, str(HERE / "killer.py")]
TINY = ["adding-lstm", "data.sizes=[200,40,40]", "data.length=10", "model.hidden_size=8", "train.batch_size=20",
        "train.epochs=1", "train.log_every=1", "train.threads=1", "train.report=false",
        "train.tensorboard=false"]  # fmt: skip  # 10 steps


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder`` (links as their target, files as their bytes), not following links."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = f"-> {os.readlink(path)}" if path.is_symlink() else (path.read_bytes() if path.is_file() else "/")
    return out


def _one_line(capsys, *parts: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("dnn: error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *TINY, "--run-dir", str(run), "--quiet"]) == 0
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.fixture
def mine(tmp_path) -> Path:
    """A file of the user's, outside every run."""
    path = tmp_path / "mine.txt"
    path.write_text("the user's own words\n")
    return path


# -- never follow, never trample ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".lock", "log.txt"])
def test_a_symbolic_link_in_a_run_is_refused_and_its_target_is_untouched(run, mine, capsys, name):
    (run / name).unlink()
    (run / name).symlink_to(mine)
    before, inside = mine.read_bytes(), _snapshot(run)
    assert main(["train", "--resume", "--run-dir", str(run)]) == 2
    _one_line(capsys, str(run / name), "symbolic link")
    assert mine.read_bytes() == before and _snapshot(run) == inside


def test_a_hard_link_in_a_run_is_refused_and_the_other_name_is_untouched(run, mine, capsys):
    (run / "log.txt").unlink()
    os.link(mine, run / "log.txt")
    before = mine.read_bytes()
    assert main(["train", "--resume", "--run-dir", str(run)]) == 2
    _one_line(capsys, str(run / "log.txt"), "hard links")
    assert mine.read_bytes() == before


@pytest.mark.parametrize("foreign", ["log.txt", ".lock"])
def test_a_folder_holding_only_someone_elses_file_is_not_taken_for_a_new_run(tmp_path, capsys, foreign):
    folder = tmp_path / "u"
    folder.mkdir()
    (folder / foreign).write_text("12345")
    assert main(["train", *TINY, "--run-dir", str(folder)]) == 2
    _one_line(capsys, "is not empty and not a dnn run", foreign)
    assert _snapshot(folder) == {foreign: b"12345"}


def test_a_start_that_fails_in_an_empty_folder_of_the_users_leaves_it_as_it_was(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["train", *TINY, "train.threads=100000", "--run-dir", str(folder)]) == 2
    _one_line(capsys, "train.threads=100000")
    assert folder.is_dir() and not list(folder.iterdir())


def test_resuming_a_folder_that_is_not_a_run_creates_and_deletes_nothing(tmp_path, capsys):
    folder = tmp_path / "u"
    folder.mkdir()
    (folder / "config.yaml").write_text("")
    (folder / ".draft.tmp").write_text("a draft")
    before = _snapshot(folder)
    assert main(["train", "--resume", "--run-dir", str(folder)]) == 2
    _one_line(capsys, str(folder), "dnn train RECIPE --run-dir")
    assert _snapshot(folder) == before


def test_a_file_dnn_did_not_write_with_a_name_it_writes_is_refused(run, capsys):
    (run / "results.json").unlink()
    manifest = json.loads((run / ".dnn-manifest.json").read_text())
    del manifest["files"]["results.json"]
    (run / ".dnn-manifest.json").write_text(json.dumps(manifest))
    (run / "results.json").write_text("mine")
    assert main(["train", "--resume", "--run-dir", str(run)]) == 2
    _one_line(capsys, str(run / "results.json"), "not written by dnn")
    assert (run / "results.json").read_text() == "mine"


def test_inspect_out_never_deletes_a_users_pictures(run, tmp_path, capsys):
    paper = tmp_path / "paper"
    (paper / "figures").mkdir(parents=True)
    for name in ("curves.png", "plot.png"):
        (paper / "figures" / name).write_bytes(b"\x89PNG mine " + name.encode())
    before = _snapshot(paper)
    assert main(["inspect", str(run), "--out", str(paper)]) == 2
    _one_line(capsys, str(paper), "not empty and not a dnn report")
    assert _snapshot(paper) == before
    drawn = tmp_path / "drawn"
    assert main(["inspect", str(run), "--out", str(drawn)]) == 0  # a new folder: drawn there
    assert main(["inspect", str(run), "--out", str(drawn)]) == 0  # again: the same report of the same run
    (drawn / "figures" / "notes.png").write_bytes(b"mine")  # the user's, beside dnn's pictures
    assert main(["inspect", str(run), "--out", str(drawn)]) == 2
    _one_line(capsys, "notes.png", "not written by dnn")


def test_a_figures_folder_that_is_a_link_is_refused_and_its_pictures_kept(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "holiday.png").write_bytes(b"\x89PNG holiday")
    shutil.rmtree(run / "figures", ignore_errors=True)
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert main(["inspect", str(run)]) == 2
    _one_line(capsys, str(run / "figures"), "symbolic link")
    assert _snapshot(elsewhere) == {"holiday.png": b"\x89PNG holiday"}


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("lenet") / "run"
    args = ["digits-lenet5", "train.max_steps=2", "train.batch_size=64", "train.threads=1", "train.report=false",
            "train.tensorboard=false"]  # fmt: skip
    assert main(["train", *args, "--run-dir", str(run), "--quiet"]) == 0
    return run


def test_export_out_never_writes_over_another_run_or_a_users_files(lenet, finished, tmp_path, capsys):
    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(lenet, run)
    shutil.copytree(finished, other)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text("{}")
    (mine / "task.json").write_text('{"mine": true}')
    for folder in (other, mine):
        before = _snapshot(folder)
        assert main(["export", str(run), "--format", "torchscript", "--out", str(folder)]) == 2
        _one_line(capsys, str(folder))
        assert _snapshot(folder) == before
    exported = tmp_path / "exported"
    for _ in range(2):  # a new folder, then the same export of the same run again
        assert main(["export", str(run), "--format", "torchscript", "--out", str(exported)]) == 0
    another = tmp_path / "another"  # a run of its own (a copy of a run is the same run)
    assert main(["train", "digits-lenet5", "train.max_steps=1", "train.report=false", "train.tensorboard=false",
                 "--run-dir", str(another), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["export", str(another), "--format", "torchscript", "--out", str(exported)]) == 2
    _one_line(capsys, "of another run")
    assert main(["export", str(run), "--format", "onnx", "--out", str(exported)]) == 2
    _one_line(capsys, "format torchscript")


def test_a_run_that_trained_no_step_starts_again_in_place_and_one_that_did_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    killed = subprocess.run(KILLER + ["written", "state.pt", "1", "--", "train", *TINY, "--run-dir", str(run),
                                      "--quiet"], capture_output=True)  # fmt: skip
    assert killed.returncode == -9 and not (run / "state.pt").exists()  # killed before its first checkpoint
    assert main(["train", *TINY, "train.lr=0.01", "--run-dir", str(run), "--quiet"]) == 0  # again, in place
    assert "lr: 0.01" in (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", *TINY, "--run-dir", str(run)]) == 2
    _one_line(capsys, "already holds a run", f"dnn train --resume --run-dir {run}")


# -- integrity --------------------------------------------------------------------------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a tensor
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    run = tmp_path / "run"
    proc = subprocess.run(KILLER + ["committed", "state.pt", "3", "--", "train", *TINY, "train.checkpoint_every=2",
                                    "--run-dir", str(run), "--quiet"], capture_output=True)  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    _flip_a_byte(run / "state.pt")
    assert main(["train", "--resume", "--run-dir", str(run), "--quiet"]) == 2
    _one_line(capsys, str(run / "state.pt"), "SHA-256", "restore it")
    (run / "state.pt").write_bytes(b"")
    assert main(["train", "--resume", "--run-dir", str(run), "--quiet"]) == 2
    _one_line(capsys, str(run / "state.pt"), "empty (0 bytes)")


def test_a_flipped_byte_in_the_weights_is_one_line_on_load(run, capsys):
    _flip_a_byte(run / "model.safetensors")
    assert main(["eval", str(run)]) == 2
    _one_line(capsys, str(run / "model.safetensors"), "SHA-256")


def test_a_truncated_state_file_without_a_record_is_one_line(tmp_path):
    from dnn.errors import CheckpointError
    from dnn.training.checkpoint import load_state, save_state

    path = tmp_path / "state.pt"
    save_state({"x": torch.arange(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="cut off or damaged"):
        load_state(path)


def _reviews(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            words = rng.choices(["the", "film", "was", "a", "plot"], k=4) + [rng.choice(["good", "bad"])]
            writer.writerow([" ".join(words), label])
    return path


def test_resuming_over_changed_data_is_refused_and_the_vocabulary_never_rebuilt(tmp_path, capsys):
    data, run = _reviews(tmp_path / "reviews.csv", 120, seed=0), tmp_path / "run"
    args = [
        "sentiment-lstm",
        f"data.train={data}",
        "model.embedding_size=8",
        "model.hidden_size=8",
        "train.epochs=2",
        "train.batch_size=16",
        "train.checkpoint_every=2",
        "train.report=false",
        "train.tensorboard=false",
    ]
    proc = subprocess.run(KILLER + ["committed", "state.pt", "3", "--", "train", *args, "--run-dir", str(run),
                                    "--quiet"], capture_output=True)  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    original = data.read_bytes()
    _reviews(data, 120, seed=1)  # edited between the kill and the resume
    vocab = (run / "vocab.json").read_bytes()
    assert main(["train", "--resume", "--run-dir", str(run), "--quiet"]) == 2
    _one_line(capsys, "data.train", str(data), "changed since the run began")
    assert (run / "vocab.json").read_bytes() == vocab
    data.write_bytes(original)
    edited = json.loads(vocab)
    edited["tokens"][4], edited["tokens"][5] = edited["tokens"][5], edited["tokens"][4]
    (run / "vocab.json").write_text(json.dumps(edited))  # the saved vocabulary no longer what the data gives
    assert main(["train", "--resume", "--run-dir", str(run), "--quiet"]) == 2
    _one_line(capsys, str(run / "vocab.json"), "differs from what the data gives now")
    (run / "vocab.json").write_bytes(vocab)
    assert main(["train", "--resume", "--run-dir", str(run), "--quiet"]) == 0


# -- resources --------------------------------------------------------------------------------------------------


def test_a_run_dir_name_too_long_is_one_line(tmp_path, capsys):
    assert main(["train", *TINY, "--run-dir", str(tmp_path / ("x" * 300))]) == 2
    _one_line(capsys, "File name too long")
    assert main(["train", "--resume", "--run-dir", str(tmp_path / ("x" * 300))]) == 2
    _one_line(capsys, "File name too long")


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0  # fmt: skip


def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    if _mount_tmpfs(folder, "ro,size=1m"):
        try:
            assert main(["train", *TINY, "--run-dir", str(folder / "run")]) == 2
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        _one_line(capsys, "Read-only file system")
    else:
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        try:
            assert main(["train", *TINY, "--run-dir", str(folder / "run")]) == 2
        finally:
            folder.chmod(0o755)
        _one_line(capsys, "Permission denied")


def test_a_full_disk_is_one_line_naming_the_checkpoint_kept(tmp_path, capsys, monkeypatch):
    disk = tmp_path / "disk"
    args = [
        *TINY[:1],
        "data.sizes=[2000,40,40]",
        "data.length=10",
        "model.hidden_size=48",
        "train.batch_size=20",
        "train.checkpoint_every=1",
        "train.report=false",
        "train.tensorboard=false",
        "train.epochs=1",
    ]
    if _mount_tmpfs(disk, "size=360k"):  # a real small disk: a few checkpoints fit, then it is full
        try:
            code = main(["train", *args, "--run-dir", str(disk / "run"), "--quiet"])
            err = _one_line(capsys, "No space left on device")
            assert code == 2 and "is kept: continue from it with `dnn train --resume" in err, err
            step = torch.load(disk / "run" / "state.pt", weights_only=True)["stats"]["step"]
            assert f"at step {step}," in err
            assert not list((disk / "run").glob(".*.tmp"))
            assert main(["train", "--resume", "--run-dir", str(disk / "run"), "--quiet"]) == 2  # still full
            _one_line(capsys, "No space left on device")
        finally:
            subprocess.run(["umount", str(disk)], check=True)
    else:  # simulated: every write of a checkpoint fails as a full disk does
        import errno

        import dnn.io

        real = dnn.io.write_temporary

        def full(path, write):
            if Path(path).name == "state.pt" and getattr(full, "armed", False):
                raise dnn.io.resource_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
            full.armed = Path(path).name == "state.pt" or getattr(full, "armed", False)
            return real(path, write)

        monkeypatch.setattr(dnn.io, "write_temporary", full)
        monkeypatch.setattr("dnn.rundir.write_temporary", full)
        assert main(["train", *args, "--run-dir", str(disk / "run"), "--quiet"]) == 2
        _one_line(capsys, "No space left on device", "at step 0, is kept")
