"""Readers for users' text files: classification, tagging, parallel corpora and plain text.

Every reader streams its file line by line (binary lines decoded one at a time, so an invalid byte is reported
with its line), returns plain Python records, and says where each record came from. A reader returns a
:class:`Records` stream: iterate it (as often as needed; each pass reads the file again) and read ``.stats``
afterwards for what was kept, dropped (by reason) and truncated — the numbers the run's log reports::

    records = read_classification("train.csv", tokenizer=tok, max_length=400)
    examples = list(records)            # TextExample(text, label, line, path, tokens)
    print(records.stats.summary())      # train.csv: kept 998 of 1000 (dropped: too_long 2)

Bad input, decided once (every message is one line and starts with ``<file>:<line>:`` or ``<file>:``):

- missing file / a directory → DataError; empty file → ``<file>: empty file, expected ...`` (these when the
  reader is called; the rest while iterating, at the offending line);
- invalid UTF-8 → DataError naming file and line; a malformed row → DataError naming its line;
- two line-aligned files of different lengths → DataError naming both files and both line counts;
- a blank example (empty text, or a blank side of a pair) → dropped and counted as ``dropped["blank"]``;
  a pair is always dropped whole, so later pairs stay aligned;
- more than ``max_length`` tokens: ``truncate=True`` cuts it (``stats.truncated``); otherwise it is dropped
  (``dropped["too_long"]``) when ``split="train"`` and a DataError at evaluation (``split="valid"``/``"test"``);
- with ``labels=`` (the training split's :class:`~dnn.data.vocab.LabelVocab`), a label that training never saw
  is a DataError naming file, line and label.

The record types, :class:`Records` with its :class:`ReadStats`, and :class:`LengthPolicy` are in
:mod:`dnn.data.records` (and importable from here).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dnn.checks import positive_int
from dnn.data.records import (  # the record types, Records/ReadStats and LengthPolicy re-exported: public path
    LengthPolicy,
    Pair,
    ReadStats,
    Records,
    TaggedSentence,
    TextExample,
    fit_tokens,
    require_tokenizer,
)
from dnn.errors import ConfigError, DataError
from dnn.io import check_file

if TYPE_CHECKING:
    from dnn.data.tokenizers import Tokenizer
    from dnn.data.vocab import LabelVocab


# ----------------------------------------------------------------------------------------------- files


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _utf8_error(path: Path, line: int, e: UnicodeDecodeError) -> DataError:
    """The error for an invalid byte; ``line`` is the line where ``e.object`` starts."""
    at = line + e.object[: e.start].count(b"\n")
    return DataError(f"{path}:{at}: invalid UTF-8 (byte 0x{e.object[e.start]:02x}), expected UTF-8 text")


MAX_LINE_BYTES = 1 << 20  # a longer line is not text a reader should tokenise (one 5 MB line: minutes of BPE)
MAX_SENTENCE_TOKENS = 10_000  # a longer CoNLL sentence is a missing blank line, not a sentence


def iter_lines(path: Path, keepends: bool = False, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line (split at ``\\n``; a trailing ``\\r`` and a leading BOM dropped).

    A line longer than ``max_bytes`` is a DataError naming it (reading stops there: nothing unbounded is kept)."""
    with _open(path) as f:
        for number, raw in enumerate(iter(lambda: f.readline(max_bytes + 1), b""), start=1):
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                raise DataError(f"{path}:{number}: a line of more than {max_bytes:,} bytes; expected text lines "
                                f"(split the file into shorter lines)")  # fmt: skip
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_error(path, number, e) from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not keepends:
                text = text.removesuffix("\n").removesuffix("\r")
            yield number, text


def count_lines(path: Path, block: int = 1 << 20) -> int:
    """Number of lines as :func:`iter_lines` sees them, counted in fixed-size blocks (never the whole file)."""
    count, last = 0, b"\n"
    with _open(path) as f:
        while chunk := f.read(block):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


