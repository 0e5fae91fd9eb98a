"""``dnn data get NAME``: download a public dataset once, verify it, and lay it out the way dnn's tasks read it.

    dnn data list                      what there is, how big, which recipe uses it, and whether it is here
    dnn data get mnist                 download (resuming a partial file), verify, extract, convert
    dnn data path mnist                the folder it is in
    dnn train mnist-lenet5             a recipe whose data.train is ``dataset:mnist/train``

The cache is ``~/.cache/dnn/datasets`` (``$XDG_CACHE_HOME/dnn/datasets``); the ``DNN_CACHE`` environment variable or
``--cache DIR`` puts it elsewhere (a recipe finds it through ``DNN_CACHE``). In the cache::

    downloads/<file>.part     a download in progress: the next ``get`` continues it (an HTTP Range request)
    downloads/<file>          a verified download (removed once the dataset is prepared, unless --keep)
    <name>/                   the prepared dataset, renamed into place whole from ``.<name>.partial-*``
    <name>/.dnn-dataset.json  written last: what was prepared, from which files and checksums

Every file is checked against its published SHA-256 (and size) before anything reads it; a mismatch deletes the
file and is one line. A download stops at the file's published size (at :data:`MAX_UNSIZED_BYTES` for a file
without one): a server that sends more, or says it will, is a wrong or broken mirror, and the partial file is
deleted, so no server can fill the disk. Without a connection, ``get`` says in one line which URLs to download
by hand and where to put them; the next ``get`` verifies and prepares them. A config value ``dataset:NAME/PATH`` (see
:func:`resolve_data_path`) is the file or folder PATH of a prepared dataset, or one line saying
``run: dnn data get NAME``.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TextIO

from dnn.data.datasets import DATASETS, Dataset, Resource
from dnn.errors import ConfigError, DataError
from dnn.io import write_json

__all__ = [
    "DATASETS",
    "PREFIX",
    "cache_dir",
    "data_command",
    "dataset_dir",
    "fetch",
    "get_dataset",
    "resolve_data_path",
    "verify",
]

PREFIX = "dataset:"  # data.train=dataset:mnist/train
MARKER = ".dnn-dataset.json"
CHUNK = 1 << 20
ATTEMPTS = 3  # connections per URL for one download (each resumes where the last stopped)
TIMEOUT_S = 30.0
MAX_UNSIZED_BYTES = 256 << 20  # a file published without its size (UD train: 14 MB; Multi30k: under 2 MB each)


# ----------------------------------------------------------------------------------------------- where


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """``cache``, else ``$DNN_CACHE``, else ``$XDG_CACHE_HOME/dnn/datasets`` (``~/.cache/dnn/datasets``)."""
    if cache:
        return Path(cache).expanduser()
    if os.environ.get("DNN_CACHE"):
        return Path(os.environ["DNN_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnn" / "datasets"


def get_spec(name: str) -> Dataset:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"no dataset named {name!r}{hint}; datasets: {', '.join(DATASETS)} (see `dnn data list`)")
    return DATASETS[name]


def dataset_dir(name: str, cache: str | os.PathLike | None = None) -> Path | None:
    """The folder of the prepared dataset ``name``, or None when ``dnn data get NAME`` has not finished."""
    folder = cache_dir(cache) / get_spec(name).name
    return folder if (folder / MARKER).is_file() else None


def resolve_data_path(value: str | None, key: str = "data.train") -> str | None:
    """``dataset:NAME/PATH`` → the path of PATH inside the prepared dataset NAME; any other value unchanged.

    A dataset that is not there yet is one ConfigError saying ``run: dnn data get NAME``."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    name, _, inner = value[len(PREFIX) :].partition("/")
    try:
        spec = get_spec(name)
    except ConfigError as err:
        raise ConfigError(f"{key}={value}: {err}") from None
    folder = dataset_dir(name)
    if folder is None:
        where = f"{cache_dir()}" + ("" if os.environ.get("DNN_CACHE") else "; set DNN_CACHE if you used --cache")
        raise ConfigError(f"{key}={value}: {spec.title} is not downloaded yet (looked in {where}); run: dnn data get "
                        f"{name}")  # fmt: skip
    path = folder / inner
    if not path.exists():
        raise ConfigError(f"{key}={value}: {path} is not in the prepared dataset; run: dnn data get {name} --force")
    return str(path)


