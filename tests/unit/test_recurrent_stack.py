"""dnn.models.recurrent_stack: the recurrent stack's keys are declared once (RecurrentFields) and every recurrent
model's config inherits them, with its own defaults, one check whose message names the key, and the stack the
layer gets."""

import dataclasses

import pytest

from dnn.errors import ConfigError
from dnn.models.recurrent_stack import RecurrentFields, StackConfig
from dnn.models.registry import get_model_spec, list_models

SHARED = [f.name for f in dataclasses.fields(RecurrentFields)]
REQUIRED = {"vocab_size": 10, "num_classes": 3, "src_vocab_size": 10, "tgt_vocab_size": 10}
RECURRENT = [n for n in list_models() if issubclass(get_model_spec(n).config_cls, RecurrentFields)]


def build(name: str, **changes):
    cls = get_model_spec(name).config_cls
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    return cls(**{**{k: v for k, v in REQUIRED.items() if k in required}, **changes})


def test_the_shared_keys_are_the_five_of_the_stack():
    assert SHARED == ["cell", "hidden_size", "num_layers", "dropout", "forget_bias"]


def test_every_model_config_with_the_stack_keys_inherits_them():
    assert sorted(RECURRENT) == ["caption_attention", "language_model", "seq2seq", "sequence_classifier",
                                 "sequence_regressor", "sequence_tagger", "speech_ctc", "video_cnn_lstm"]  # fmt: skip
    for name in list_models():
        keys = {f.name for f in dataclasses.fields(get_model_spec(name).config_cls)}
        assert not {"forget_bias", "num_layers"} <= keys or name in RECURRENT, name


@pytest.mark.parametrize(
    "name, hidden, layers, dropout",
    [
        ("sequence_classifier", 128, 1, 0.0),
        ("sequence_tagger", 128, 1, 0.0),
        ("sequence_regressor", 128, 1, 0.0),
        ("seq2seq", 256, 1, 0.0),
        ("language_model", 256, 2, 0.0),
        ("speech_ctc", 160, 2, 0.1),
        ("video_cnn_lstm", 64, 1, 0.0),
        ("caption_attention", 256, 1, 0.0),
    ],
)
def test_each_model_keeps_its_own_defaults(name, hidden, layers, dropout):
    config = build(name)
    assert (config.cell, config.hidden_size, config.num_layers, config.dropout, config.forget_bias) == (
        "lstm", hidden, layers, dropout, 1.0
    )  # fmt: skip


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize(
    "key, value, words",
    [
        ("hidden_size", 0, "hidden_size must be a positive integer, got 0"),
        ("num_layers", 0, "num_layers must be a positive integer, got 0"),
        ("dropout", 1.0, "dropout must be a number in [0, 1), got 1.0"),
        ("forget_bias", float("nan"), "forget_bias must be a number or None, got nan"),
        ("cell", "lstm2", "cell must be one of "),
    ],
)
def test_one_check_names_the_key(name, key, value, words):
    with pytest.raises(ConfigError) as info:
        build(name, **{key: value})
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_model_narrows_the_cells_it_takes():
    for name in ("speech_ctc", "caption_attention"):
        with pytest.raises(ConfigError, match=r"cell must be one of 'lstm', 'gru'; got 'rnn'"):
            build(name, cell="rnn")
    assert build("video_cnn_lstm", cell="rnn").cell == "rnn"


def test_the_stack_takes_the_shared_keys_and_the_model_s_own():
    config = build("sequence_classifier", cell="gru", hidden_size=8, num_layers=2, dropout=0.25, forget_bias=None,
                   bidirectional=True, residual=True)  # fmt: skip
    assert config.stack(bidirectional=config.bidirectional, residual=config.residual) == StackConfig(
        cell="gru", hidden_size=8, num_layers=2, dropout=0.25, forget_bias=None, bidirectional=True, residual=True
    )
    assert config.stack() == StackConfig(cell="gru", hidden_size=8, num_layers=2, dropout=0.25, forget_bias=None)
    assert config.stack(hidden_size=4).hidden_size == 4  # an encoder of its own width


def test_the_configs_are_keyword_only():
    with pytest.raises(TypeError):
        get_model_spec("sequence_classifier").config_cls(10, 3)
