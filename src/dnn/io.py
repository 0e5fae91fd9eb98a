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

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnn.errors import CheckpointError, DataError, DnnError

__all__ = [
    "EOS",
    "EOS_ID",
    "FORMAT_VERSION",
    "PAD",
    "PAD_ID",
    "SOS",
    "SOS_ID",
    "SPECIALS",
    "UNK",
    "UNK_ID",
    "atomic_write",
    "check_file",
    "load_json",
    "read_json",
    "read_small_text",
    "remove_stale_temporaries",
    "save_json",
    "write_json",
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


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path`` (same folder, so the rename is atomic).

    The file is on disk before the rename makes it visible, and follows the umask (not mkstemp's private 0600).
    A failure (a full disk, a read-only folder) removes the temporary file and is a one-line DnnError naming
    ``path``; the old file, if any, is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot write ({err.strerror or err})") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """``data`` as JSON (UTF-8, non-ASCII kept), atomically."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def save_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """A versioned JSON file (``{"format": ..., "version": FORMAT_VERSION, ...}``), atomically (:func:`load_json`)."""
    return write_json(path, data, indent=1)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.<name>.*.tmp`` files a killed writer left in ``folder``; return them."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
