"""What makes a folder dnn's: the names of the files dnn writes in it, and the manifest that lists them.

The manifest (``.dnn-manifest.json``, written first) says the kind of folder (a run, a report, an export), its id,
what run it belongs to, and every file dnn wrote there (with the SHA-256 of checkpoints and weights). A folder may
be claimed when it is new or empty, or its manifest says it holds the same kind of output of the same run
(:func:`claimable`); :class:`dnn.rundir.RunDir` opens, writes, verifies and deletes through it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from dnn.errors import CheckpointError, ConfigError
from dnn.io import check_entries, is_temporary_of, read_bytes_nofollow, resource_error

MANIFEST = ".dnn-manifest.json"
LOCK = ".lock"
CONFIG = "config.yaml"
STATE = "state.pt"
LAST = "last.safetensors"
MODEL = "model.safetensors"
TASK = "task.json"
RESULTS = "results.json"
METRICS = "metrics.jsonl"
LOG = "log.txt"
REPORT = "report.html"
FIGURES = "figures"
TENSORBOARD = "tensorboard"
EXPORT = "export"
VOCAB, LABELS, TOKENIZER = "vocab.json", "labels.json", "tokenizer.json"
SOURCE_VOCAB, TARGET_VOCAB = "source_vocab.json", "target_vocab.json"
SOURCE_TOKENIZER, TARGET_TOKENIZER = "source_tokenizer.json", "target_tokenizer.json"
EXPORT_MANIFEST = "manifest.json"  # an export's description for a deployment (dnn.export)

# names dnn may write at the top of a folder: one of these that the manifest does not list is the user's
KNOWN = {LOCK, CONFIG, STATE, LAST, MODEL, TASK, RESULTS, METRICS, LOG, REPORT, VOCAB, LABELS, TOKENIZER,
         SOURCE_VOCAB, TARGET_VOCAB, SOURCE_TOKENIZER, TARGET_TOKENIZER, EXPORT_MANIFEST}  # fmt: skip
KINDS = {"run": "a dnn run", "report": "a dnn report", "export": "a dnn export"}
FORMAT = "dnn.folder"


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise resource_error(path, err, "cannot read") from None


def new_manifest(made_as: str, of: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """A new manifest of a folder ``made_as`` "run" (with its log) or as an output of the run ``of``."""
    files = {LOCK: {}, LOG: {}} if made_as == "run" else {LOCK: {}}  # listed before they are made
    manifest = {"format": FORMAT, "version": 1, "kind": made_as, "id": uuid.uuid4().hex, "files": files, **extra}
    if of is not None:
        manifest["of"] = of
    return manifest


def dump_manifest(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the folder ``path``; None if it has none. Never read through a link."""
    target = path / MANIFEST
    info = lstat_or_none(target)
    if info is None:
        return None
    try:
        data = json.loads(read_bytes_nofollow(target, "manifest"))  # never through a link
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("kind") not in KINDS \
            or not isinstance(data.get("files"), dict) or "id" not in data:  # fmt: skip
        raise CheckpointError(f"{target}: not a dnn manifest (damaged?); restore it from a copy of the folder")
    return data


def claimable(path: Path, kind: str, of: str | None, resume: bool = False,
               detail: dict[str, Any] | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The manifest of ``path`` if dnn may write ``kind`` there (None: the folder is new or empty); otherwise a
    one-line error that says what to do. Nothing is created or deleted here."""
    info = lstat_or_none(path)
    if info is None:
        return None
    if not path.is_dir():
        raise ConfigError(f"{path} is a file, not a folder; choose a folder")
    manifest = read_manifest(path)
    try:
        entries = sorted(os.listdir(path))
    except OSError as err:
        raise resource_error(path, err, "cannot read") from None
    if manifest is None:
        others = [e for e in entries if not is_temporary_of(e, MANIFEST)]
        if resume and CONFIG in others:
            raise CheckpointError(f"{path} has no {MANIFEST}: not a dnn run, or one made by an older dnn or copied "
                                  "without its hidden files; dnn continues only runs whose files it can vouch for: "
                                  "copy the run with `cp -r`, or start a new one with `dnn train RECIPE --run-dir "
                                  "NEW`")  # fmt: skip
        if resume:
            raise CheckpointError(f"{path} is not a dnn run; start one with `dnn train RECIPE --run-dir {path}`")
        if others:
            shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
            raise ConfigError(f"{path} is not empty and not {KINDS[kind]} (it holds {shown}); choose a new or empty "
                              "folder: dnn never writes over files it did not make")  # fmt: skip
        return None
    if manifest["kind"] != kind:
        raise ConfigError(f"{path} holds {KINDS[manifest['kind']]}, not {KINDS[kind]}; choose a new or empty folder")
    if of is not None and manifest.get("of") != of:
        raise ConfigError(f"{path} holds {KINDS[kind]} of another run; choose a new or empty folder for this one")
    if detail is not None and manifest.get("detail") != detail:
        shown = ", ".join(f"{k} {v}" for k, v in (manifest.get("detail") or {}).items())
        raise ConfigError(f"{path} holds {KINDS[kind]} of this run with {shown}; choose another folder")
    check_entries(path, entries, manifest["files"], KNOWN, folders=(FIGURES, TENSORBOARD), whole=(TENSORBOARD,))
    return manifest
