"""The gettext corpus: which catalogue messages become sentence pairs, and a fixed, disjoint split."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dnn.data.gettext_pairs import catalogue_pairs, write_corpus
from dnn.errors import DataError


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo file (the format msgfmt writes): header, two offset tables, then the strings."""
    keys = sorted(messages)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(messages[k].encode() + b"\0" for k in keys)
    n = len(keys)
    start = 7 * 4 + 16 * n
    key_offsets, value_offsets, offset = [], [], 0
    for k in keys:
        key_offsets.append((len(k.encode()), start + offset))
        offset += len(k.encode()) + 1
    offset = 0
    for k in keys:
        value_offsets.append((len(messages[k].encode()), start + len(ids) + offset))
        offset += len(messages[k].encode()) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    tables = b"".join(struct.pack("ii", *o) for o in key_offsets + value_offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + ids + strs)


def test_only_messages_that_read_as_sentences_become_pairs_each_once(tmp_path):
    root = tmp_path / "locale"
    write_mo(root / "fr/LC_MESSAGES/a.mo", {
        "": "Content-Type: text/plain; charset=UTF-8\n",
        "Could not open the file": "Impossible d'ouvrir le fichier",
        "Cannot read %s": "Impossible de lire %s",  # a placeholder
        "Open {name} now please": "Ouvrir {name} maintenant",
        "_Open the file": "_Ouvrir le fichier",  # an accelerator
        "Quit": "Quitter",  # one word
        "menu\x04Save the file now": "Enregistrer le fichier",  # a context
        "Use the <b>bold</b> face": "Utiliser le gras",  # markup
        "This stays the same": "This stays the same",  # untranslated
        "Two lines of\ntext here": "Deux lignes\nde texte",
    })  # fmt: skip
    write_mo(root / "fr/LC_MESSAGES/b.mo", {
        "": "Content-Type: text/plain; charset=UTF-8\n",
        "Could not open the file": "Le fichier ne s'ouvre pas",  # the first catalogue's translation is kept
        "The disk is full again": "Le disque est de nouveau plein",
    })  # fmt: skip
    assert catalogue_pairs("fr", roots=(str(root),)) == [
        ("Could not open the file", "Impossible d'ouvrir le fichier"),
        ("The disk is full again", "Le disque est de nouveau plein"),
    ]


def test_the_split_is_fixed_disjoint_and_complete(tmp_path):
    root = tmp_path / "locale"
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n"}
    messages.update({f"message number {i} is here": f"message numéro {i} est là" for i in range(400)})
    write_mo(root / "de/LC_MESSAGES/x.mo", messages)
    first = write_corpus("de", tmp_path / "one", valid=50, test=60, roots=(str(root),))
    again = write_corpus("de", tmp_path / "two", valid=50, test=60, roots=(str(root),))
    rows = {k: p.read_text(encoding="utf-8").splitlines() for k, p in first.items()}
    assert {k: len(v) for k, v in rows.items()} == {"valid": 50, "test": 60, "train": 290}
    assert sum(map(len, rows.values())) == len(set().union(*rows.values())) == 400  # disjoint, nothing lost
    assert all(line.count("\t") == 1 for v in rows.values() for line in v)
    assert all(p.read_bytes() == again[k].read_bytes() for k, p in first.items())  # the same seed, the same split


def test_no_catalogue_or_a_bad_language_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"^no gettext catalogues for 'fr' under "):
        catalogue_pairs("fr", roots=(str(tmp_path),))
    with pytest.raises(DataError, match=r"^language '../etc': expected a gettext language code"):
        catalogue_pairs("../etc")


def test_the_corpus_goes_only_into_a_new_empty_or_own_folder(tmp_path):
    root = tmp_path / "locale"
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n"}
    messages.update({f"message number {i} is here": f"Meldung Nummer {i} ist da" for i in range(300)})
    write_mo(root / "de/LC_MESSAGES/x.mo", messages)
    out = tmp_path / "corpus"
    write_corpus("de", out, valid=50, test=50, roots=(str(root),))
    write_corpus("de", out, valid=50, test=50, roots=(str(root),))  # its own files: written again
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds notes.txt, which a gettext corpus does not write"):
        write_corpus("de", out, valid=50, test=50, roots=(str(root),))
    assert (out / "notes.txt").read_text() == "mine"
