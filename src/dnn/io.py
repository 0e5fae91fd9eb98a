"""Files: the one atomic writer, file checks, JSON persistence, and the special token ids every part shares.

Every file dnn writes (weights, training state, config, vocabularies, task.json, results, figures, the report)
goes through :func:`atomic_write`: the bytes go to a temporary file in the same folder, are flushed to disk
(``fsync``), take the permissions the user's umask gives a new file, and are renamed over the old file; the
folder is synced after the rename. A reader sees the old file or the new one, never half of one, and a crash
leaves at worst a ``.<name>.*.tmp`` file, which :func:`remove_stale_temporaries` clears.

The special tokens have the same ids in every vocabulary, model, batch and decoder::

    <pad> 0    <unk> 1    <sos> 2    <eos> 3
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, TextIO

from dnn.errors import CheckpointError, ConfigError, DataError, DnnError

__all__ = [
    "EOS",
    "EOS_ID",
    "FORMAT_VERSION",
    "FolderLock",
    "PAD",
    "PAD_ID",
    "SOS",
    "SOS_ID",
    "SPECIALS",
    "UNK",
    "UNK_ID",
    "atomic_write",
    "check_entries",
    "check_file",
    "commit",
    "fingerprint",
    "foreign_error",
    "is_temporary_of",
    "link_error",
    "load_json",
    "open_append",
    "open_nofollow",
    "read_bytes_nofollow",
    "read_json",
    "read_small_text",
    "remove_stale_temporaries",
    "resource_error",
    "save_json",
    "sha256_file",
    "write_json",
    "write_temporary",
    "write_text",
]

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
SPECIALS = (PAD, UNK, SOS, EOS)
PAD_ID, UNK_ID, SOS_ID, EOS_ID = range(4)
FORMAT_VERSION = 1  # of the versioned JSON files (vocabularies, labels, tokenizers)
TMP_SUFFIX = ".tmp"


# -- writing -----------------------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def resource_error(path: str | os.PathLike, err: OSError, doing: str = "cannot write") -> CheckpointError:
    """An OSError as one line naming ``path``: a full disk, a read-only folder, a name too long, no permission."""
    reason = err.strerror or str(err) or type(err).__name__
    hint = {
        errno.ENOSPC: "; free some space",
        errno.EDQUOT: "; free some space",
        errno.EROFS: "; choose a writable folder",
        errno.EACCES: "; choose a folder you may write to",
        errno.ENAMETOOLONG: "; choose a shorter name",
    }.get(err.errno or 0, "")
    return CheckpointError(f"{path}: {doing} ({reason}){hint}")


def _as_oserror(err: BaseException) -> OSError | None:
    """The OSError behind a writer's failure (torch and safetensors wrap the one of a full disk in their own)."""
    if isinstance(err, OSError):
        return err
    found = re.search(r"os error (\d+)", str(err))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    if isinstance(err, RuntimeError) and ("unexpected pos" in str(err) or "write failed" in str(err)):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def write_temporary(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` for a new temporary file beside ``path``, flush it to disk and give it the mode the
    umask gives a new file; return the temporary path (:func:`commit` renames it). A failure removes it and is a
    one-line DnnError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise resource_error(path, err) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except Exception as err:  # noqa: BLE001 — a writer's own wrapping of a full disk is still a full disk
        Path(tmp).unlink(missing_ok=True)
        cause = _as_oserror(err)
        if cause is None:
            raise
        raise resource_error(path, cause) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename the temporary file ``tmp`` (from :func:`write_temporary`) over ``path`` and make the rename durable.
    The rename replaces the name itself: a symbolic or hard link that stood there is not written through."""
    path = Path(path)
    try:
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise resource_error(path, err) from None
    _sync_dir(path.parent)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path`` (same folder, so the rename is atomic).

    The file is on disk before the rename makes it visible, and follows the umask (not mkstemp's private 0600).
    A failure (a full disk, a read-only folder) removes the temporary file and is a one-line DnnError naming
    ``path``; the old file, if any, is left as it was.
    """
    return commit(write_temporary(path, write), path)


def open_nofollow(path: str | os.PathLike, flags: int = os.O_RDONLY, what: str = "file") -> int:
    """A descriptor of the regular file ``path``, opened without following a symbolic link (``O_NOFOLLOW``); one
    that is written in place (``flags`` not read-only) must have no other hard link. Otherwise a one-line
    CheckpointError naming the file."""
    path = Path(path)
    writing = flags & (os.O_WRONLY | os.O_RDWR)
    try:
        # probe: O_CLOEXEC and O_NONBLOCK are POSIX flags; os has no such names on Windows
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0), 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.EMLINK and os.path.islink(path)):
            raise CheckpointError(f"{path}: is a symbolic link; dnn opens no {what} through a link (replace it by "
                                  "the file itself, or choose another folder)") from None  # fmt: skip
        raise resource_error(path, err, "cannot write" if writing else "cannot read") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path}: not a regular file, expected a {what}")
        if writing and info.st_nlink > 1:
            raise CheckpointError(f"{path}: has {info.st_nlink} hard links; dnn writes nothing through a hard link "
                                  "(another name of the file would change too): copy it with `cp`")  # fmt: skip
        # probe: the descriptor was opened non-blocking only where os has O_NONBLOCK (not on Windows)
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike, what: str = "log") -> TextIO:
    """``path`` opened to append UTF-8 text (created if absent), never through a symbolic or hard link."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what)
    return os.fdopen(fd, "a", encoding="utf-8")


def read_bytes_nofollow(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, never read through a symbolic link."""
    fd = open_nofollow(path, os.O_RDONLY, what)
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as err:
            raise resource_error(path, err, "cannot read") from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """``data`` as JSON (UTF-8, non-ASCII kept), atomically."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def save_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """A versioned JSON file (``{"format": ..., "version": FORMAT_VERSION, ...}``), atomically (:func:`load_json`)."""
    return write_json(path, data, indent=1)


def is_temporary_of(entry: str, name: str) -> bool:
    """Whether ``entry`` is a temporary file :func:`write_temporary` made for a file called ``name``."""
    return entry.startswith(f".{name}.") and entry.endswith(TMP_SUFFIX) and len(entry) > len(name) + 2 + 4


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove the ``.<name>.*.tmp`` files a killed writer left in ``folder`` for the files ``names`` (regular
    files only, never through a link); return them. Nothing else is touched."""
    names = set(names)
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        if not any(is_temporary_of(entry, name) for name in names):
            continue
        tmp = Path(folder) / entry
        info = tmp.lstat()
        if stat.S_ISREG(info.st_mode):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a regular file (read in 1 MiB pieces, never through a symbolic link)."""
    digest = hashlib.sha256()
    with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, Any]:
    """What a run read from ``path`` (a file, or every file under a folder; ``names``: only these files of it):
    ``{"path", "files", "size", "sha256"}``; a path that is not there is ``{"path", "missing": True}``."""
    path = Path(path)
    if not path.exists():
        return {"path": str(path), "missing": True}
    if path.is_file():
        files = [(path.name, path)]
    elif names is not None:
        files = [(n, path / n) for n in sorted(names) if (path / n).is_file()]
    else:
        files = sorted((str(p.relative_to(path)), p) for p in path.rglob("*") if p.is_file())
    digest, size = hashlib.sha256(), 0
    for name, file in files:
        with open(file, "rb") as f:
            inner = hashlib.file_digest(f, "sha256").hexdigest()
        size += file.stat().st_size
        digest.update(f"{name}\0{file.stat().st_size}\0{inner}\n".encode())
    return {"path": str(path), "files": len(files), "size": size, "sha256": digest.hexdigest()}


class FolderLock:
    """One writer per folder: an exclusive ``flock`` on the file ``path``, opened without following a link.

    The kernel drops the lock when its process dies, however it dies, so a crashed writer's lock is stale at once:
    the next writer takes it. The file holds the writer's pid and command, for the message.
    """

    def __init__(self, path: str | os.PathLike, command: str = "train"):
        self.path, self.command, self.fd = Path(path), command, None

    def acquire(self) -> None:
        import fcntl

        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, "lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            pid, command = (holder + ["?", "train"])[:2] if holder else ("?", "train")
            raise ConfigError(f"{self.path.parent} is being written by another dnn {command} (pid {pid}); wait for "
                              f"it to finish, or choose another folder") from None  # fmt: skip
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.command}".encode(), 0)
        except OSError as err:
            os.close(fd)
            raise resource_error(self.path, err) from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


def link_error(path: str | os.PathLike) -> CheckpointError:
    return CheckpointError(f"{path}: is a symbolic link; dnn opens nothing in its folders through a link: remove it, "
                           "or choose another folder")  # fmt: skip


def foreign_error(path: str | os.PathLike) -> CheckpointError:
    return CheckpointError(f"{path}: not written by dnn (its manifest does not list it); dnn never writes over a file "
                           "it did not make: move it away, or choose another folder")  # fmt: skip


def check_entries(folder: Path, entries: Iterable[str], listed: Collection[str], known: Collection[str],
                  folders: Collection[str], whole: Collection[str]) -> None:  # fmt: skip
    """Refuse ``folder`` where dnn would write through a link or over a file not its own: every entry named in
    ``known`` (what dnn may write) or ``listed`` (what it wrote), and every file in the sub-folders ``folders``, must
    be a regular file with one link, and listed — as itself, or, in a sub-folder of ``whole`` listed as ``name/``,
    by its folder (TensorBoard's event files). Names dnn never writes are the user's and left alone."""
    for entry in entries:
        target = folder / entry
        if entry in folders or entry + "/" in listed:
            if target.is_symlink() or not target.is_dir():
                _check_entry(target, entry, ())  # a link, or a file where dnn keeps a folder
            owned = entry in whole and entry + "/" in listed
            for inner in sorted(os.listdir(target)):
                if (target / inner).is_symlink() or not (target / inner).is_dir():
                    _check_entry(target / inner, entry + "/" if owned else f"{entry}/{inner}", listed)
        elif entry in known or entry in listed:
            _check_entry(target, entry, listed)


def _check_entry(target: Path, name: str, listed: Collection[str]) -> None:
    info = target.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise link_error(target)
    if name not in listed and not (target.name.startswith(".") and target.name.endswith(TMP_SUFFIX)):
        raise foreign_error(target)
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        raise CheckpointError(f"{target}: has {info.st_nlink} hard links; dnn writes nothing through a hard link "
                              "(another name of the file would change too): copy the folder with `cp -r`")  # fmt: skip


# -- reading -----------------------------------------------------------------------------------------------------


def check_file(path: str | os.PathLike, expected: str | None = None) -> Path:
    """``path`` as a Path; DataError if it is missing, not a regular file, or (given ``expected``) empty."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a file")
    if not p.is_file():  # a FIFO, a socket, a device: reading it could block forever
        raise DataError(f"{p}: not a regular file, expected {expected or 'a file'}")
    if expected is not None and p.stat().st_size == 0:
        raise DataError(f"{p}: empty file, expected {expected}")
    return p


def read_small_text(path: str | os.PathLike, max_bytes: int = 64 << 20, expected: str = "text") -> str:
    """The UTF-8 text of a small file; a DataError names the file (and the line of an invalid byte)."""
    p = check_file(path, expected=expected)
    size = p.stat().st_size
    if size > max_bytes:
        raise DataError(f"{p}: {size} bytes is more than the {max_bytes} this file may have, expected {expected}")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{p}:{line}: invalid UTF-8 (byte 0x{raw[err.start]:02x}), expected UTF-8 text") from None


def _parse_json(p: Path, text: str, expected: str, error: type[DnnError]) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{p}:{e.lineno}: not valid JSON ({e.msg}), expected {expected}") from None
    except (ValueError, RecursionError) as e:  # nested too deeply, an integer with too many digits
        raise error(f"{p}: not valid JSON ({type(e).__name__}), expected {expected}") from None


def read_json(path: str | os.PathLike, expected: str = "a JSON object", required: tuple[str, ...] = (),
              error: type[DnnError] = CheckpointError) -> dict[str, Any]:  # fmt: skip
    """The JSON object in ``path`` holding at least the keys ``required``; ``error`` (a run's file: CheckpointError)
    names the file and what is wrong otherwise."""
    p = Path(path)
    try:
        text = read_small_text(p, expected=expected)
    except DataError as err:
        if error is DataError:
            raise
        raise error(f"{err} (missing or unreadable)") from None
    data = _parse_json(p, text, expected, error)
    if not isinstance(data, dict):
        raise error(f"{p}: not {expected} (it holds a JSON {type(data).__name__}, expected an object)")
    missing = [key for key in required if key not in data]
    if missing:
        raise error(f"{p}: has no {missing[0]!r}, expected {expected}")
    return data


def load_json(path: str | os.PathLike, fmt: str) -> tuple[Path, dict[str, Any]]:
    """The versioned JSON object in ``path`` whose ``"format"`` is ``fmt``; a DataError naming the file otherwise."""
    p = check_file(path, expected=f"a {fmt} JSON file")
    data = read_json(p, f"a {fmt} file", error=DataError)
    if data.get("format") != fmt:
        raise DataError(f"{p}: not a {fmt} file (its format is {data.get('format')!r:.60})")
    if data.get("version") != FORMAT_VERSION:
        raise DataError(f"{p}: {fmt} version {data.get('version')!r:.60} is not supported, expected {FORMAT_VERSION}")
    return p, data
