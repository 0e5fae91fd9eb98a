"""What a new user trips on, each now reachable and loud: transfer that loads nothing is an error, the frozen body
can be unfrozen from the command line, a user's speech recordings win over the recipe's built-in source, n-best
translations and the length penalty from the CLI, and a CNN's kernel, stride, padding and pooling from a config."""

from __future__ import annotations

import json

import pytest
import torch

from dnn.cli import main
from dnn.errors import ConfigError
from dnn.models.registry import create_model, model_config
from dnn.run_config import RunConfig

LENET = ["digits-lenet5", "train.epochs=1", "train.batch_size=64", "train.report=false", "train.tensorboard=false"]


def test_transfer_that_does_not_fit_is_one_line_and_leaves_no_run(tmp_path, capsys):
    source = tmp_path / "lenet"
    assert main(["train", *LENET, "train.max_steps=2", "--run-dir", str(source), "--quiet"]) == 0
    target = tmp_path / "resnet"
    argv = ["train", "digits-resnet", f"train.init_from={source}", "train.freeze_up_to=layer2", "--run-dir",
            str(target)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dnn: error: train.init_from: ")
    assert "does not fit resnet18" in err and "missing keys (conv1.weight" in err
    assert not target.exists()


def test_the_frozen_body_is_unfrozen_after_n_epochs_and_then_trains(tmp_path, capsys):
    source = tmp_path / "source"
    assert main(["train", *LENET, "train.max_steps=5", "--run-dir", str(source), "--quiet"]) == 0
    run_dir = tmp_path / "tuned"
    argv = ["train", *LENET, "train.epochs=2", f"train.init_from={source}", "train.freeze_up_to=body",
            "train.unfreeze_after=1", "--run-dir", str(run_dir)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "transfer: frozen stages conv1, conv2, fc1, fc2" in out
    assert "transfer: epoch 2: stages conv1, conv2, fc1, fc2 unfrozen" in out
    from safetensors.torch import load_file

    before, after = load_file(source / "model.safetensors"), load_file(run_dir / "last.safetensors")
    assert not torch.equal(before["features.0.weight"], after["features.0.weight"])  # the body trained again
    capsys.readouterr()
    assert main(["train", *LENET, "train.unfreeze_after=1", "--run-dir", str(tmp_path / "x")]) == 2
    assert "set train.freeze_up_to too" in capsys.readouterr().err


def test_a_users_recordings_win_over_the_recipes_built_in_speech():
    cfg = RunConfig.from_dict({"data": {"task": "speech", "source": "digits", "train": "mine.tsv"},
                               "model": {"name": "speech_ctc"}})  # fmt: skip
    assert cfg.data.source is None and cfg.data.train == "mine.tsv"


def test_n_best_translations_and_the_length_penalty_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "dates"
    argv = ["train", "dates-attention", "data.sizes=[64,16,16]", "train.max_steps=3", "train.batch_size=16",
            "model.hidden_size=16", "train.report=false", "--run-dir", str(run_dir), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["translate", str(run_dir), "March 3, 2021", "--beam-size", "4", "--n-best", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "3"]
    scores = [float(line.split("\t")[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert main(["translate", str(run_dir), "x", "--beam-size", "2", "--n-best", "3"]) == 2
    assert capsys.readouterr().err == "dnn: error: --n-best 3 needs --beam-size of at least 3, got 2\n"
    with pytest.raises(SystemExit) as usage:  # checked by the option's schema as the arguments are parsed
        main(["translate", str(run_dir), "x", "--length-penalty", "-1"])
    assert usage.value.code == 2
    assert "argument --length-penalty: must be a number from 0 to 5, got -1.0" in capsys.readouterr().err


def test_a_cnns_kernel_stride_padding_and_pool_come_from_the_config(tmp_path):
    model = create_model("convnet", model_config("convnet", kernel_size=5, stride=2, padding=1, pool=1, image_size=32))
    assert model.conv1[0].kernel_size == (5, 5) and model.conv1[0].stride == (2, 2) and model.conv1[0].padding == (1, 1)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="the 8×8 image shrinks to nothing at conv2"):
        create_model("convnet", model_config("convnet", kernel_size=7, padding=0))
    run_dir = tmp_path / "cnn"
    argv = ["train", *LENET, "model.name=convnet", "model.kernel_size=5", "train.max_steps=2", "--run-dir",
            str(run_dir), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 2


def test_generate_with_a_beam_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "lm"
    argv = ["train", "charlm-pydoc", "train.max_steps=3", "model.hidden_size=16", "model.embedding_size=16",
            "train.report=false", "--run-dir", str(run_dir), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--prompt", "def ", "--length", "12", "--beam-size", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out.rstrip("\n")) <= 4 + 12
    again = main(["generate", str(run_dir), "--prompt", "def ", "--length", "12", "--beam-size", "4"])
    assert again == 0 and capsys.readouterr().out == out  # a beam is deterministic
    with pytest.raises(SystemExit) as usage:
        main(["generate", str(run_dir), "--beam-size", "0"])
    assert usage.value.code == 2
    assert "argument --beam-size: must be an integer from 1 to 16, got 0" in capsys.readouterr().err
