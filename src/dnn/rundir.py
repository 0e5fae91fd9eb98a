"""The folders dnn writes — a run, a report drawn elsewhere (``inspect --out``), an export (``export --out``) — and
the one module that touches their files: the names, the manifest, the lock, atomic writes, reading back.

    runs/<name>/   .dnn-manifest.json (written first: the kind of folder, every file dnn wrote with the SHA-256 of
                   checkpoints and weights, the config the run started with, its data's fingerprint)   .lock
                   config.yaml task.json vocab.json … state.pt last.safetensors model.safetensors metrics.jsonl
                   log.txt results.json report.html figures/ tensorboard/ export/<format>/

A folder is taken when it is new or empty, or its manifest says it holds the same kind of output (of the same run);
anything else is refused before anything is created or deleted in it. Nothing is opened through a symbolic link
(``lstat``, ``O_NOFOLLOW``), nothing written in place through a hard link; a file with a name dnn writes that the
manifest does not list is the user's, and refused. A checkpoint's SHA-256 goes into the manifest as *pending*
before its rename and as *current* after it, so a kill at any instant leaves a file the manifest vouches for, and
a changed byte is caught when it is read back. dnn deletes only files its manifest lists.

The file names and the manifest itself (reading it, when a folder may be claimed) are in :mod:`dnn.run_manifest`;
the names are importable from here.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from dnn.errors import CheckpointError, ConfigError
from dnn.io import (
    FolderLock,
    atomic_write,
    commit,
    fingerprint,
    foreign_error,
    link_error,
    open_append,
    open_nofollow,
    read_json,
    remove_stale_temporaries,
    resource_error,
    sha256_file,
    write_json,
    write_temporary,
    write_text,
)
from dnn.run_manifest import (  # the names of a folder's files re-exported: public path (dnn.rundir.MODEL)
    CONFIG,
    EXPORT,
    EXPORT_MANIFEST,
    FIGURES,
    KNOWN,
    LABELS,
    LAST,
    LOCK,
    LOG,
    MANIFEST,
    METRICS,
    MODEL,
    REPORT,
    RESULTS,
    SOURCE_TOKENIZER,
    SOURCE_VOCAB,
    STATE,
    TARGET_TOKENIZER,
    TARGET_VOCAB,
    TASK,
    TENSORBOARD,
    TOKENIZER,
    VOCAB,
    claimable,
    dump_manifest,
    lstat_or_none,
    new_manifest,
    read_manifest,
)

__all__ = ["RunDir", "RunLock", "as_run", "fingerprint", "CONFIG", "EXPORT", "EXPORT_MANIFEST", "FIGURES", "LABELS",
           "LAST", "LOCK", "LOG", "MANIFEST", "METRICS", "MODEL", "REPORT", "RESULTS", "SOURCE_TOKENIZER",
           "SOURCE_VOCAB", "STATE", "TARGET_TOKENIZER", "TARGET_VOCAB", "TASK", "TENSORBOARD", "TOKENIZER",
           "VOCAB"]  # fmt: skip

KEEP_ON_RESTART = {LOCK, LOG}  # what a restart of a run that trained nothing keeps


class RunLock(FolderLock):
    """One writer per folder: an exclusive ``flock`` on ``<folder>/.lock`` (:class:`dnn.io.FolderLock`)."""

    def __init__(self, folder: str | os.PathLike, command: str = "train"):
        super().__init__(Path(folder) / LOCK, command)


class RunDir:
    """A folder dnn reads or writes, with its manifest (None: a folder from before manifests, read only).

    Open one with :meth:`reader` (read back, no lock), :meth:`create_run` / :meth:`open_run` (a run to train or to
    draw into) or :meth:`open_output` (``--out``); the writing ones hold the folder's lock until :meth:`close`.
    """

    def __init__(self, path: Path, manifest: dict[str, Any] | None, persist: bool = False):
        self.path, self.manifest, self.persist = Path(path), manifest, persist
        self.lock: RunLock | None = None
        self.created: bool | None = None  # this process made the run (True: the folder too); a failed start undoes it

    # -- opening ---------------------------------------------------------------------------------------------

    @classmethod
    def reader(cls, path: str | os.PathLike) -> RunDir:
        """A folder to read back: its manifest if it has one (to verify what is read against it)."""
        path = Path(path)
        info = lstat_or_none(path)
        if info is None or not path.is_dir():
            raise CheckpointError(f"{path}: not a run directory ({'no such folder' if info is None else 'a file'})")
        return cls(path, read_manifest(path))

    @classmethod
    def create_run(cls, path: str | os.PathLike, source: dict[str, Any]) -> RunDir:
        """A folder for a new run (``source``: its config): new, empty, or a run of dnn's that trained no step
        (restarted in place). Anything else is refused before anything is written."""
        path = Path(path)
        manifest = claimable(path, "run", None)
        if manifest is not None and lstat_or_none(path / STATE) is not None:
            raise ConfigError(f"{path} already holds a run; continue it with `dnn train --resume --run-dir {path}` "
                              "or choose another --run-dir")  # fmt: skip
        run = cls(path, manifest or new_manifest("run", None, {"source": source, "data": {}}), persist=True)
        if manifest is None:
            run.created = lstat_or_none(path) is None  # False: an empty folder of the user's, which stays
            run._create_folder()
        run._take_lock("train")
        if manifest is not None:  # a run that trained nothing: started again, with this config
            run.remove_listed(keep=KEEP_ON_RESTART)
            run.manifest["source"], run.manifest["data"] = source, {}
            run.save_manifest()
        return run

    @classmethod
    def open_run(cls, path: str | os.PathLike, command: str = "train") -> RunDir:
        """A run of dnn's to continue (``--resume``) or to draw into (``dnn inspect``), locked."""
        path = Path(path)
        if lstat_or_none(path) is None:
            raise CheckpointError(f"{path}: no such run; start one with `dnn train RECIPE --run-dir {path}`")
        manifest = claimable(path, "run", None, resume=True)
        run = cls(path, manifest, persist=True)
        run._take_lock(command)
        return run

    @classmethod
    def open_output(cls, path: str | os.PathLike, kind: str, of: RunDir, detail: dict[str, Any]) -> RunDir:
        """An ``--out`` folder for ``kind`` ("report", "export") of the run ``of``: new, empty, or one holding the
        same kind of output of the same run (and ``detail``, e.g. the export format)."""
        path = Path(path)
        manifest = claimable(path, kind, of.identity(), detail=detail)
        out = cls(path, manifest or new_manifest(kind, of.identity(), {"detail": detail}), persist=True)
        if manifest is None:
            out._create_folder()
        out._take_lock(kind)
        return out

    @classmethod
    def scratch(cls, path: str | os.PathLike) -> RunDir:
        """A throw-away folder whose manifest stays in memory (to compare what would be written)."""
        return cls(Path(path), {**new_manifest("run", None, {}), "files": {}})

    def _create_folder(self) -> None:
        """The folder (and its parents), then the manifest — written first, exclusively: of two dnn processes
        starting in one empty folder at once, one goes on and the other is refused."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise resource_error(self.path, err, "cannot create the folder") from None
        remove_stale_temporaries(self.path, [MANIFEST])  # a start killed while it wrote the manifest
        target = self.path / MANIFEST
        tmp = write_temporary(target, lambda t: Path(t).write_text(dump_manifest(self.manifest), encoding="utf-8"))
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise ConfigError(f"{self.path} is being set up by another dnn process; choose another folder") from None
        except OSError as err:
            raise resource_error(target, err) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _take_lock(self, command: str) -> None:
        self.record(LOCK)
        self.lock = RunLock(self.path, command)
        self.lock.acquire()
        self.manifest = read_manifest(self.path) or self.manifest  # as the last writer left it
        self._settle()
        remove_stale_temporaries(self.path, {*KNOWN, MANIFEST, *self.files})  # what a writer killed mid-save left
        if (self.path / FIGURES).is_dir() and not (self.path / FIGURES).is_symlink():
            remove_stale_temporaries(self.path / FIGURES, [n.split("/", 1)[1] for n in self.files if "/" in n])

    def _settle(self) -> None:
        """A writer killed between a rename and the manifest's update left a *pending* hash: the file on disk is
        the old one or the new one; whichever it is becomes the current hash (anything else stays for
        :meth:`verified` to report)."""
        changed = False
        for name, entry in self.files.items():
            if "pending" not in entry:
                continue
            digest = sha256_file(self.path / name) if self.has(name) else None
            if digest is None or digest in (entry["pending"], entry.get("sha256")):
                del entry["pending"]
                entry.pop("sha256", None)
                if digest is not None:
                    entry["sha256"] = digest
                changed = True
        if changed:
            self.save_manifest()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()  # a second close does nothing

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def discard(self) -> None:
        """Undo a run this process made (a start that failed before any checkpoint): its files, its folder if new."""
        self.remove_listed(keep=set())
        (self.path / MANIFEST).unlink(missing_ok=True)
        self.close()
        if self.created:
            with contextlib.suppress(OSError):  # only if nothing else is there
                self.path.rmdir()

    # -- what the folder is -------------------------------------------------------------------------------------

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest.setdefault("files", {}) if self.manifest is not None else {}

    @property
    def source(self) -> dict[str, Any] | None:
        """The config a run was started with (before its data was read), for a run killed before config.yaml."""
        return self.manifest.get("source") if self.manifest is not None else None

    def identity(self) -> str:
        """The run's id (from its manifest; a run from before manifests: its resolved path)."""
        return str(self.manifest["id"]) if self.manifest is not None else str(self.path.resolve())

    def save_manifest(self) -> None:
        if self.persist:
            write_text(self.path / MANIFEST, dump_manifest(self.manifest))

    # -- names --------------------------------------------------------------------------------------------------

    def file(self, name: str) -> Path:
        """The path of ``name`` for reading: never a symbolic link, never outside the folder."""
        path = self._inside(name)
        info = lstat_or_none(path)
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise link_error(path)
        return path

    def read_json(self, name: str, expected: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The JSON object ``name`` (never through a link); a one-line CheckpointError naming it otherwise."""
        return read_json(self.file(name), expected, required)

    def has(self, name: str) -> bool:
        info = lstat_or_none(self._inside(name))
        return info is not None and stat.S_ISREG(info.st_mode)

    def record(self, name: str) -> None:
        """List ``name`` in the manifest as dnn's (before it is written, so a kill never leaves an unlisted file)."""
        if name not in self.files:
            self.files[name] = {}
            self.save_manifest()

    def output(self, name: str) -> Path:
        """The path for a whole file that another writer puts there atomically (``vocab.save(run.output(...))``):
        checked (no link, not the user's) and listed in the manifest first."""
        path = self._writable(name)
        self.record(name)
        return path

    def write_text(self, name: str, text: str) -> Path:
        return write_text(self.output(name), text)

    def write_json(self, name: str, data: Any) -> Path:
        return write_json(self.output(name), data)

    def write_bytes(self, name: str, data: bytes) -> Path:
        return atomic_write(self.output(name), lambda tmp: Path(tmp).write_bytes(data))

    def write_hashed(self, writers: dict[str, Callable[[str], None]]) -> None:
        """Write several files (``name -> write(tmp_path)``) whose SHA-256 the manifest keeps: each to a temporary
        file, the hashes into the manifest as pending, the renames, the hashes as current."""
        tmps: dict[str, Path] = {}
        try:
            for name, write in writers.items():
                tmps[name] = write_temporary(self._writable(name), write)
            for name, tmp in tmps.items():
                self.files.setdefault(name, {})["pending"] = sha256_file(tmp)
            self.save_manifest()
            for name in list(tmps):
                commit(tmps.pop(name), self._inside(name))
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)
        for name in writers:
            entry = self.files[name]
            entry["sha256"] = entry.pop("pending")
        self.save_manifest()

    def verified(self, name: str, what: str = "file") -> Path:
        """``name``, checked against the SHA-256 the manifest recorded when dnn wrote it (a run without a record of
        it: as it is); a 0-byte or changed file is a one-line CheckpointError naming it."""
        path = self.file(name)
        info = lstat_or_none(path)
        if info is None:
            raise CheckpointError(f"{path}: no such {what}")
        if info.st_size == 0:
            raise CheckpointError(f"{path}: empty (0 bytes), not a {what}: it was cut off (a full disk, or a copy "
                                  "that stopped); restore it from a copy, or train the run again")  # fmt: skip
        for attempt in range(2):
            entry = self.files.get(name) or {}
            expected = {entry.get("sha256"), entry.get("pending")} - {None}
            if not expected:
                return path
            digest = sha256_file(path)
            if digest in expected:
                return path
            if attempt == 0 and self.lock is None:  # a writer may have renamed it after the manifest was read
                self.manifest = read_manifest(self.path) or self.manifest
        shown = entry.get("sha256") or entry.get("pending")
        raise CheckpointError(f"{path}: its SHA-256 ({digest[:12]}…) is not the one dnn recorded when it wrote the "
                              f"{what} ({shown[:12]}…): the file was changed or damaged since; restore it from a "
                              "copy, or train the run again")  # fmt: skip

    def append(self, name: str, what: str = "log") -> TextIO:
        """``name`` opened to append text (listed first; never through a symbolic or hard link)."""
        path = self._writable(name)
        self.record(name)
        return open_append(path, what)

    def truncate(self, name: str, size: int) -> None:
        """Cut the append-only file ``name`` (dnn's) back to ``size`` bytes: what was logged after a checkpoint."""
        if name not in self.files or not self.has(name):
            return
        fd = open_nofollow(self._inside(name), os.O_WRONLY, "log")
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def folder(self, name: str) -> Path:
        """A sub-folder dnn writes into (``figures``, ``tensorboard``): a real folder, never a link; listed."""
        path = self._inside(name + "/")  # a real folder if it is there
        self.record(name + "/")
        try:
            path.mkdir(exist_ok=True)
        except OSError as err:
            raise resource_error(path, err, "cannot create the folder") from None
        return path

    def remove(self, name: str) -> None:
        """Delete ``name`` if the manifest lists it (dnn wrote it) and it is a regular file; unlist it."""
        if name not in self.files:
            return
        path = self._inside(name)
        info = lstat_or_none(path)
        if info is not None and stat.S_ISREG(info.st_mode):
            path.unlink(missing_ok=True)
        del self.files[name]

    def remove_listed(self, keep: set[str]) -> None:
        """Delete the files the manifest lists, except ``keep``."""
        for name in sorted(self.files, key=len, reverse=True):
            if name in keep:
                continue
            if name.endswith("/"):  # a folder dnn made: the files it wrote there by their pattern, then the folder
                folder = self._inside(name)
                for entry in os.scandir(folder) if name == TENSORBOARD + "/" and folder.is_dir() else ():
                    if entry.name.startswith("events.out.tfevents.") and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                try:
                    folder.rmdir()
                except OSError:
                    pass  # something of the user's is in it: it stays
                del self.files[name]
            else:
                self.remove(name)
        self.save_manifest()

    # -- data the run read --------------------------------------------------------------------------------------

    @property
    def data(self) -> dict[str, dict[str, Any]]:
        """The fingerprint of every data file the run read (``key -> {"path", "size", "sha256"}``)."""
        return (self.manifest or {}).get("data") or {}

    def record_data(self, fingerprints: dict[str, dict[str, Any]]) -> None:
        if self.manifest is not None and self.manifest.get("data") != fingerprints:
            self.manifest["data"] = fingerprints
            self.save_manifest()

    # -- helpers ------------------------------------------------------------------------------------------------

    def _inside(self, name: str) -> Path:
        """``name`` (``a``, ``a/b``; ``a/``: the folder ``a``) in the folder; every folder on the way a real one."""
        parts = name.rstrip("/").split("/")
        if not name or any(p in ("", ".", "..") or "\0" in p or "\\" in p for p in parts):
            raise CheckpointError(f"{name!r}: not a file name inside a dnn folder")
        for i in range(1, len(parts) + name.endswith("/")):
            info = lstat_or_none(self.path.joinpath(*parts[:i]))
            if info is not None and stat.S_ISLNK(info.st_mode):
                raise link_error(self.path.joinpath(*parts[:i]))
            if info is not None and not stat.S_ISDIR(info.st_mode):
                raise foreign_error(self.path.joinpath(*parts[:i]))
        return self.path.joinpath(*parts)

    def _writable(self, name: str) -> Path:
        """The path of ``name`` to write: never a link, never the user's file."""
        path = self._inside(name)
        info = lstat_or_none(path)
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise link_error(path)
        if info is not None and name not in self.files and self.persist:
            raise foreign_error(path)
        return path


def as_run(run_dir: RunDir | str | os.PathLike) -> RunDir:
    """``run_dir`` as a :class:`RunDir` (a path: read back, as :meth:`RunDir.reader`)."""
    return run_dir if isinstance(run_dir, RunDir) else RunDir.reader(run_dir)


def remove_run(path: str | os.PathLike) -> None:
    """Delete a run of dnn's to train it afresh (``dnn demo``, an experiment run again): only the files its manifest
    lists, then the folder if nothing else is left. A folder dnn cannot vouch for is refused, untouched."""
    if lstat_or_none(Path(path)) is None:
        return
    try:
        run = RunDir.open_run(path, "train")
    except CheckpointError as err:
        raise CheckpointError(f"{err}; dnn trains it afresh only once you move or delete it yourself") from None
    run.created = True  # the folder goes too, if only dnn's files were in it
    run.discard()
