"""Text readers: records with their lines, every bad-input policy with its message, and random bytes."""

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnn.data.text import (
    Pair,
    TaggedSentence,
    TextExample,
    count_lines,
    iter_lines,
    read_chunks,
    read_classification,
    read_conll,
    read_imdb,
    read_lines,
    read_parallel_files,
    read_parallel_tsv,
    read_text,
)
from dnn.data.tokenizers import CharTokenizer, WordTokenizer
from dnn.data.vocab import LabelVocab
from dnn.errors import ConfigError, DataError

WORDS = WordTokenizer()


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _error(call) -> str:
    """The message of the DataError that ``call()`` raises (checked to be one line)."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ classification


def test_csv_with_quoted_commas_and_newlines(tmp_path):
    rows = [["text", "label"], ["a fine, long film", "pos"], ['two\nlines, "quoted"', "neg"], ["ok", "pos"]]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # the reference writer quotes what needs quoting
    path = _write(tmp_path / "reviews.csv", buffer.getvalue())
    records = read_classification(path)
    examples = list(records)
    assert [(e.text, e.label) for e in examples] == [tuple(r) for r in rows[1:]]
    assert [e.line for e in examples] == [2, 3, 5]  # where each record starts
    assert all(e.path == str(path) and e.tokens is None for e in examples)
    assert records.stats.kept == 3 and not records.stats.dropped


def test_tsv_custom_columns_bom_and_crlf(tmp_path):
    path = _write(tmp_path / "data.tsv", "\ufeffid\treview\tsentiment\r\n1\tgreat\tpos\r\n\r\n2\tbad\tneg\r\n")
    examples = list(read_classification(path, text_column="review", label_column="sentiment"))
    assert examples == [TextExample("great", "pos", 2, str(path)), TextExample("bad", "neg", 4, str(path))]


def test_delimiter_from_extension_or_argument(tmp_path):
    path = _write(tmp_path / "data.txt", "text|label\nhi|x\n")
    with pytest.raises(ConfigError, match="cannot tell the delimiter"):
        read_classification(path)
    assert [e.text for e in read_classification(path, delimiter="|")] == ["hi"]


def test_classification_tokens_and_labels(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\nHi there,a\n")
    (example,) = read_classification(path, tokenizer=WORDS, labels=LabelVocab(["a"]))
    assert example.tokens == ["Hi", "there"]


def test_classification_bad_input_messages(tmp_path):
    empty = _write(tmp_path / "empty.csv", "")
    assert _error(lambda: read_classification(empty)) == (
        f"{empty}: empty file, expected a header row with columns 'text', 'label'"
    )
    blank = _write(tmp_path / "blank.csv", "\n\n")
    assert _error(lambda: list(read_classification(blank))).startswith(f"{blank}: empty file")
    missing = _write(tmp_path / "cols.csv", "review,label\nx,pos\n")
    assert _error(lambda: list(read_classification(missing))) == (
        f"{missing}:1: no column 'text' (columns found: 'review', 'label')"
    )
    short = _write(tmp_path / "short.csv", "text,label\nx,pos\njust text\n")
    assert _error(lambda: list(read_classification(short))) == f"{short}:3: expected 2 fields as in the header, got 1"
    nolabel = _write(tmp_path / "nolabel.csv", "text,label\nx, \n")
    assert _error(lambda: list(read_classification(nolabel))) == f"{nolabel}:2: empty label in column 'label'"
    twice = _write(tmp_path / "twice.csv", "text,text,label\n")
    assert "column 'text' appears more than once" in _error(lambda: list(read_classification(twice)))
    utf = _write(tmp_path / "utf.csv", b"text,label\nok,pos\nbad \xff byte,neg\n")
    assert _error(lambda: list(read_classification(utf))) == (
        f"{utf}:3: invalid UTF-8 (byte 0xff), expected UTF-8 text"
    )
    assert _error(lambda: read_classification(tmp_path / "nope.csv")) == f"{tmp_path / 'nope.csv'}: no such file"
    assert "is a directory" in _error(lambda: read_classification(tmp_path))


def test_unseen_label_at_evaluation(tmp_path):
    path = _write(tmp_path / "test.csv", "text,label\ngood,pos\nmeh,neutral\n")
    assert _error(lambda: list(read_classification(path, labels=LabelVocab(["neg", "pos"]), split="test"))) == (
        f"{path}:3: label 'neutral' was never seen in training (known labels: 'neg', 'pos')"
    )


def test_blank_text_is_dropped_and_counted(tmp_path):
    path = _write(tmp_path / "d.csv", 'text,label\n"  ",pos\nfine,neg\n')
    records = read_classification(path)
    assert [e.text for e in records] == ["fine"]
    assert records.stats.dropped["blank"] == 1 and records.stats.kept == 1


def test_over_long_examples(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\na b,x\na b c d,y\nc,x\n")
    train = read_classification(path, tokenizer=WORDS, max_length=3)
    assert [e.text for e in train] == ["a b", "c"]
    assert train.stats.dropped["too_long"] == 1 and train.stats.kept == 2
    assert train.stats.summary() == f"{path}: kept 2 of 3 (dropped: too_long 1)"
    evaluation = read_classification(path, tokenizer=WORDS, max_length=3, split="valid")
    assert _error(lambda: list(evaluation)).startswith(f"{path}:3: example has 4 tokens, more than max_length=3")
    cut = read_classification(path, tokenizer=WORDS, max_length=3, split="test", truncate=True)
    examples = list(cut)
    assert [e.tokens for e in examples] == [["a", "b"], ["a", "b", "c"], ["c"]]
    assert examples[1].text == "a b c d"  # the raw text stays as in the file
    assert cut.stats.truncated == 1 and cut.stats.kept == 3


def test_policy_arguments_are_checked(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\n")
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        read_classification(path, max_length=5)
    with pytest.raises(ConfigError, match="split must be one of train, valid, test"):
        read_classification(path, split="dev")
    with pytest.raises(ConfigError, match="max_length must be a positive int"):
        read_classification(path, tokenizer=WORDS, max_length=0)


def test_records_can_be_read_again(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\n,x\na,y\n")
    records = read_classification(path)
    assert list(records) == list(records)
    assert records.stats.kept == 1 and records.stats.dropped["blank"] == 1  # counted once per pass


# ---------------------------------------------------------------------------------------------------- imdb


def _imdb(root, reviews):
    for (split, label, name), text in reviews.items():
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / name, text)
    return root


def test_imdb_folder(tmp_path):
    root = _imdb(
        tmp_path / "aclImdb",
        {
            ("train", "pos", "1_9.txt"): "Loved it.<br />Really.",
            ("train", "pos", "0_10.txt"): "Great!\n",
            ("train", "neg", "2_1.txt"): "Awful.",
            ("train", "neg", "3_2.txt"): "   ",
            ("test", "neg", "0_3.txt"): "Meh.",
            ("test", "pos", "0_8.txt"): "Fine.",
        },
    )
    records = read_imdb(root, "train")
    examples = list(records)
    assert [(e.text, e.label) for e in examples] == [
        ("Awful.", "neg"),
        ("Great!", "pos"),
        ("Loved it.<br />Really.", "pos"),
    ]
    assert examples[0].path == str(root / "train" / "neg" / "2_1.txt") and examples[0].line == 1
    assert records.stats.dropped["blank"] == 1
    assert [e.label for e in read_imdb(root, "test")] == ["neg", "pos"]


def test_imdb_errors(tmp_path):
    root = _imdb(tmp_path / "aclImdb", {("train", "pos", "0_9.txt"): "ok", ("train", "neg", "0_1.txt"): b"x\ny\xc3("})
    bad = root / "train" / "neg" / "0_1.txt"
    assert _error(lambda: list(read_imdb(root))) == f"{bad}:2: invalid UTF-8 (byte 0xc3), expected UTF-8 text"
    assert _error(lambda: read_imdb(root, "test")).startswith(f"{root / 'test' / 'neg'}: no such folder")
    with pytest.raises(ConfigError, match="'train' or 'test'"):
        read_imdb(root, "valid")
    long = _imdb(tmp_path / "long", {("test", "pos", "0_9.txt"): "a b c", ("test", "neg", "0_1.txt"): "a"})
    message = _error(lambda: list(read_imdb(long, "test", tokenizer=WORDS, max_length=2)))
    assert message.startswith(f"{long / 'test' / 'pos' / '0_9.txt'}:1: example has 3 tokens")
    unseen = _error(lambda: list(read_imdb(long, "test", labels=LabelVocab(["neg"]))))
    assert unseen.startswith(f"{long / 'test' / 'pos' / '0_9.txt'}:1: label 'pos' was never seen in training")


# ------------------------------------------------------------------------------------------------- tagging


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC


Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_sentences(tmp_path):
    path = _write(tmp_path / "train.conll", CONLL)
    records = read_conll(path)
    assert list(records) == [
        TaggedSentence(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"], 3, str(path)),
        TaggedSentence(["Peter", "Blackburn"], ["B-PER", "I-PER"], 8, str(path)),
    ]
    chunks = [s.tags for s in read_conll(path, tag_column=2)]
    assert chunks == [["B-NP", "B-VP", "B-NP"], ["B-NP", "I-NP"]]


def test_conll_tab_delimiter_keeps_spaces_in_tokens(tmp_path):
    path = _write(tmp_path / "t.tsv", "New York\tB-LOC\nis\tO\n")
    (sentence,) = read_conll(path, delimiter="\t")
    assert sentence.tokens == ["New York", "is"] and sentence.tags == ["B-LOC", "O"]


def test_conll_bad_input(tmp_path):
    path = _write(tmp_path / "bad.conll", "EU B-ORG\nrejects\n")
    assert _error(lambda: list(read_conll(path))) == (
        f"{path}:2: expected a token in column 0 and a tag in column -1, got 1 column(s): 'rejects'"
    )
    empty = _write(tmp_path / "empty.conll", "")
    assert _error(lambda: read_conll(empty)) == (
        f"{empty}: empty file, expected one token and its tag per line, blank lines between sentences"
    )
    blank = _write(tmp_path / "blank.conll", "\n \n")
    assert _error(lambda: list(read_conll(blank))).startswith(f"{blank}: empty file")
    utf = _write(tmp_path / "utf.conll", b"a O\n\nb\xe9 O\n")
    assert _error(lambda: list(read_conll(utf))).startswith(f"{utf}:3: invalid UTF-8")
    tagged = _write(tmp_path / "dev.conll", "a O\n\nb B-PER\nc B-XYZ\n")
    assert _error(lambda: list(read_conll(tagged, labels=LabelVocab(["O", "B-PER"]), split="valid"))) == (
        f"{tagged}:4: label 'B-XYZ' was never seen in training (known labels: 'O', 'B-PER')"
    )


def test_conll_length_policy_cuts_tags_too(tmp_path):
    path = _write(tmp_path / "d.conll", "a O\nb O\nc X\n\nd O\n")
    train = read_conll(path, max_length=2)
    assert [s.tokens for s in train] == [["d"]] and train.stats.dropped["too_long"] == 1
    assert _error(lambda: list(read_conll(path, max_length=2, split="test"))).startswith(
        f"{path}:1: example has 3 tokens, more than max_length=2"
    )
    cut = list(read_conll(path, max_length=2, split="test", truncate=True))
    assert (cut[0].tokens, cut[0].tags) == (["a", "b"], ["O", "O"])


# ------------------------------------------------------------------------------------------------ parallel


def test_parallel_tsv(tmp_path):
    path = _write(tmp_path / "pairs.tsv", "Go.\tVa !\n\t\nHi.\t \nRun!\tCours !\n\nI see.\tJe vois.")
    records = read_parallel_tsv(path)
    pairs = list(records)
    assert pairs == [
        Pair("Go.", "Va !", 1, str(path)),
        Pair("Run!", "Cours !", 4, str(path)),
        Pair("I see.", "Je vois.", 6, str(path)),
    ]
    assert records.stats.dropped["blank"] == 3


def test_parallel_tsv_bad_input(tmp_path):
    path = _write(tmp_path / "pairs.tsv", "a\tb\nc\td\te\n")
    assert _error(lambda: list(read_parallel_tsv(path))) == (
        f"{path}:2: expected 2 tab-separated fields (source<TAB>target), got 3"
    )
    one = _write(tmp_path / "one.tsv", "a\tb\nno tab here\n")
    assert _error(lambda: list(read_parallel_tsv(one))).startswith(f"{one}:2: expected 2 tab-separated fields")
    empty = _write(tmp_path / "empty.tsv", "")
    assert _error(lambda: read_parallel_tsv(empty)) == f"{empty}: empty file, expected lines of source<TAB>target"


def test_parallel_tsv_tokenizers_and_lengths(tmp_path):
    path = _write(tmp_path / "p.tsv", "a b\txyz\na b c d\txy\nab\twxyz\n")
    records = read_parallel_tsv(path, source_tokenizer=WORDS, target_tokenizer=CharTokenizer(), max_length=3)
    pairs = list(records)
    assert [(p.source_tokens, p.target_tokens) for p in pairs] == [(["a", "b"], ["x", "y", "z"])]
    assert records.stats.dropped["too_long"] == 2
    message = _error(
        lambda: list(
            read_parallel_tsv(path, source_tokenizer=WORDS, target_tokenizer=WORDS, max_length=2, split="test")
        )
    )
    assert message.startswith(f"{path}:2: example has 4 tokens, more than max_length=2")


def test_parallel_files_stay_aligned_when_a_blank_pair_is_dropped(tmp_path):
    source = _write(tmp_path / "train.en", "one\n\nthree\nfour\nfive\n")
    target = _write(tmp_path / "train.de", "eins\nzwei\ndrei\n  \nfünf")  # no final newline: still 5 lines
    records = read_parallel_files(source, target)
    pairs = list(records)
    assert [(p.source, p.target, p.line) for p in pairs] == [
        ("one", "eins", 1),
        ("three", "drei", 3),
        ("five", "fünf", 5),
    ]
    assert records.stats.dropped["blank"] == 2 and records.stats.kept == 3


def test_parallel_files_line_count_mismatch(tmp_path):
    source = _write(tmp_path / "a.en", "1\n2\n3\n")
    target = _write(tmp_path / "a.de", "1\n2")
    records = iter(read_parallel_files(source, target))
    assert _error(lambda: next(records)) == (  # before the first pair, not after the shorter file ends
        f"{source}: has 3 lines but {target} has 2; the two files must be line-aligned"
    )
    empty_s, empty_t = _write(tmp_path / "e.en", ""), _write(tmp_path / "e.de", "")
    assert _error(lambda: list(read_parallel_files(empty_s, empty_t))).startswith(f"{empty_s}: empty file")
    assert _error(lambda: read_parallel_files(source, tmp_path / "none.de")) == f"{tmp_path / 'none.de'}: no such file"


# ---------------------------------------------------------------------------------------------- plain text


def test_read_lines_and_blank_lines(tmp_path):
    path = _write(tmp_path / "t.txt", "first\n\n  \nsecond\r\nthird")
    records = read_lines(path)
    assert list(records) == ["first", "second", "third"] and records.stats.dropped["blank"] == 2
    assert list(read_lines(path, skip_blank=False)) == ["first", "", "  ", "second", "third"]
    empty = _write(tmp_path / "e.txt", "")
    assert _error(lambda: read_lines(empty)) == f"{empty}: empty file, expected text"


def test_read_chunks_splits_multibyte_characters_safely(tmp_path):
    text = "héllo wörld ☃\nzweite Zeile 🎉\n" * 3
    path = _write(tmp_path / "t.txt", "\ufeff" + text)
    for size in (1, 2, 3, 5, 64, 1 << 20):
        chunks = list(read_chunks(path, chunk_size=size))
        assert "".join(chunks) == text
    assert read_text(path) == text
    assert len(list(read_chunks(path, chunk_size=8))) > 1
    with pytest.raises(ConfigError, match="chunk_size"):
        read_chunks(path, chunk_size=0)
    assert _error(lambda: read_text(path, max_bytes=10)).startswith(f"{path}: {path.stat().st_size} bytes is more")


def test_read_chunks_names_the_line_of_an_invalid_byte(tmp_path):
    path = _write(tmp_path / "t.txt", b"line one\nline two\nline \xe2\x98 three\nfour\n")
    for size in (1, 4, 7, 100):
        assert _error(lambda size=size: list(read_chunks(path, chunk_size=size))).startswith(f"{path}:3: invalid UTF-8")
    truncated = _write(tmp_path / "end.txt", b"a\nb\n\xf0\x9f")
    assert _error(lambda: read_text(truncated)).startswith(f"{truncated}:3: invalid UTF-8 (byte 0xf0)")


# ------------------------------------------------------------------------------------------ random input


def _reference_line(data: bytes) -> int | None:
    """Line of the first invalid UTF-8 byte by decoding everything at once (None when valid)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data[: e.start].count(b"\n") + 1
    return None


