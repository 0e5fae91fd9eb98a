"""Vocab and LabelVocab: fixed special ids, deterministic order, min_freq/max_size, round trips, file errors."""

import errno
import json
import os
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import LabelEncoder

import dnn.io
from dnn.data.vocab import EOS, PAD, SOS, SPECIALS, UNK, LabelVocab, Vocab
from dnn.errors import ConfigError, DataError, DnnError


def _reference_order(corpus, min_freq=1, max_size=None):
    """Tokens of the rule written out: count ≥ min_freq, by count desc, ties by first position, capped."""
    first, counts = {}, Counter()
    for tokens in corpus:
        for t in tokens:
            first.setdefault(t, len(first))
            counts[t] += 1
    kept = sorted(
        (t for t in counts if counts[t] >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], first[t])
    )
    return kept if max_size is None else kept[: max_size - 4]


def test_special_tokens_have_fixed_ids():
    v = Vocab.build([["b", "a"]])
    assert v.tokens[:4] == ["<pad>", "<unk>", "<sos>", "<eos>"] == [PAD, UNK, SOS, EOS]
    assert (v.pad_id, v.unk_id, v.sos_id, v.eos_id) == (0, 1, 2, 3)
    assert [v.index(t) for t in SPECIALS] == [0, 1, 2, 3]
    assert len(Vocab()) == 4


def test_order_is_frequency_then_first_occurrence():
    corpus = [["b", "a", "c", "a"], ["c", "d", "b"], ["e"]]
    # counts: a 2, b 2, c 2, d 1, e 1; first seen: b, a, c, d, e
    assert Vocab.build(corpus).tokens[4:] == ["b", "a", "c", "d", "e"]


def test_min_freq_and_max_size():
    corpus = [["x"] * 5 + ["y"] * 3 + ["z"] * 2 + ["w"]]
    assert Vocab.build(corpus, min_freq=2).tokens[4:] == ["x", "y", "z"]
    assert Vocab.build(corpus, min_freq=3).tokens[4:] == ["x", "y"]
    v = Vocab.build(corpus, max_size=6)  # max_size counts the 4 special tokens
    assert len(v) == 6 and v.tokens[4:] == ["x", "y"]
    assert len(Vocab.build(corpus, max_size=4)) == 4
    assert v.index("z") == v.unk_id and "z" not in v and "x" in v


@settings(max_examples=60, deadline=None)
@given(
    corpus=st.lists(st.lists(st.sampled_from(list("abcdefg") + ["<unk>"]), max_size=8), max_size=8),
    min_freq=st.integers(1, 3),
    max_size=st.none() | st.integers(4, 9),
)
def test_build_matches_the_written_out_rule(corpus, min_freq, max_size):
    v = Vocab.build(corpus, min_freq=min_freq, max_size=max_size)
    assert v.tokens == [*SPECIALS, *_reference_order(corpus, min_freq, max_size)]


def test_special_tokens_in_the_corpus_are_not_added_twice():
    v = Vocab.build([["<eos>", "a", "<pad>", "a"]])
    assert v.tokens == [*SPECIALS, "a"]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"min_freq": 0}, "min_freq"), ({"max_size": 3}, "max_size"), ({"min_freq": 1.5}, "min_freq")],
)
def test_build_validates_its_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Vocab.build([["a"]], **kwargs)


def test_build_rejects_untokenized_text():
    with pytest.raises(ConfigError, match="item 1 is a str"):
        Vocab.build([["a"], "hello world"])


def test_constructor_rejects_duplicates_and_specials():
    with pytest.raises(ConfigError, match="more than once"):
        Vocab(["a", "b", "a"])
    with pytest.raises(ConfigError, match="special token"):
        Vocab(["a", "<sos>"])


def test_encode_decode_round_trip():
    v = Vocab.build([["the", "cat", "sat"], ["the", "dog"]])
    tokens = ["the", "dog", "sat"]
    ids = v.encode(tokens)
    assert ids == [v.index(t) for t in tokens] and all(i >= 4 for i in ids)
    assert v.decode(ids) == tokens
    framed = v.encode(tokens, add_sos=True, add_eos=True)
    assert framed == [2, *ids, 3]
    assert v.decode(framed) == tokens
    assert v.decode(framed, strip_special=False) == ["<sos>", *tokens, "<eos>"]
    assert v.decode(torch.tensor(framed)) == tokens


def test_unknown_tokens_and_eos():
    v = Vocab.build([["a", "b"]])
    assert v.encode(["a", "zebra"]) == [4, 1]
    assert v.decode([4, 1]) == ["a", "<unk>"]  # <unk> stands for a word, so it stays
    generated = [2, 4, 3, 5, 5, 0, 0]
    assert v.decode(generated, stop_at_eos=True) == ["a"]
    assert v.decode(generated) == ["a", "b", "b"]
    assert v.decode(generated, strip_special=False, stop_at_eos=True) == ["<sos>", "a"]


def test_token_lookup():
    v = Vocab(["x", "y"])
    assert v.token(5) == "y" and v.index("y") == 5 and v.index("nope") == 1
    with pytest.raises(DataError, match="token id 6 is out of range for a vocabulary of 6"):
        v.token(6)
    with pytest.raises(DataError, match="out of range"):
        v.decode([0, -1])


def test_save_load_round_trip(tmp_path):
    v = Vocab.build([["é", "a", "a", " ", "\n"], ["b"]])
    path = v.save(tmp_path / "run" / "vocab.json")
    assert Vocab.load(path) == v
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"] == v.tokens
    assert os.listdir(path.parent) == ["vocab.json"]  # no temporary file left behind
    assert Vocab.load(path, expected_size=len(v)) == v