# ----------------------------------------------------------------------------------------------- progress


class Progress:
    """A bar redrawn in place on a terminal; elsewhere (a log, CI) a plain line every 10 % and one at the end."""

    def __init__(self, label: str, total: int | None, stream: TextIO, start: int = 0):
        self.label, self.total, self.stream, self.start = label, total, stream, start
        # probe: any writable stream is accepted (a log, a StringIO); one without isatty is not a terminal
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.t0, self.last_draw, self.last_tenth = time.monotonic(), 0.0, -1
        self.done = start

    def update(self, done: int) -> None:
        self.done = done
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw >= 0.1:
                self.last_draw = now
                self.stream.write("\r" + self._line(bar=True))
                self.stream.flush()
        elif self.total:
            tenth = min(10, done * 10 // self.total)
            if tenth > self.last_tenth:
                self.last_tenth = tenth
                print(self._line(bar=False), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line(bar=True) + "\n")
        elif not self.total or self.last_tenth < 10:
            print(self._line(bar=False), file=self.stream)
        self.stream.flush()

    def _line(self, bar: bool) -> str:
        rate = (self.done - self.start) / max(time.monotonic() - self.t0, 1e-6)
        size = f"{self.done / 1e6:,.1f}" + (f"/{self.total / 1e6:,.1f}" if self.total else "") + " MB"
        if not self.total:
            return f"  {self.label}  {size}  {rate / 1e6:.1f} MB/s"
        fraction = min(1.0, self.done / self.total)
        drawn = f" |{'█' * int(fraction * 30):<30}|" if bar else ""
        return f"  {self.label} {fraction:4.0%}{drawn} {size}  {rate / 1e6:.1f} MB/s"


# ----------------------------------------------------------------------------------------------- verify


def file_digests(path: Path) -> tuple[str, str]:
    """(SHA-256, git blob SHA-1) of a file, in one pass; the blob id is SHA-1 of ``blob <size>\\0`` + content."""
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def verify(path: Path, resource: Resource, name: str) -> None:
    """``path`` is the published file, or it is deleted and a one-line DataError says so."""

    def refuse(what: str) -> None:
        path.unlink(missing_ok=True)
        raise DataError(f"{path}: {what}; the file was deleted: run `dnn data get {name}` again (a file put there by "
                        f"hand must be {resource.urls[0]})")  # fmt: skip

    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        refuse(f"{size:,} bytes, expected {resource.size:,} (an interrupted or different file)")
    sha256, blob = file_digests(path)
    if resource.sha256 is not None and sha256 != resource.sha256:
        refuse(f"SHA-256 mismatch (got {sha256}, expected {resource.sha256})")
    if resource.git_blob_sha1 is not None and blob != resource.git_blob_sha1:
        refuse(f"git blob id mismatch (got {blob}, expected {resource.git_blob_sha1})")


# ----------------------------------------------------------------------------------------------- fetch


class Unreachable(Exception):
    """No URL of a resource answered with its file (refused, unknown host, timeout, an HTTP error)."""


def _urls(resource: Resource, mirror: str | None) -> list[str]:
    return [f"{mirror.rstrip('/')}/{resource.filename}"] if mirror else list(resource.urls)


def fetch(resource: Resource, dest: Path, name: str, mirror: str | None = None, stream: TextIO | None = None,
          timeout: float = TIMEOUT_S) -> Path:  # fmt: skip
    """Download ``resource`` to ``dest`` through ``dest.part`` (continued with an HTTP Range request if a part is
    there), verify it, and rename it into place. Unreachable if no URL answers; DataError if a transfer keeps
    breaking (the part stays for the next try) or the file is not the published one (it is deleted)."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    for url in _urls(resource, mirror):
        try:
            _download(url, part, resource, stream or sys.stderr, timeout)
        except Unreachable as err:
            reasons.append(f"{urllib.parse.urlsplit(url).netloc}: {err}")
            continue
        verify(part, resource, name)
        os.replace(part, dest)
        return dest
    raise Unreachable("; ".join(reasons))


def _download(url: str, part: Path, resource: Resource, stream: TextIO, timeout: float) -> None:
    broken = None
    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        if resource.size is not None and have == resource.size:
            return  # complete already: verify() decides
        if resource.size is not None and have > resource.size:
            part.unlink()
            have = 0
        headers = {"User-Agent": "dnn-data-get", "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # nothing after what we have: the part is whole (verify() decides)
                return
            if broken is not None:
                break
            raise Unreachable(f"HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            if broken is not None:
                break
            # probe: a URLError has .reason; an OSError or HTTPException is its own reason
            reason = getattr(err, "reason", err)
            raise Unreachable(" ".join(str(reason).split()) or type(err).__name__) from None
        try:
            with response:
                _receive(response, part, have, resource, stream, url)
            return
        except (OSError, http.client.HTTPException) as err:  # the connection broke mid-transfer
            broken = " ".join(str(err).split()) or type(err).__name__
    got = part.stat().st_size if part.exists() else 0
    raise DataError(f"{url}: the download stopped after {got:,} bytes ({broken}); run `dnn data get` again to "
                    f"continue from there")  # fmt: skip


def _receive(response, part: Path, have: int, resource: Resource, stream: TextIO, url: str = "") -> None:
    """Append the response to ``part`` (from byte ``have``), never past the file's size (see the module
    docstring)."""
    resumed = have and response.status == 206 and _range_start(response.headers.get("Content-Range")) == have
    if have and not resumed:
        print(f"  {resource.filename}: the server sent the whole file again; starting over", file=stream)
        have = 0
    limit = resource.size if resource.size is not None else MAX_UNSIZED_BYTES
    length = response.headers.get("Content-Length")
    total = have + int(length) if length and length.isdigit() else resource.size
    if total is not None and total > limit:
        _too_much(part, resource, limit, url, f"announced {total:,} bytes")
    progress = Progress(resource.filename, total, stream, start=have)
    with open(part, "ab" if resumed else "wb") as f:
        done = have
        while chunk := response.read(min(CHUNK, limit + 1 - done)):  # one byte past the limit tells it is over
            f.write(chunk)
            done += len(chunk)
            progress.update(done)
        f.flush()
        os.fsync(f.fileno())
    progress.close()
    if done > limit:
        _too_much(part, resource, limit, url, f"sent {done:,} bytes or more")
    if total is not None and done < total:
        raise OSError(f"connection closed at {done:,} of {total:,} bytes")


def _too_much(part: Path, resource: Resource, limit: int, url: str, what: str) -> None:
    part.unlink(missing_ok=True)
    size = "its published size" if resource.size is not None else "the limit for a file published without a size"
    raise DataError(f"{url or resource.filename}: the server {what}, more than the {limit:,} of {size}; the "
                    "partial download was deleted (a wrong or broken mirror?)")  # fmt: skip


def _range_start(content_range: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes FIRST-LAST/TOTAL``, or None."""
    try:
        return int(content_range.split()[1].split("-")[0]) if content_range else None
    except (IndexError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------- get


def get_dataset(name: str, cache: str | os.PathLike | None = None, mirror: str | None = None, force: bool = False,
                keep: bool = False, log=print, stream: TextIO | None = None) -> Path:  # fmt: skip
    """Download, verify and prepare the dataset ``name`` into the cache; return its folder.

    Files already in ``downloads/`` (a finished download, or one put there by hand) are verified, not fetched
    again. The dataset is prepared in ``.<name>.partial-<pid>`` and renamed into place whole; ``force`` prepares it
    again. One ``get`` per dataset at a time (a lock in ``downloads/``)."""
    spec = get_spec(name)
    root = cache_dir(cache)
    target = root / spec.name
    if (target / MARKER).is_file() and not force:
        log(f"{spec.name}: already prepared in {target}")
        return target
    downloads = root / "downloads"
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{downloads}: cannot create the dataset cache ({err.strerror or err}); choose another with "
                        f"--cache DIR or DNN_CACHE") from None  # fmt: skip
    with _Lock(downloads / f".{spec.name}.lock", spec.name):
        files, unreachable = {}, []
        for resource in spec.resources:
            path = downloads / resource.filename
            if path.is_file():
                log(f"{resource.filename}: found in {downloads}, verifying")
                verify(path, resource, spec.name)
            else:
                try:
                    fetch(resource, path, spec.name, mirror, stream)
                except Unreachable as err:
                    unreachable.append((resource, str(err)))
                    continue
            files[resource.filename] = path
        if unreachable:
            raise DataError(_by_hand(spec, unreachable, downloads, mirror))
        _prepare(spec, files, root, target, log)
    if not keep:
        for path in files.values():
            path.unlink(missing_ok=True)
    log(f"{spec.name}: ready in {target} ({spec.layout}); train with: dnn train {spec.recipe}")
    return target


