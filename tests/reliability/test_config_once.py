"""A run's config is built once and passed whole: one `dnn train dates-attention` constructs each of its config
classes once (the run's, the train section's, the data section's, the model's: construction is where a config
is validated) and builds its model once, the memory check included; loading the run back does the same."""

from __future__ import annotations

import collections
import dataclasses

from dnn.cli import main
from dnn.models import registry
from dnn.run import load_run
from dnn.run_config import RunConfig, Seq2SeqData, TrainConfig

ARGV = ["train", "dates-attention", "data.sizes=[64,16,16]", "train.max_steps=2", "train.epochs=1",
        "train.eval_every=0", "train.threads=1"]  # fmt: skip


def _counting(monkeypatch) -> tuple[collections.Counter, list]:
    """Count the constructions of the run's config classes (not their subclasses') and the model's builds."""
    spec = registry.get_model_spec("seq2seq")
    counts: collections.Counter = collections.Counter()
    for cls in (RunConfig, TrainConfig, Seq2SeqData, spec.config_cls):

        def init(self, *args, _cls=cls, _original=cls.__init__, **kwargs):
            if type(self) is _cls:
                counts[_cls.__name__] += 1
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)
    builds: list = []
    counted = dataclasses.replace(spec, factory=lambda config: builds.append(config) or spec.factory(config))
    monkeypatch.setitem(registry._REGISTRY, "seq2seq", counted)
    return counts, builds


def _expected() -> dict[str, int]:
    model_config = registry.get_model_spec("seq2seq").config_cls.__name__
    return {"RunConfig": 1, "TrainConfig": 1, "Seq2SeqData": 1, model_config: 1}


def test_one_training_run_validates_each_config_once_and_builds_one_model(tmp_path, monkeypatch):
    counts, builds = _counting(monkeypatch)
    assert main([*ARGV, "--run-dir", str(tmp_path / "run"), "train.report=false"]) in (0, None)
    assert dict(counts) == _expected()
    assert len(builds) == 1, f"the model was built {len(builds)} times"


def test_loading_a_run_back_validates_each_config_once_and_builds_one_model(tmp_path, monkeypatch):
    assert main([*ARGV, "--run-dir", str(tmp_path / "run"), "train.report=false"]) in (0, None)
    counts, builds = _counting(monkeypatch)
    run = load_run(tmp_path / "run")
    assert dict(counts) == _expected()
    assert len(builds) == 1 and run.cfg.model.config is builds[0]