def test_save_is_atomic(tmp_path, monkeypatch):
    path = Vocab(["old"]).save(tmp_path / "vocab.json")
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dnn.io.os, "fsync", full_disk)
    with pytest.raises(DnnError, match=r"vocab.json: cannot write \(No space left on device\)"):
        Vocab(["new"]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["vocab.json"]


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "vocab.json: empty file, expected a dnn.vocab JSON file"),
        ('{"format": "dnn.vocab",\n "version": 1,\n "tokens": [', "vocab.json:3: not valid JSON"),
        (b'{"format": "dnn.vocab", "tokens": ["\xff"]}', "vocab.json:1: invalid UTF-8"),
        ("[1, 2]", "vocab.json: not a dnn.vocab file (it holds a JSON list"),
        (
            '{"format": "dnn.labels", "version": 1, "labels": ["a"]}',
            "vocab.json: not a dnn.vocab file (its format is 'dnn.labels')",
        ),
        ('{"format": "dnn.vocab", "version": 7, "tokens": []}', "vocab.json: dnn.vocab version 7 is not supported"),
        ('{"format": "dnn.vocab", "version": 1, "tokens": "abc"}', "vocab.json: 'tokens' must be a list of strings"),
        (
            '{"format": "dnn.vocab", "version": 1, "tokens": ["a", "b"]}',
            "vocab.json: the first tokens must be the special",
        ),
        (
            '{"format": "dnn.vocab", "version": 1, "tokens": ["<pad>", "<unk>", "<sos>", "<eos>", "x", "x"]}',
            "vocab.json: tokens lists 'x' more than once",
        ),
    ],
)
def test_load_rejects_a_corrupt_file(tmp_path, content, message):
    path = _write(tmp_path / "vocab.json", content)
    with pytest.raises(DataError) as info:
        Vocab.load(path)
    assert str(info.value).startswith(str(tmp_path / message.split(":")[0]))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_load_missing_directory_and_size_mismatch(tmp_path):
    with pytest.raises(DataError, match="nope.json: no such file"):
        Vocab.load(tmp_path / "nope.json")
    with pytest.raises(DataError, match="is a directory"):
        Vocab.load(tmp_path)
    path = Vocab(["a"]).save(tmp_path / "v.json")
    with pytest.raises(DataError, match=r"v.json: has 5 tokens, but the model expects a vocabulary of 9"):
        Vocab.load(path, expected_size=9)


# ------------------------------------------------------------------------------------------------- labels


def test_label_vocab_matches_sklearn_label_encoder():
    labels = ["pos", "neg", "neutral", "neg", "B-PER", "O", "pos"]
    lv = LabelVocab.build(labels)
    encoder = LabelEncoder().fit(labels)
    assert lv.labels == list(encoder.classes_)
    assert [lv.encode(label) for label in labels] == encoder.transform(labels).tolist()
    assert [lv.decode(i) for i in range(len(lv))] == lv.labels
    assert "O" in lv and "X" not in lv and len(lv) == 5


def test_label_vocab_keeps_the_given_order():
    lv = LabelVocab(["O", "B-PER", "I-PER"])
    assert lv.encode("O") == 0 and lv.encode("I-PER") == 2 and lv.decode(1) == "B-PER"


def test_unseen_label_names_file_line_and_label():
    lv = LabelVocab(["neg", "pos"])
    with pytest.raises(DataError) as info:
        lv.encode("neutral", path="data/test.csv", line=12)
    assert str(info.value) == (
        "data/test.csv:12: label 'neutral' was never seen in training (known labels: 'neg', 'pos')"
    )
    with pytest.raises(DataError, match="^label 'x' was never seen in training"):
        lv.encode("x")
    with pytest.raises(DataError, match="label id 2 is out of range for 2 labels"):
        lv.decode(2)


def test_label_vocab_validation():
    with pytest.raises(ConfigError, match="at least one label"):
        LabelVocab([])
    with pytest.raises(ConfigError, match="more than once"):
        LabelVocab(["a", "a"])
    with pytest.raises(ConfigError, match=r"labels\[1\] must be a non-empty str"):
        LabelVocab(["a", ""])


def test_label_vocab_save_load(tmp_path):
    lv = LabelVocab(["pos", "neg", "ünï"])
    path = lv.save(tmp_path / "labels.json")
    assert LabelVocab.load(path) == lv and LabelVocab.load(path).labels == ["pos", "neg", "ünï"]
    with pytest.raises(DataError, match="labels.json: has 3 labels, but the model expects 2"):
        LabelVocab.load(path, expected_size=2)
    with pytest.raises(DataError, match="not a dnn.vocab file"):
        Vocab.load(path)
    bad = _write(tmp_path / "bad.json", '{"format": "dnn.labels", "version": 1, "labels": ["a", ""]}')
    with pytest.raises(DataError, match=r"bad.json: labels\[1\] must be a non-empty str"):
        LabelVocab.load(bad)


_json_files = st.fixed_dictionaries(
    {
        "format": st.sampled_from(["dnn.vocab", "dnn.labels", "other"]),
        "version": st.sampled_from([1, 2, "1", None]),
        "tokens": st.lists(st.sampled_from([*SPECIALS, "a", "b", "", 3, None]), max_size=8),
        "labels": st.lists(st.sampled_from(["a", "b", "", 3]), max_size=4),
    }
).map(lambda d: json.dumps(d).encode())


@pytest.mark.parametrize("load", [Vocab.load, LabelVocab.load])
@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=100).map(str.encode) | _json_files)
def test_random_bytes_load_or_fail_with_a_data_error(tmp_path_factory, load, data):
    path = tmp_path_factory.mktemp("random") / "vocab.json"
    path.write_bytes(data)
    try:
        result = load(path)
    except DataError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
    else:
        assert isinstance(result, (Vocab, LabelVocab)) and result.save(path) and load(path) == result
