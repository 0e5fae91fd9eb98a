"""A real parallel corpus that needs no download: the messages of the programs installed on this machine and their
translations, made by people, in the gettext catalogues under ``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``.

Every Linux system carries them (more with more packages: a Debian image with Python and a few tools has about
23,000 English–French messages of 3–30 words). A message becomes a pair when it reads as a sentence: 3 to 30
words, no format placeholder (``%s``, ``{0}``, ``$1``), no markup, no keyboard accelerator (``_File``, ``&Open``),
one line, and a translation that differs from it. A message found in several catalogues is kept once (its first
translation in catalogue order). The pairs are shuffled with a fixed seed and split: ``valid`` and ``test`` pairs
held apart, the rest for training.

    pairs = catalogue_pairs("fr")                            # [(english, french)], sorted by English
    paths = write_corpus("fr", "corpus-fr")                   # train.tsv, valid.tsv, test.tsv
    # dnn train translate-tsv data.train=corpus-fr/train.tsv data.valid=corpus-fr/valid.tsv data.test=...
"""

from __future__ import annotations

import gettext
import random
import re
from pathlib import Path

from dnn.errors import DataError
from dnn.io import atomic_write

__all__ = ["catalogue_pairs", "catalogues", "write_corpus"]

ROOTS = ("/usr/share/locale", "/usr/share/locale-langpack", "/usr/local/share/locale")
_PLACEHOLDER = re.compile(r"%[-#0 +'I]*\d*(\.\d+)?[hlLqjzt]*[a-zA-Z%]|\{[^}]*\}|\$\d|\$\{|<[^>]*>|&[a-zA-Z]|_[a-zA-Z]")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?(@[a-z]+)?$")


def catalogues(lang: str, roots: tuple[str, ...] = ROOTS) -> list[Path]:
    """The compiled catalogues (``.mo``) of ``lang`` under ``roots``, sorted by path."""
    if not _LANGUAGE.match(lang):
        raise DataError(f"language {lang!r}: expected a gettext language code such as fr, de, pt_BR")
    found: list[Path] = []
    for root in roots:
        found += Path(root, lang, "LC_MESSAGES").glob("*.mo")
    return sorted(found)


def _sentence(text: str, min_words: int, max_words: int) -> bool:
    text = text.strip()
    return (
        min_words <= len(text.split()) <= max_words
        and "\n" not in text
        and "\t" not in text
        and not _PLACEHOLDER.search(text)
        and any(c.isalpha() for c in text)
    )


def catalogue_pairs(lang: str, roots: tuple[str, ...] = ROOTS, min_words: int = 3, max_words: int = 30
                    ) -> list[tuple[str, str]]:  # fmt: skip
    """(English message, its translation into ``lang``) for every message that reads as a sentence; sorted by the
    English side, each English message once. A catalogue that cannot be read is skipped."""
    files = catalogues(lang, roots)
    if not files:
        raise DataError(f"no gettext catalogues for {lang!r} under {', '.join(roots)}; install a program's "
                        f"translations (Debian: the packages with /usr/share/locale/{lang}/), or choose another "
                        f"language")  # fmt: skip
    pairs: dict[str, str] = {}
    for path in files:
        try:
            with open(path, "rb") as f:
                catalogue = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, ValueError):  # a damaged or foreign catalogue: not a source of pairs
            continue
        for source, target in catalogue.items():
            if not isinstance(source, str) or "\x04" in source:  # plural forms are (id, n); \x04 joins a context
                continue
            source, target = source.strip(), str(target).strip()
            if source in pairs or not target or target == source:
                continue
            if _sentence(source, min_words, max_words) and _sentence(target, 1, 3 * max_words):
                pairs[source] = target
    return sorted(pairs.items())


def write_corpus(lang: str, out_dir: str | Path, valid: int = 1000, test: int = 1000, seed: int = 0,
                 roots: tuple[str, ...] = ROOTS) -> dict[str, Path]:  # fmt: skip
    """``train.tsv``, ``valid.tsv`` and ``test.tsv`` (source<TAB>target) of :func:`catalogue_pairs` in ``out_dir``:
    ``valid`` and ``test`` pairs drawn with ``seed``, the rest for training. Returns the three paths."""
    pairs = catalogue_pairs(lang, roots)
    if len(pairs) < valid + test + 100:
        raise DataError(f"only {len(pairs)} {lang} pairs in this machine's catalogues; need more than "
                        f"{valid + test + 100} for {valid} validation, {test} test and 100 training pairs")  # fmt: skip
    out = Path(out_dir)
    ours = {"train.tsv", "valid.tsv", "test.tsv"}
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"--out {out}: not a folder; choose a new or empty folder for the corpus")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours or p.is_symlink() or not p.is_file())
        if foreign:
            raise DataError(f"--out {out} holds {', '.join(foreign[:3])}, which a gettext corpus does not write; "
                            f"choose a new or empty folder")  # fmt: skip
    random.Random(seed).shuffle(pairs)
    splits = {"valid": pairs[:valid], "test": pairs[valid : valid + test], "train": pairs[valid + test :]}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in splits.items():
        paths[name] = out / f"{name}.tsv"
        text = "".join(f"{s}\t{t}\n" for s, t in rows)
        atomic_write(paths[name], lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    return paths