# ------------------------------------------------------------------------------------------ classification


def read_classification(
    path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    delimiter: str | None = None,
    tokenizer: Tokenizer | None = None,
    labels: LabelVocab | None = None,
    max_length: int | None = None,
    split: str = "train",
    truncate: bool = False,
) -> Records[TextExample]:
    """Texts and labels from a CSV/TSV file whose first non-blank row names the columns.

    The delimiter comes from the extension (``.csv`` → ``,``, ``.tsv`` → tab) unless given. Both use the csv
    module's quoting (a field in double quotes may hold delimiters and newlines; ``line`` is where the record
    starts). Blank lines are skipped; a row with an empty text is dropped as ``blank``.
    """
    p = check_file(path, expected=f"a header row with columns {text_column!r}, {label_column!r}")
    if delimiter is None:
        delimiter = {".csv": ",", ".tsv": "\t"}.get(p.suffix.lower())
        if delimiter is None:
            raise ConfigError(f"{p}: cannot tell the delimiter from the extension; pass delimiter=',' or '\\t'")
    policy = LengthPolicy(max_length, split, truncate)
    require_tokenizer(max_length, tokenizer)

    def read(stats: ReadStats) -> Iterator[TextExample]:
        reader = csv.reader((text for _, text in iter_lines(p, keepends=True)), delimiter=delimiter)
        header: list[str] | None = None
        while True:
            line = reader.line_num + 1  # where the next record starts
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise DataError(f"{p}:{reader.line_num}: malformed CSV ({e})") from None
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [name.strip() for name in row]
                ti, li = (_column(header, name, p, line) for name in (text_column, label_column))
                continue
            if len(row) != len(header):
                raise DataError(f"{p}:{line}: expected {len(header)} fields as in the header, got {len(row)}")
            text, label = row[ti], row[li].strip()
            if not label:
                raise DataError(f"{p}:{line}: empty label in column {label_column!r}")
            if labels is not None:
                labels.encode(label, path=p, line=line)
            if not text.strip():
                stats.dropped["blank"] += 1
                continue
            keep, tokens = fit_tokens(tokenizer, text, policy, stats, f"{p}:{line}")
            if keep:
                yield TextExample(text, label, line, str(p), tokens)
        if header is None:
            raise DataError(f"{p}: empty file, expected a header row with columns {text_column!r}, {label_column!r}")

    return Records(str(p), read)


def _column(header: list[str], name: str, path: Path, line: int) -> int:
    twice = [c for c in header if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}:{line}: column {twice[0]!r} appears more than once in the header")
    if name not in header:
        raise DataError(f"{path}:{line}: no column {name!r} (columns found: {', '.join(map(repr, header))})")
    return header.index(name)