def _by_hand(spec: Dataset, unreachable: list[tuple[Resource, str]], downloads: Path, mirror: str | None) -> str:
    urls = " ".join(_urls(r, mirror)[0] for r, _ in unreachable)
    names = ", ".join(r.filename for r, _ in unreachable)
    return (f"cannot download {spec.name} ({unreachable[0][1]}). Download {urls} by hand, put "
            f"{'it' if len(unreachable) == 1 else 'them'} in {downloads}/ (as {names}), then run `dnn data get "
            f"{spec.name}` again: it verifies and prepares what it finds there")  # fmt: skip


def _prepare(spec: Dataset, files: dict[str, Path], root: Path, target: Path, log) -> None:
    for stale in root.glob(f".{spec.name}.partial-*"):  # left by a killed `get` (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    partial = root / f".{spec.name}.partial-{os.getpid()}"
    try:
        partial.mkdir()
        spec.prepare(files, partial, lambda line: log(f"{spec.name}: {line}"))
        checks = {r.filename: {"sha256": r.sha256, "git_blob_sha1": r.git_blob_sha1, "urls": list(r.urls)}
                  for r in spec.resources}  # fmt: skip
        write_json(partial / MARKER, {"format": "dnn-dataset", "version": 1, "name": spec.name, "title": spec.title,
                                      "task": spec.task, "files": checks, "licence": spec.licence,
                                      "citation": spec.citation})  # fmt: skip
        # probe: os.sync exists on Unix only; elsewhere the rename goes ahead without it
        if hasattr(os, "sync"):  # every converted file on disk before the rename makes the dataset visible
            os.sync()
        if target.exists():
            old = root / f".{spec.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(partial, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, target)
    except OSError as err:
        raise DataError(f"{target}: cannot write the prepared dataset ({err.strerror or err})") from None
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


