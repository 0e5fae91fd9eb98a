from dataclasses import dataclass, field
from typing import Literal

import pytest

from dnn.config import apply_overrides, from_dict, load_config, load_yaml, save_yaml, to_dict
from dnn.errors import ConfigError


@dataclass
class Train:
    lr: float = 1e-3
    epochs: int = 1
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    clip_norm: float | None = 1.0
    milestones: tuple[int, ...] = ()


@dataclass
class Run:
    seed: int = 0
    name: str = "run"
    train: Train = field(default_factory=Train)


def test_yaml_plus_dotted_overrides_fill_typed_dataclasses(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("seed: 3\ntrain:\n  lr: 0.1\n  milestones: [2, 4]\n")
    cfg = load_config(path, ["train.epochs=5", "train.lr=3e-4", "train.clip_norm=null", "name=x"], Run)
    assert cfg == Run(seed=3, name="x", train=Train(lr=3e-4, epochs=5, clip_norm=None, milestones=(2, 4)))
    assert isinstance(cfg.train.lr, float)


def test_int_is_accepted_for_float_but_nothing_else_is_coerced():
    assert from_dict(Run, {"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"^train.epochs must be an integer, got 2.5$"):
        from_dict(Run, {"train": {"epochs": 2.5}})
    with pytest.raises(ConfigError, match="seed must be an integer, got True"):
        from_dict(Run, {"seed": True})


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["train.lrr=1"], "unknown key train.lrr; did you mean train.lr?"),
        (["trian.lr=1"], "unknown key trian; did you mean train?"),
        (
            ["train.optimizer=adma"],
            "train.optimizer must be one of 'sgd', 'adam', 'adamw'; got 'adma' (did you mean 'adam'?)",
        ),
        (["train.lr=fast"], "train.lr must be a number, got 'fast'"),
        (["train=3"], "train must be a mapping of keys to values, got 3"),
        (["seed.x=1"], "seed must be an integer, got {'x': 1}"),
        (["seed"], "override 'seed' must look like key.subkey=value"),
    ],
)
def test_errors_name_the_key_and_the_closest_valid_one(overrides, message):
    with pytest.raises(ConfigError) as err:
        from_dict(Run, apply_overrides({}, overrides))
    assert str(err.value) == message


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\ntrain:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = from_dict(Run, {"train": {"milestones": [1, 2]}})
    save_yaml(to_dict(cfg), tmp_path / "config.yaml")
    assert from_dict(Run, load_yaml(tmp_path / "config.yaml")) == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left behind


@dataclass
class Sized:
    sizes: tuple[int, int, int] = (1, 2, 3)


def test_fixed_length_tuples_are_checked_item_by_item():
    assert from_dict(Sized, {"sizes": [10, 20, 30]}).sizes == (10, 20, 30)
    with pytest.raises(ConfigError, match=r"sizes\[1\] must be an integer, got 'x'"):
        from_dict(Sized, {"sizes": [1, "x", 3]})
    with pytest.raises(ConfigError, match="sizes must have 3 items, got 2"):
        from_dict(Sized, {"sizes": [1, 2]})


@pytest.mark.parametrize(
    "task,given,expected",
    [("text_classification", None, "word"), ("seq2seq", None, "char"),
     ("language_model", None, "char"), ("text_classification", "bpe", "bpe"), ("seq2seq", "word", "word")],
)  # fmt: skip
def test_the_tokenizer_defaults_to_words_for_classification_and_characters_for_generation(task, given, expected):
    from dnn.run_config import RunConfig

    data = {"task": task, **({"tokenizer": given} if given else {})}
    assert RunConfig.from_dict({"data": data, "model": {"name": "lenet5"}}).data.tokenizer == expected
    with pytest.raises(ConfigError, match="data.tokenizer"):
        RunConfig.from_dict({"data": {"task": task, "tokenizer": "chars"}, "model": {"name": "lenet5"}})


@pytest.mark.parametrize(
    "task,key,owner",
    [("tagging", "tokenizer", "language_model, seq2seq, text_classification"), ("digits", "n_mels", "speech"),
     ("seq2seq", "image_size", "digits, image_folder"),
     ("speech", "max_length", "seq2seq, tagging, text_classification")],
)  # fmt: skip
def test_a_data_key_of_another_task_is_an_error_naming_the_task(task, key, owner):
    from dnn.run_config import RunConfig

    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"data": {"task": task, key: 1}, "model": {"name": "lenet5"}})
    assert str(info.value) == f"data.{key} does not apply to data.task {task!r} (it is a key of {owner}); remove it"


def test_every_task_has_its_own_data_config_and_a_registered_task():
    from dnn.run_config import DATA_CONFIGS, RunConfig
    from dnn.tasks import get_task, list_tasks
    from dnn.tasks.base import Task

    assert list_tasks() == sorted(DATA_CONFIGS)
    for name, cls in DATA_CONFIGS.items():
        cfg = RunConfig.from_dict({"data": {"task": name}, "model": {"name": "lenet5"}})
        assert type(cfg.data) is cls
        assert issubclass(get_task(name), Task) and name in get_task(name).task_names
