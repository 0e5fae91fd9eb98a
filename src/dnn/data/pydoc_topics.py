"""Paragraphs of Python's own help topics (``pydoc_data.topics``), labelled by topic group: a text classification
task on real English that ships with Python, for self-supervised pretraining then transfer (ULMFiT).

The 79 help topics (Python 3.12; the set differs a little between versions) are put in four groups, decided
here by hand from the topic names before any model was run::

    statements   the syntax of simple and compound statements (assert, for, try, import, …)
    expressions  operators, calls, literals, names and evaluation (binary, calls, lambda, atom-literals, …)
    types        the built-in types and their methods (dict, typesseq, string-methods, numbers, …)
    datamodel    the object model: special methods, attributes, execution model (specialnames, customization, …)

A topic not named below (a newer Python's) is left out. A paragraph is a block of text between blank lines with
at least ``min_words`` words (shorter ones are headings and code fragments). Topics are whole in one group, and
the paragraphs of one topic are alike, so a split by paragraph leaks some style from training to test — the same
for the pretrained and the scratch classifier, which is what the comparison needs.

    rows = pydoc_paragraphs()                       # [(text, group)], in topic order
    write_csv(rows, "topics.csv")                   # text,label — what data.train of text_classification reads
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from dnn.data.corpus import pydoc_topics
from dnn.io import atomic_write

__all__ = ["GROUPS", "pydoc_paragraphs", "write_csv"]

GROUPS: dict[str, tuple[str, ...]] = {
    "statements": (
        "assert", "assignment", "async", "augassign", "break", "class", "compound", "continue", "del", "else", "for",
        "function", "global", "if", "import", "nonlocal", "pass", "raise", "return", "try", "while", "with", "yield",
    ),
    "expressions": (
        "atom-identifiers", "atom-literals", "attribute-references", "await", "binary", "bitwise", "booleans",
        "calls", "comparisons", "conversions", "exprlists", "floating", "formatstrings", "identifiers", "imaginary",
        "in", "integers", "lambda", "lists", "operator-summary", "power", "shifting", "slicings", "strings",
        "subscriptions", "unary",
    ),
    "types": (
        "bltin-code-objects", "bltin-ellipsis-object", "bltin-null-object", "bltin-type-objects", "dict", "numbers",
        "string-methods", "truth", "types", "typesfunctions", "typesmapping", "typesmethods", "typesmodules",
        "typesseq", "typesseq-mutable",
    ),
    "datamodel": (
        "attribute-access", "callable-types", "context-managers", "customization", "debugger", "dynamic-features",
        "exceptions", "execmodel", "id-classes", "naming", "numeric-types", "objects", "sequence-types",
        "specialattrs", "specialnames",
    ),
}  # fmt: skip


def pydoc_paragraphs(min_words: int = 8) -> list[tuple[str, str]]:
    """``(paragraph, group)`` for every paragraph of ≥ ``min_words`` words of a grouped topic, whitespace folded."""
    group_of = {topic: group for group, topics in GROUPS.items() for topic in topics}
    rows = []
    for name, text in pydoc_topics().items():
        if name not in group_of:
            continue
        for block in text.split("\n\n"):
            words = block.split()
            if len(words) >= min_words:
                rows.append((" ".join(words), group_of[name]))
    return rows


def write_csv(rows: list[tuple[str, str]], path: str | os.PathLike) -> Path:
    """``rows`` as a CSV with the header ``text,label`` (atomically)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            out = csv.writer(f)
            out.writerow(["text", "label"])
            out.writerows(rows)

    return atomic_write(path, write)