def read_imdb(
    root: str | os.PathLike,
    split: str = "train",
    *,
    tokenizer: Tokenizer | None = None,
    labels: LabelVocab | None = None,
    max_length: int | None = None,
    truncate: bool = False,
) -> Records[TextExample]:
    """Reviews of the IMDB ``aclImdb/`` folder (Maas et al. 2011): ``<root>/<split>/{neg,pos}/*.txt``.

    The label is the folder name; ``path`` is the review's file and ``line`` 1. Files are read in name order, neg
    before pos; the text is kept as written (``<br />`` included). ``split`` is "train" or "test".
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test' for the IMDB folder, got {split!r}")
    root = Path(root)
    folders = {label: root / split / label for label in ("neg", "pos")}
    for folder in folders.values():
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder, expected an aclImdb folder with {split}/neg and {split}/pos")
    policy = LengthPolicy(max_length, split, truncate)
    require_tokenizer(max_length, tokenizer)

    def read(stats: ReadStats) -> Iterator[TextExample]:
        for label, folder in folders.items():
            for file in sorted(folder.glob("*.txt")):
                text = read_text(file, max_bytes=1 << 20, empty_ok=True).strip()
                if labels is not None:
                    labels.encode(label, path=file, line=1)
                if not text:
                    stats.dropped["blank"] += 1
                    continue
                keep, tokens = fit_tokens(tokenizer, text, policy, stats, f"{file}:1")
                if keep:
                    yield TextExample(text, label, 1, str(file), tokens)

    return Records(str(root / split), read)


# ------------------------------------------------------------------------------------------------- tagging


def read_conll(
    path: str | os.PathLike,
    *,
    token_column: int = 0,
    tag_column: int = -1,
    delimiter: str | None = None,
    labels: LabelVocab | None = None,
    max_length: int | None = None,
    split: str = "train",
    truncate: bool = False,
) -> Records[TaggedSentence]:
    """Tagged sentences in the CoNLL layout: one token per line, blank lines between sentences.

    Columns are split at whitespace (or at ``delimiter``); the token is column ``token_column`` and the tag column
    ``tag_column`` (negative counts from the end). ``-DOCSTART-`` lines are skipped. ``max_length`` counts tokens.
    """
    expected = "one token and its tag per line, blank lines between sentences"
    p = check_file(path, expected=expected)
    policy = LengthPolicy(max_length, split, truncate)

    def read(stats: ReadStats) -> Iterator[TaggedSentence]:
        tokens: list[str] = []
        tags: list[str] = []
        start, rows = 0, 0
        for line, text in itertools.chain(iter_lines(p), [(0, "")]):  # a blank line at the end closes the last sentence
            if not text.strip():
                kept = policy.fit(tokens, stats, f"{p}:{start}") if tokens else None
                if kept is not None:
                    yield TaggedSentence(kept, tags[: len(kept)], start, str(p))
                tokens, tags = [], []
                continue
            rows += 1
            if len(tokens) >= MAX_SENTENCE_TOKENS:
                raise DataError(f"{p}:{start}: a sentence of more than {MAX_SENTENCE_TOKENS:,} tokens; expected blank "
                                f"lines between sentences")  # fmt: skip
            columns = text.split(delimiter) if delimiter else text.split()
            if columns[0] == "-DOCSTART-":
                continue
            n = len(columns)
            at = [i % n for i in (token_column, tag_column) if -n <= i < n]
            if len(set(at)) != 2 or not all(columns[i].strip() for i in at):
                raise DataError(
                    f"{p}:{line}: expected a token in column {token_column} and a tag in column {tag_column}, "
                    f"got {n} column(s): {text[:60]!r}"
                )
            if labels is not None:
                labels.encode(columns[at[1]], path=p, line=line)
            start = start if tokens else line
            tokens.append(columns[at[0]])
            tags.append(columns[at[1]])
        if rows == 0:
            raise DataError(f"{p}: empty file, expected {expected}")

    return Records(str(p), read)


# ------------------------------------------------------------------------------------------------ parallel


def read_parallel_tsv(
    path: str | os.PathLike,
    *,
    source_tokenizer: Tokenizer | None = None,
    target_tokenizer: Tokenizer | None = None,
    max_length: int | None = None,
    split: str = "train",
    truncate: bool = False,
) -> Records[Pair]:
    """Sentence pairs from ``source<TAB>target`` lines: exactly two fields, or a blank line (a blank pair).

    ``max_length`` applies to each side; a pair with a blank side is dropped whole as ``blank``.
    """
    p = check_file(path, expected="lines of source<TAB>target")
    policy = LengthPolicy(max_length, split, truncate)
    require_tokenizer(max_length, source_tokenizer, target_tokenizer)

    def read(stats: ReadStats) -> Iterator[Pair]:
        for line, text in iter_lines(p):
            fields = text.split("\t") if text.strip() else ["", ""]
            if len(fields) != 2:
                raise DataError(f"{p}:{line}: expected 2 tab-separated fields (source<TAB>target), got {len(fields)}")
            pair = _pair(*fields, line, (p, p), (source_tokenizer, target_tokenizer), policy, stats)
            if pair is not None:
                yield pair

    return Records(str(p), read)


def read_parallel_files(
    source_path: str | os.PathLike,
    target_path: str | os.PathLike,
    *,
    source_tokenizer: Tokenizer | None = None,
    target_tokenizer: Tokenizer | None = None,
    max_length: int | None = None,
    split: str = "train",
    truncate: bool = False,
) -> Records[Pair]:
    """Sentence pairs from two line-aligned files: line k of the source translates to line k of the target.

    Both files are counted (streamed) before the first pair is yielded, so a line-count mismatch is an error up
    front naming both files and both counts. ``Pair.path`` is the source file.
    """
    sp, tp = check_file(source_path), check_file(target_path)
    policy = LengthPolicy(max_length, split, truncate)
    require_tokenizer(max_length, source_tokenizer, target_tokenizer)

    def read(stats: ReadStats) -> Iterator[Pair]:
        ns, nt = count_lines(sp), count_lines(tp)
        if ns != nt:
            raise DataError(f"{sp}: has {ns} lines but {tp} has {nt}; the two files must be line-aligned")
        if ns == 0:
            raise DataError(f"{sp}: empty file, expected one sentence per line (aligned with {tp})")
        for (line, source), (_, target) in zip(iter_lines(sp), iter_lines(tp)):
            pair = _pair(source, target, line, (sp, tp), (source_tokenizer, target_tokenizer), policy, stats)
            if pair is not None:
                yield pair

    return Records(f"{sp} + {tp}", read)


def _pair(source, target, line, paths, tokenizers, policy, stats) -> Pair | None:
    """The pair, or None after counting why it was dropped (a blank side drops the whole pair)."""
    if not source.strip() or not target.strip():
        stats.dropped["blank"] += 1
        return None
    sides = []
    for text, path, tokenizer in zip((source, target), paths, tokenizers):
        keep, tokens = fit_tokens(tokenizer, text, policy, stats, f"{path}:{line}")
        if not keep:
            return None
        sides.append(tokens)
    return Pair(source, target, line, str(paths[0]), *sides)


# ---------------------------------------------------------------------------------------------- plain text


def read_lines(path: str | os.PathLike, *, skip_blank: bool = True) -> Records[str]:
    """The lines of a text file (for language modelling) without line ends; skipped blank lines count as blank."""
    p = check_file(path, expected="text")

    def read(stats: ReadStats) -> Iterator[str]:
        for _, text in iter_lines(p):
            if skip_blank and not text.strip():
                stats.dropped["blank"] += 1
            else:
                yield text

    return Records(str(p), read)


def read_chunks(path: str | os.PathLike, chunk_size: int = 1 << 20) -> Iterator[str]:
    """The whole text of a file, streamed as the strings decoded from ``chunk_size``-byte blocks."""
    p = check_file(path, expected="text")
    positive_int("chunk_size", chunk_size)

    def chunks() -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")()  # drops a leading BOM
        line, final = 1, False
        with _open(p) as f:
            while not final:
                block = f.read(chunk_size)
                final = not block
                try:
                    text = decoder.decode(block, final=final)
                except UnicodeDecodeError as e:  # e.object: the bytes buffered from the last block + this one
                    raise _utf8_error(p, line, e) from None
                line += block.count(b"\n")
                if text:
                    yield text

    return chunks()


def read_text(path: str | os.PathLike, max_bytes: int = 64 << 20, empty_ok: bool = False) -> str:
    """The whole text of a small file (at most ``max_bytes``); stream bigger ones with :func:`read_chunks`."""
    p = check_file(path, expected=None if empty_ok else "text")
    size = p.stat().st_size
    if size > max_bytes:
        raise DataError(f"{p}: {size} bytes is more than max_bytes={max_bytes}; stream it with read_chunks")
    return "".join(read_chunks(p)) if size else ""