class _Lock:
    """An exclusive, non-blocking lock file: a second `dnn data get` of the same dataset is one line."""

    def __init__(self, path: Path, name: str):
        self.path, self.name, self.fd = path, name, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise DataError(f"another `dnn data get {self.name}` is running (lock {self.path}); wait for it") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock


# ----------------------------------------------------------------------------------------------- the command


def data_command(action: str, name: str | None = None, cache: str | None = None, mirror: str | None = None,
                 force: bool = False, keep: bool = False) -> None:  # fmt: skip
    """``dnn data list | get NAME | path NAME``."""
    if action == "list":
        for spec in DATASETS.values():
            folder = dataset_dir(spec.name, cache)
            state = f"ready in {folder}" if folder else f"not downloaded ({spec.download_size})"
            print(f"{spec.name:<17} {spec.title}")
            print(f"{'':<17} task {spec.task}, recipe {spec.recipe}; {state}")
            print(f"{'':<17} licence: {spec.licence}; cite: {spec.citation}")
        print(f"cache: {cache_dir(cache)} (DNN_CACHE or --cache to change)")
        return
    if not name:
        raise ConfigError(f"`dnn data {action}` needs a dataset name: one of {', '.join(DATASETS)}")
    if action == "get":
        get_dataset(name, cache, mirror, force, keep)
    elif action == "path":
        folder = dataset_dir(name, cache)
        if folder is None:
            raise DataError(f"{name} is not downloaded yet (looked in {cache_dir(cache)}); run: dnn data get {name}")
        print(folder)
    else:
        raise ConfigError(f"`dnn data` takes list, get or path, got {action!r}")
