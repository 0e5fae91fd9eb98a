"""The shape of the code (DESIGN.md), checked on the real ``src/`` by the rules of :mod:`architecture`.

    basics <- config <- rundir <- layers <- data <- models <- run_config <- decoding/transfer <- training <- tasks
    <- run (load_run) <- inspect <- export <- train <- experiments <- demo <- serve <- cli

Every module has a layer and imports only its own layer or lower ones; no import cycle, function-level imports
included (a late import cannot hide a cycle); no private name taken from another module, through any alias; every
``hasattr`` and three-argument ``getattr`` says why in a ``# probe:`` comment above it; every file under 500 lines.
What a task or a predictor can do is declared (:class:`dnn.tasks.base.Task`, :class:`dnn.tasks.base.Predictor`).
``test_architecture_check.py`` shows that each rule fails on a tree that breaks it.
"""

from __future__ import annotations

import inspect as pyinspect
from pathlib import Path

import pytest
from architecture import (
    MAX_LINES,
    check_cycles,
    check_file_length,
    check_layers,
    check_private_names,
    check_probes,
)

SRC = Path(__file__).resolve().parents[2] / "src"

KNOWN_BARE_PROBES: frozenset[tuple[str, str]] = frozenset()  # (file, call): probes allowed without a reason
KNOWN_LONG_FILES: frozenset[str] = frozenset()  # files allowed over the limit


def test_every_module_has_a_layer_and_imports_point_down_the_layers():
    wrong = check_layers(SRC)
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules():
    cycles = check_cycles(SRC)
    assert not cycles, "\n".join(cycles)


def test_no_private_name_is_taken_from_another_module():
    private = check_private_names(SRC)
    assert not private, "\n".join(private)


def test_every_probe_says_why_duck_typing_is_right_there():
    bare = check_probes(SRC, known=KNOWN_BARE_PROBES)
    assert not bare, "\n".join(bare)


def test_source_files_stay_small():
    long = check_file_length(SRC, MAX_LINES, known=KNOWN_LONG_FILES)
    assert not long, "\n".join(long)


def test_every_registered_task_implements_the_contract_and_its_predictor_declares_a_kind():
    from dnn.tasks import get_task, list_tasks
    from dnn.tasks.base import PREDICTOR_KINDS, Predictor, Task

    for name in list_tasks():
        cls = get_task(name)
        assert issubclass(cls, Task) and not pyinspect.isabstract(cls), name
        predictor = pyinspect.signature(cls.load_predictor).return_annotation
        assert isinstance(predictor, str) and predictor, f"{cls.__name__}.load_predictor names no predictor class"
    kinds = {sub.kind for sub in _subclasses(Predictor)}
    assert kinds == set(PREDICTOR_KINDS)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_a_predictor_without_a_known_kind_is_refused():
    from dnn.tasks.base import Predictor

    with pytest.raises(TypeError, match="kind must be one of"):

        class Nameless(Predictor):  # noqa: F841
            kind = "summarise"


def test_create_model_takes_its_config_built_once():
    from dnn.errors import ConfigError
    from dnn.models.lenet import LeNet5Config
    from dnn.models.registry import create_model

    config = LeNet5Config(num_classes=3, in_channels=1, image_size=32)
    model = create_model("lenet5", config)
    assert (model.config.num_classes, model.config.in_channels, model.config.image_size) == (3, 1, 32)
    with pytest.raises(TypeError):  # loose keyword arguments are model_config's, never create_model's
        create_model("lenet5", config, num_classes=4)
    with pytest.raises(TypeError):
        create_model("lenet5", num_classes=4)
    with pytest.raises(ConfigError, match="takes a Seq2SeqConfig, got LeNet5Config"):
        create_model("seq2seq", config)