_bytes = st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8"))
_texty = st.lists(
    st.sampled_from(
        ["a", "b c", ",", "\t", "\n", "\r\n", '"', "-DOCSTART-", " ", "é", "\xff", "\x00", "text", "label"]
    ),
    max_size=40,
).map(lambda parts: "".join(parts).encode("utf-8"))
_data = _bytes | _texty | st.lists(st.sampled_from([b"\xff", b"\xc3", b"\n", b"a\tb", b"x"]), max_size=20).map(b"".join)


def _check(paths, call):
    """``call()``'s result, or None after checking its DataError starts with one of ``paths``."""
    try:
        result = call()
    except DataError as e:
        assert str(e).startswith(tuple(map(str, paths))) and "\n" not in str(e)
        return None
    return result


@pytest.mark.parametrize(
    "name, header, read",
    [  # the header is written before the random bytes, so that the rows themselves get tried
        ("d.csv", b"", lambda p: list(read_classification(p))),
        ("d.csv", b"text,label\n", lambda p: list(read_classification(p))),
        (
            "d.tsv",
            b"label\ttext\n",
            lambda p: list(read_classification(p, tokenizer=WORDS, max_length=3, split="test")),
        ),
        ("d.csv", b"text,label\n", lambda p: list(read_classification(p, labels=LabelVocab(["a", "b c"])))),
        ("d.conll", b"", lambda p: list(read_conll(p, max_length=4, split="valid"))),
        (
            "d.tsv",
            b"",
            lambda p: list(read_parallel_tsv(p, source_tokenizer=WORDS, target_tokenizer=WORDS, max_length=2)),
        ),
        ("d.txt", b"", lambda p: list(read_lines(p))),
        ("d.txt", b"", lambda p: "".join(read_chunks(p, chunk_size=3))),
        ("d.txt", b"", read_text),
    ],
)
@settings(max_examples=50, deadline=None)
@given(data=_data)
def test_random_bytes_end_in_records_or_a_data_error(tmp_path_factory, name, header, read, data):
    path = _write(tmp_path_factory.mktemp("random") / name, header + data)
    result = _check([path], lambda: read(path))
    if _reference_line(data) is not None:
        assert result is None  # invalid UTF-8 is never silently accepted by a reader that reads every line
    if isinstance(result, str):
        assert result == data.decode("utf-8").removeprefix("\ufeff")


