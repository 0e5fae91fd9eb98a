"""An unlabelled corpus far larger than ``text-transfer``'s labelled set, built from what is installed with dnn: the
docstrings of every Python module of the standard library and of the installed packages, and the packages'
documentation (their README-like ``*.rst`` / ``*.md`` files and the long description in ``METADATA``).

ULMFiT pretrains its language model on 103M words of Wikipedia, then fine-tunes it on the target task's text. The
closest general-domain text a machine without a network has is this: English technical prose about Python, ~5M
words with the packages of dnn's dev install. It is built at run time into the experiment's run folder, never
shipped::

    stats = build_corpus(folder, keep_out=pydoc_text())      # train.txt, valid.txt, test.txt in folder
    stats["words"], stats["sha256"]                           # its size, and what identifies it

Deterministic for a given installation: files in sorted path order, parsed (never imported) with :mod:`ast`,
paragraphs whitespace-folded and deduplicated in order of first appearance. Kept out: every paragraph that shares
a run of ``SHINGLE`` words with the ``keep_out`` text (the pydoc help topics, whose paragraphs are the labelled
ones — the standard library's docstrings repeat some of their sentences), ``pydoc_data`` itself and dnn's own
sources. Every ``HELD``-th paragraph goes to the validation split and the next one to the test split.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from dnn.io import atomic_write

__all__ = ["SHINGLE", "build_corpus", "corpus_paragraphs", "package_roots"]

SHINGLE = 8  # words in a row shared with the kept-out text make a paragraph "the same text"
HELD = 50  # one paragraph in 50 validates the language model, the next one tests it
MIN_WORDS = 4  # shorter paragraphs are headings, signatures and code fragments
SKIP_PARTS = {"pydoc_data", "dnn", "site-packages", "__pycache__", "tests", "test"}
SKIP_NAMES = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|AUTHORS|RECORD|WHEEL|top_level)", re.IGNORECASE)
_WORD = re.compile(r"\w+")


def package_roots() -> list[Path]:
    """The installed packages (this environment's site-packages) and the standard library."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["purelib"]), Path(paths["stdlib"])]
    return [root for i, root in enumerate(roots) if root.is_dir() and root not in roots[:i]]


def _docstrings(source: bytes) -> Iterator[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node, clean=True)
            if text:
                yield text


def _documents(roots: Iterable[Path], max_files: int | None = None) -> Iterator[str]:
    """Docstrings of ``*.py`` files and the text of documentation files under ``roots``, in sorted path order."""
    count = 0
    for root in roots:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if SKIP_PARTS.intersection(rel.parts[:-1]) or SKIP_NAMES.match(path.name) or not path.is_file():
                continue
            if path.suffix == ".py":
                texts: Iterable[str] = _docstrings(path.read_bytes())
            elif path.suffix in (".rst", ".md") or path.name == "METADATA":
                text = path.read_text(encoding="utf-8", errors="replace")
                if path.name == "METADATA":  # email-style headers, a blank line, then the long description
                    text = text.partition("\n\n")[2]
                texts = [text]
            else:
                continue
            count += 1
            yield from texts
            if max_files is not None and count >= max_files:
                return


def _shingles(words: list[str]) -> set[int]:
    return {hash(tuple(words[i : i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}


def corpus_paragraphs(roots: Iterable[Path], keep_out: str = "", max_words: int | None = None,
                      max_files: int | None = None) -> Iterator[str]:  # fmt: skip
    """The corpus' paragraphs in order: blocks between blank lines, whitespace folded, at least ``MIN_WORDS``
    words, each once, none sharing ``SHINGLE`` words in a row with ``keep_out``; at most ``max_words`` words."""
    banned = _shingles(_WORD.findall(keep_out.lower()))
    seen: set[str] = set()
    words = 0
    for document in _documents(roots, max_files):
        for block in re.split(r"\n\s*\n", document):
            tokens = block.split()
            if len(tokens) < MIN_WORDS:
                continue
            paragraph = " ".join(tokens)
            if paragraph in seen or banned.intersection(_shingles(_WORD.findall(paragraph.lower()))):
                continue
            seen.add(paragraph)
            yield paragraph
            words += len(tokens)
            if max_words is not None and words >= max_words:
                return


def build_corpus(folder: Path, keep_out: str = "", roots: Iterable[Path] | None = None,
                 max_words: int | None = None, max_files: int | None = None,
                 extra_train: str = "") -> dict[str, int | str]:  # fmt: skip
    """Write ``train.txt`` (plus ``extra_train`` at its end), ``valid.txt`` and ``test.txt`` into ``folder``
    (atomically, one paragraph a line) and return their sizes in words, the number of paragraphs and the SHA-256
    of the three files together."""
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for i, paragraph in enumerate(corpus_paragraphs(roots or package_roots(), keep_out, max_words, max_files)):
        split = "valid" if i % HELD == HELD - 2 else "test" if i % HELD == HELD - 1 else "train"
        splits[split].append(paragraph)
    if extra_train:
        splits["train"].append(extra_train)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    stats: dict[str, int | str] = {}
    for split, paragraphs in splits.items():
        text = "\n".join(paragraphs) + "\n"
        digest.update(text.encode("utf-8"))
        atomic_write(folder / f"{split}.txt", lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
        stats[f"{split}_words"] = sum(len(p.split()) for p in paragraphs)
    stats["paragraphs"] = sum(len(p) for p in splits.values())
    stats["words"] = sum(int(stats[f"{s}_words"]) for s in splits)
    stats["extra_words"] = len(extra_train.split())
    stats["sha256"] = digest.hexdigest()
    return stats
