"""An experiment killed after a seed resumes there: the finished seed's record is kept (and the rerun says so), only
the rest trains, and the results equal those of a run that was never interrupted."""

import json

import pytest

import dnn.experiments.clipping as clipping
from dnn.experiments import run_experiment
from dnn.experiments.resume import Progress, Records, duration


def test_a_stage_runs_once_and_is_read_back_the_same(tmp_path):
    messages, calls = [], []
    records = Records(tmp_path, "x", "abc", quick=False, log=messages.append)

    def compute():
        calls.append(1)
        return {"loss": 0.1 + 0.2, "nan": float("nan"), "steps": [1, 2]}

    data, kept = records.stage("seed-0", compute, "seed 0", commands=["a"])
    assert not kept and data["loss"] == 0.1 + 0.2 and data["steps"] == [1, 2]
    commands: list[str] = []
    again, kept = records.stage("seed-0", compute, "seed 0", commands=commands)
    assert kept and len(calls) == 1 and again["loss"] == data["loss"] and again["nan"] != again["nan"]
    assert any("seed 0: kept from an earlier run" in m for m in messages)
    saved = json.loads((tmp_path / "seed-0.json").read_text())
    assert saved["fingerprint"] == "abc" and saved["experiment"] == "x" and saved["quick"] is False


def test_a_record_of_another_protocol_budget_or_a_broken_one_is_run_again(tmp_path):
    Records(tmp_path, "x", "abc", quick=False, log=print).stage("s", lambda: 1, "s", [])
    assert Records(tmp_path, "x", "def", quick=False, log=print).stage("s", lambda: 2, "s", []) == (2, False)
    assert Records(tmp_path, "x", "def", quick=True, log=print).stage("s", lambda: 3, "s", []) == (3, False)
    (tmp_path / "s.json").write_text("{half a record", encoding="utf-8")
    records = Records(tmp_path, "x", "def", quick=True, log=print)
    assert records.stage("s", lambda: 4, "s", []) == (4, False)
    assert records.stage("s", lambda: 5, "s", [], usable=lambda d: False) == (5, False)  # its files are gone


def test_progress_lines_say_what_is_left():
    lines: list[str] = []
    progress = Progress("adding-problem", [0, 1, 2], estimate_s=3600, after_s=600, log=lines.append)
    progress.start()
    progress.done(0, 0, 1000.0, kept=False)
    progress.done(1, 1, 5.0, kept=True)
    assert lines[0] == ("adding-problem: 3 seeds; about 1 h 00 min expected, then about 10 min for the experiments "
                        "after it")  # fmt: skip
    assert lines[1].startswith("adding-problem: seed 0 done in 17 min (1 of 3); about 33 min left")
    assert lines[2].startswith("adding-problem: seed 1 kept (2 of 3); about 17 min left")
    assert duration(42) == "42 s" and duration(3 * 3600 + 120) == "3 h 02 min"


def comparable(result):
    """Everything a results.md shows that does not depend on the clock."""
    return ([(t.title, t.rows) for t in result.tables], [(c.expectation, c.measured, c.passed) for c in result.checks],
            result.commands)  # fmt: skip


def test_a_killed_experiment_resumes_after_its_finished_seed(tmp_path, monkeypatch):
    trained: list[int] = []
    real = clipping._clip_run

    def counting(ctx, seed, lr, clip):
        trained.append(seed)
        return real(ctx, seed, lr, clip)

    def killed(ctx, seed, lr, clip):
        if seed == 1:
            raise KeyboardInterrupt  # the kill, in the middle of the second seed
        return counting(ctx, seed, lr, clip)

    out, runs = tmp_path / "out", tmp_path / "runs"
    monkeypatch.setattr(clipping, "_clip_run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("gradient-clipping", quick=True, out=out, runs=runs, log=lambda m: None)
    records = runs / "gradient-clipping-quick" / "seeds"
    assert sorted(p.name for p in records.iterdir()) == ["seed-0.json"]  # the finished seed only, nothing partial
    assert set(trained) == {0}

    trained.clear()
    monkeypatch.setattr(clipping, "_clip_run", counting)
    lines: list[str] = []
    resumed = run_experiment("gradient-clipping", quick=True, out=out, runs=runs, log=lines.append)
    assert set(trained) == {1}  # seed 0 was not trained again
    assert any("seed 0: kept from an earlier run" in line for line in lines)
    assert any(line.startswith("gradient-clipping: seed 1 done in") for line in lines)

    whole = run_experiment("gradient-clipping", quick=True, out=tmp_path / "out2", runs=tmp_path / "runs2",
                           log=lambda m: None)  # fmt: skip
    assert comparable(resumed) == comparable(whole)