@settings(max_examples=50, deadline=None)
@given(source=_data, target=_data)
def test_random_bytes_two_aligned_files(tmp_path_factory, source, target):
    folder = tmp_path_factory.mktemp("random")
    sp, tp = _write(folder / "s.txt", source), _write(folder / "t.txt", target)
    pairs = _check([sp, tp], lambda: list(read_parallel_files(sp, tp)))
    if pairs is not None:
        assert count_lines(sp) == count_lines(tp)
        assert all(p.source.strip() and p.target.strip() for p in pairs)


@settings(max_examples=50, deadline=None)
@given(data=_data)
def test_random_bytes_imdb_review(tmp_path_factory, data):
    root = _imdb(
        tmp_path_factory.mktemp("aclImdb"), {("train", "pos", "0_7.txt"): data, ("train", "neg", "0_1.txt"): "ok"}
    )
    examples = _check(
        [root / "train" / "pos" / "0_7.txt"], lambda: list(read_imdb(root, tokenizer=WORDS, max_length=3))
    )
    if examples is not None:
        assert examples[0] == TextExample("ok", "neg", 1, str(root / "train" / "neg" / "0_1.txt"), ["ok"])


@settings(max_examples=50, deadline=None)
@given(data=_data.filter(bool))
def test_line_numbers_agree_with_a_whole_file_decode(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("random") / "d.txt", data)
    expected = _reference_line(data)
    for read in (lambda: list(iter_lines(path)), lambda: list(read_chunks(path, chunk_size=2))):
        if expected is None:
            read()
        else:
            assert _error(read).startswith(f"{path}:{expected}: invalid UTF-8")
    if expected is None:
        assert len(list(iter_lines(path))) == count_lines(path) == data.count(b"\n") + (not data.endswith(b"\n"))
