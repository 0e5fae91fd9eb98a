"""Tokenizers: round trips, the BPE merges against a hand computation, saving with a run, the factory's errors."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnn.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, make_tokenizer
from dnn.errors import ConfigError, DataError

CORPUS = [
    "the cat sat on the mat.",
    "the dog sat on the log!",
    "a cat and a dog, on a mat",
    "Über-naïve café: 3 cats\tand\n2 dogs",
] * 4


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer(vocab_size=300, min_frequency=2).train(CORPUS)


def _all_kinds(bpe):
    return [CharTokenizer(), CharTokenizer(lowercase=True), WordTokenizer(), WordTokenizer(lowercase=True), bpe]


# ------------------------------------------------------------------------------------------------ char, word


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_char_round_trip_is_exact(text):
    tokenizer = CharTokenizer()
    assert tokenizer.tokenize(text) == list(text)
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


def test_char_keeps_spaces_and_lowercases_on_request():
    assert CharTokenizer().tokenize("A b\n") == ["A", " ", "b", "\n"]
    assert CharTokenizer(lowercase=True).tokenize("A b") == ["a", " ", "b"]


def test_word_tokens_follow_the_documented_regex():
    text = "Hello, world! It's 3.5 km_h…"
    assert WordTokenizer().tokenize(text) == ["Hello", ",", "world", "!", "It", "'", "s", "3", ".", "5", "km_h", "…"]
    assert WordTokenizer().tokenize(text) == re.findall(r"\w+|[^\w\s]", text)
    assert WordTokenizer(lowercase=True).tokenize("Hi THERE") == ["hi", "there"]


def test_word_detokenize_is_lossy_but_stable():
    tokenizer = WordTokenizer()
    assert tokenizer.detokenize(tokenizer.tokenize("Hi,  you.")) == "Hi , you ."


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_word_tokenize_of_detokenize_gives_the_tokens_back(text):
    tokenizer = WordTokenizer()
    tokens = tokenizer.tokenize(text)
    assert tokenizer.tokenize(tokenizer.detokenize(tokens)) == tokens
    assert all(tokens) and not any(t.isspace() for t in tokens)


def test_word_custom_pattern():
    tokenizer = WordTokenizer(pattern=r"(\d)+|[a-z]+")  # a capturing group must not change what a token is
    assert tokenizer.tokenize("ab12 cd") == ["ab", "12", "cd"]
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        WordTokenizer(pattern="(")
    with pytest.raises(ConfigError, match="matches the empty string"):
        WordTokenizer(pattern=r"\w*")


# ------------------------------------------------------------------------------------------------------- bpe


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_bpe_round_trip_is_exact_even_for_unseen_characters(bpe, text):
    assert bpe.detokenize(bpe.tokenize(text)) == text


def test_bpe_learns_frequent_words_as_single_tokens(bpe):
    tokens = bpe.tokenize("the cat sat on the mat")
    assert tokens == ["the", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat"]
    assert len(bpe.tokenize("zyxwv")) == 5  # never seen: falls back to one byte per token


def test_bpe_merges_match_a_hand_computation():
    # Words after byte-level pre-tokenization: "ab", "Ġab", "Ġab", "Ġab".
    # Pair counts: (a,b) 4, (Ġ,a) 3 → the first merge is "ab"; then (Ġ,ab) 3 → the second is "Ġab".
    corpus = ["ab ab ab ab"]
    one = BPETokenizer(vocab_size=257, min_frequency=1).train(corpus)
    two = BPETokenizer(vocab_size=258, min_frequency=1).train(corpus)
    assert one.tokenize("ab ab") == ["ab", "Ġ", "ab"]
    assert two.tokenize("ab ab") == ["ab", "Ġab"]
    # min_frequency: a pair seen 3 times is not merged when 4 are required.
    assert BPETokenizer(vocab_size=258, min_frequency=4).train(corpus).tokenize("ab ab") == ["ab", "Ġ", "ab"]


def test_bpe_training_is_deterministic(bpe):
    again = BPETokenizer(vocab_size=300, min_frequency=2).train(CORPUS)
    assert again.to_dict() == bpe.to_dict()


def test_bpe_train_overrides_and_validation():
    tokenizer = BPETokenizer().train(CORPUS, vocab_size=280, min_frequency=3)
    assert tokenizer.options() == {"vocab_size": 280, "min_frequency": 3, "lowercase": False}
    assert BPETokenizer(vocab_size=300, lowercase=True).train(CORPUS).tokenize("THE CAT") == ["the", "Ġcat"]
    with pytest.raises(ConfigError, match="vocab_size must be an int ≥ 256"):
        BPETokenizer(vocab_size=100)
    with pytest.raises(ConfigError, match="min_frequency"):
        BPETokenizer().train(CORPUS, min_frequency=0)
    with pytest.raises(ConfigError, match=r"texts\[1\] must be a str"):
        BPETokenizer().train(["a", 3])
    with pytest.raises(ConfigError, match="not trained yet"):
        BPETokenizer().tokenize("hello")


def test_bpe_is_saved_as_the_tokenizers_json(bpe, tmp_path):
    path = bpe.save(tmp_path / "tokenizer.json")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["kind"] == "bpe" and saved["model"]["model"]["type"] == "BPE"
    loaded = Tokenizer.load(path)
    assert isinstance(loaded, BPETokenizer) and loaded == bpe
    for text in CORPUS[:4]:
        assert loaded.tokenize(text) == bpe.tokenize(text)


# ------------------------------------------------------------------------------------------ saving, factory


def test_every_kind_survives_save_and_load(bpe, tmp_path):
    text = "The cat, the DOG and 3 naïve birds.\n"
    for i, tokenizer in enumerate(_all_kinds(bpe)):
        loaded = Tokenizer.load(tokenizer.save(tmp_path / f"t{i}.json"))
        assert type(loaded) is type(tokenizer) and loaded == tokenizer
        assert loaded.tokenize(text) == tokenizer.tokenize(text)
        assert Tokenizer.from_dict(tokenizer.to_dict()) == tokenizer


def test_make_tokenizer():
    assert isinstance(make_tokenizer("char"), CharTokenizer)
    assert make_tokenizer("word", lowercase=True).tokenize("A b") == ["a", "b"]
    assert make_tokenizer("bpe", vocab_size=500).options()["vocab_size"] == 500
    with pytest.raises(
        ConfigError, match=r"unknown tokenizer kind 'sentencepiece'; expected one of 'char', 'word', 'bpe'"
    ):
        make_tokenizer("sentencepiece")
    with pytest.raises(ConfigError, match="unknown option 'vocab_size' for the char tokenizer"):
        make_tokenizer("char", vocab_size=10)
    with pytest.raises(ConfigError, match="lowercase must be a bool"):
        make_tokenizer("word", lowercase="yes")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "bpe", "vocab_size": 300, "min_frequency": 2, "lowercase": False, "model": {"x": 1}}, "model is not"),
        ({"kind": ["char"]}, "unknown tokenizer kind"),
        ({"kind": "word", "pattern": "["}, "not a valid regular expression"),
        ({"kind": "char", "extra": 1}, "unknown option 'extra'"),
    ],
)
def test_from_dict_rejects_bad_descriptions(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        Tokenizer.from_dict(data)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"format": "dnn.tokenizer", "version": 1, **data}), encoding="utf-8")
    with pytest.raises(DataError) as info:
        Tokenizer.load(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_load_rejects_a_foreign_tokenizers_model(bpe, tmp_path):
    data = bpe.to_dict()
    data["model"]["decoder"] = None
    with pytest.raises(ConfigError, match="ByteLevel decoder"):
        Tokenizer.from_dict(data)


_json_files = st.fixed_dictionaries(
    {
        "format": st.sampled_from(["dnn.tokenizer", "dnn.vocab"]),
        "version": st.just(1),
        "kind": st.sampled_from(["char", "word", "bpe", "x", 3]),
    },
    optional={
        "lowercase": st.sampled_from([True, False, 1, None]),
        "pattern": st.sampled_from([r"\w+", "(", "", 5]),
        "vocab_size": st.sampled_from([300, 10, "big"]),
        "model": st.sampled_from([None, {}, [], "x"]),
    },
).map(lambda d: json.dumps(d).encode())


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=200) | _json_files)
def test_random_bytes_load_or_fail_with_a_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("random") / "tokenizer.json"
    path.write_bytes(data)
    try:
        tokenizer = Tokenizer.load(path)
    except DataError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
    else:
        assert Tokenizer.from_dict(tokenizer.to_dict()) == tokenizer
