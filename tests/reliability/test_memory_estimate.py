"""A run too big for the memory available is one line and exit 2 within seconds, before its data is made or its
first step (its model is built once, on the meta device, and materialised only after the check), and leaves no
run directory; the estimate behind it (dnn.training.memory) scales with the batch and the sequence and stays near
a real step's peak.

The available memory is pinned with ``DNN_MEMORY_AVAILABLE``, so that the outcome does not depend on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnn.errors import ConfigError
from dnn.models.deferred import Deferred
from dnn.models.registry import create_model
from dnn.run import resolve_config
from dnn.tasks import make_task
from dnn.training.memory import OVERRIDE, available_bytes, check_memory, estimate

ROOT = Path(__file__).resolve().parents[2]
AVAILABLE = "8G"


def _prepared(recipe: str, overrides: list[str]):
    cfg = resolve_config(recipe, overrides)
    task = make_task(cfg)
    task.prepare(lambda message: None)
    config = cfg.model.resolve(task.model_options())
    return cfg, task, Deferred(lambda: create_model(cfg.model.name, config)).model


@pytest.mark.parametrize(
    ("recipe", "overrides", "largest", "keys"),
    [
        ("dates-attention", ["data.sizes=[100000000,10,10]"], "the data needs about", "lower data.sizes"),
        ("dates-attention", ["train.batch_size=100000", "model.hidden_size=2048"], "for one step (largest: activations",
         "lower train.batch_size or data.max_length"),
        ("charlm-pydoc", ["data.length=10000000"], "for one step (largest: activations",
         "lower data.length or train.batch_size"),
    ],
)  # fmt: skip
def test_a_run_too_big_is_refused_in_seconds_with_one_line_and_no_run_directory(tmp_path, recipe, overrides,
                                                                                largest, keys):  # fmt: skip
    run_dir = tmp_path / "run"
    env = {**os.environ, OVERRIDE: AVAILABLE}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dnn.cli", "train", recipe, *overrides, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1, error
    assert error.startswith("dnn: error: ") and "more than the 8.0 GiB available" in error
    assert largest in error and error.endswith(keys), error
    assert not run_dir.exists()
    assert seconds < 30, f"refused after {seconds:.1f} s"


def test_a_normal_recipe_is_not_refused(monkeypatch):
    monkeypatch.setenv(OVERRIDE, AVAILABLE)
    for recipe in ("dates-attention", "adding-lstm"):
        cfg, task, model = _prepared(recipe, [])
        check_memory(task, cfg)
        check_memory(task, cfg, model)
        assert estimate(task, cfg, model).total < 2**30


def test_the_estimate_grows_linearly_in_batch_size_and_length():
    def activations(*overrides: str) -> int:
        cfg, task, model = _prepared("adding-lstm", ["data.sizes=[200,10,10]", *overrides])
        return estimate(task, cfg, model).terms["activations"]

    for small, large in [(8, 16), (32, 64)]:  # probed as they are; probed at 16 and scaled
        ratio = activations(f"train.batch_size={large}") / activations(f"train.batch_size={small}")
        assert ratio == pytest.approx(2.0, rel=0.01)
    for small, large in [(20, 40), (1000, 2000)]:  # probed as they are; extrapolated from probes ≤ 64 steps
        ratio = activations(f"data.length={large}") / activations(f"data.length={small}")
        assert ratio == pytest.approx(2.0, rel=0.05)


def test_the_estimate_counts_the_optimizer_state_the_config_names():
    def optimizer(*overrides: str) -> tuple[int, int]:
        cfg, task, model = _prepared("adding-lstm", ["data.sizes=[200,10,10]", *overrides])
        terms = estimate(task, cfg, model).terms
        return terms["optimizer"], terms["parameters"]

    state, weights = optimizer("train.optimizer=adamw")
    assert state == 2 * weights
    assert optimizer("train.optimizer=sgd")[0] == weights
    assert optimizer("train.optimizer=sgd", "train.momentum=0")[0] == 0


def test_the_estimate_is_near_a_real_steps_peak():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--one", "adding-lstm",
                           "train.batch_size=500", "data.sizes=[2000,10,10]"],
                          capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0.5 <= result["estimate"] / result["measured"] <= 2.0, result


def test_the_available_memory_can_be_pinned_and_is_checked(monkeypatch):
    for given, expected in [("1073741824", 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29), ("2g", 2**31)]:
        monkeypatch.setenv(OVERRIDE, given)
        assert available_bytes() == expected
    monkeypatch.setenv(OVERRIDE, "plenty")
    with pytest.raises(ConfigError, match=f"{OVERRIDE} must be a number of bytes"):
        available_bytes()
    monkeypatch.delenv(OVERRIDE)
    assert available_bytes() is None or available_bytes() > 0
