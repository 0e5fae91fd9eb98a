"""The run files the server sends — ``report.html`` and the training curves of ``metrics.jsonl`` — read safely and
in bounded time and memory.

A file is served only if it is a regular file directly inside its run directory, reached without a symbolic link
(opened with ``O_NOFOLLOW``) and with no other hard link (``st_nlink == 1``: a hard link could make any file of
the user's readable through the run); it is checked on the open file, so it cannot be swapped between the check
and the read. Anything else is :class:`NotServed` (404), whose message names the run and the file, never what
is in it.

Reads are bounded: a report over :data:`MAX_REPORT_BYTES` is not sent; of a ``metrics.jsonl`` at most
:data:`MAX_CURVES_BYTES` are read — the whole file when it is smaller, else evenly spaced windows of it
(``"sampled": true`` in the answer) — and only the lines a thinned curve needs are parsed. Both run in the server's
worker threads, within a request's time limit (:func:`dnn.serve.inference.check_deadline` between chunks).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from dnn.checks import is_int, is_number
from dnn.errors import CheckpointError
from dnn.rundir import METRICS, REPORT
from dnn.serve.inference import check_deadline

__all__ = ["MAX_CURVES_BYTES", "MAX_REPORT_BYTES", "NotServed", "read_curves", "read_report", "servable"]

MAX_REPORT_BYTES = 32 << 20  # a report's figures are PNGs inlined as base64: a few MB
MAX_CURVES_BYTES = 4 << 20  # of a metrics.jsonl: 20,000 lines or more; what one request holds is a few times this
WINDOWS = 32  # evenly spaced pieces read of a metrics.jsonl larger than MAX_CURVES_BYTES
CHUNK = 1 << 20


class NotServed(CheckpointError):
    """A run file that is missing, or that the server will not send (a link, not a regular file, too large)."""


def _open(run_dir: Path, name: str) -> tuple[int, os.stat_result]:
    """An open descriptor of ``run_dir/name`` and its status, if the file may be served (see the module
    docstring); else NotServed."""
    where = f"{run_dir.name}/{name}"
    # probe: O_NOFOLLOW, O_NONBLOCK and O_CLOEXEC are POSIX flags; os has no such names on Windows
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(run_dir / name, flags)  # a FIFO opens at once (non-blocking) and is refused below
    except FileNotFoundError:
        raise NotServed(f"{where}: missing") from None
    except OSError as err:  # ELOOP: a symbolic link; EACCES, ...
        if os.path.islink(run_dir / name):
            raise NotServed(f"{where}: a symbolic link, not served (it could lead anywhere)") from None
        raise NotServed(f"{where}: cannot be read ({err.strerror or type(err).__name__})") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file, not served"
    elif info.st_nlink > 1:
        problem = f"has {info.st_nlink} hard links, not served (a hard link could be any file of yours)"
    if problem is not None:
        os.close(fd)
        raise NotServed(f"{where}: {problem}")
    return fd, info


def servable(run_dir: Path, name: str) -> bool:
    """Whether ``run_dir/name`` is a file the server would send (what ``GET /runs`` offers)."""
    try:
        info = os.lstat(run_dir / name)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _read(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes of ``fd`` from ``offset`` (fewer at its end), read a chunk at a time within the deadline."""
    parts, done = [], 0
    while done < size:
        check_deadline()
        chunk = os.pread(fd, min(CHUNK, size - done), offset + done)
        if not chunk:
            break
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)


def read_report(run_dir: Path, max_bytes: int = MAX_REPORT_BYTES) -> bytes:
    """The bytes of the run's ``report.html``; NotServed if it may not be served or is over ``max_bytes``."""
    fd, info = _open(run_dir, REPORT)
    try:
        if info.st_size > max_bytes:
            raise NotServed(f"{run_dir.name}/report.html: {info.st_size:,} bytes, more than the {max_bytes:,} the "
                            "server sends; open the file itself")  # fmt: skip
        data = _read(fd, 0, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew since fstat
        raise NotServed(f"{run_dir.name}/report.html: more than the {max_bytes:,} bytes the server sends")
    return data


def _lines(fd: int, size: int, max_bytes: int) -> tuple[list[bytes], bool]:
    """The complete lines of the file (all of it, or of evenly spaced windows when it is over ``max_bytes``) and
    whether they are a sample."""
    if size <= max_bytes:
        return _read(fd, 0, size).split(b"\n"), False
    window = max_bytes // WINDOWS
    lines: list[bytes] = []
    for i in range(WINDOWS):
        offset = (size - window) * i // (WINDOWS - 1)
        piece = _read(fd, offset, window).split(b"\n")
        first = 0 if offset == 0 else 1  # a window starts and ends mid-line: those pieces are dropped
        last = len(piece) if offset + window >= size else len(piece) - 1
        lines += piece[first:last]
    return lines, True


def _evenly(n: int, k: int) -> list[int]:
    """At most ``k`` indices of ``range(n)``, evenly spaced, the last always kept."""
    if n <= k:
        return list(range(n))
    step = math.ceil(n / k)
    return sorted({*range(0, n, step), n - 1})


def _records(lines: list[bytes]) -> list[dict[str, Any]]:
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # damaged or cut short (a run killed mid-write): skipped, never echoed
            continue
        if isinstance(record, dict) and is_int(record.get("step")):
            records.append(record)
    return records


def read_curves(run_dir: Path, max_points: int = 400, max_bytes: int = MAX_CURVES_BYTES) -> dict[str, Any]:
    """The training curves of a run from its ``metrics.jsonl``: ``{"train": {"step": [...], "loss": [...],
    "lr": [...]}, "eval": {"step": [...], <metric>: [...]}, "sampled": bool}`` — the evaluation lines of the
    validation split; each series thinned to at most ``max_points`` points (the last always kept); a value that
    is not a finite number becomes null; a line that is not a JSON object is skipped. At most ``max_bytes`` of the
    file are read (see the module docstring)."""
    fd, info = _open(run_dir, METRICS)
    try:
        lines, sampled = _lines(fd, info.st_size, max_bytes)
    finally:
        os.close(fd)
    check_deadline()
    evals_raw = [line for line in lines if b'"split"' in line or b'"eval"' in line]
    train_raw = [line for line in lines if b'"loss"' in line and not (b'"split"' in line or b'"eval"' in line)]
    del lines
    train: dict[str, list] = {"step": [], "loss": [], "lr": []}
    for record in _records([train_raw[i] for i in _evenly(len(train_raw), max_points)]):
        if is_number(record.get("loss")):
            for key in train:
                train[key].append(record.get(key))
    evals = [r for r in _records([evals_raw[i] for i in _evenly(len(evals_raw), max_points)])
             if (r.get("kind") == "eval" or "split" in r) and r.get("split", "valid") == "valid"]  # fmt: skip
    names = sorted({k for r in evals for k, v in r.items() if is_number(v) and k not in _NOT_METRICS})
    eval_series = {"step": [r["step"] for r in evals], **{k: [r.get(k) for r in evals] for k in names}}
    return {"train": _json_safe(train), "eval": _json_safe(eval_series), "sampled": sampled}


_NOT_METRICS = {"step", "epoch", "kind", "split"}


def _json_safe(series: dict[str, list]) -> dict[str, list]:
    return {key: [_finite(value) for value in values] for key, values in series.items()}


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a value (a diverged loss) becomes null; only numbers are sent."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if is_number(value) else None
