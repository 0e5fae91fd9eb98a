"""What lets an experiment stop and resume: each finished seed (or shared stage, such as a language model every
seed starts from) kept as a JSON record, and progress lines with the time it expects to have left.

A full run keeps its records in ``<out>/<name>/seeds/`` beside its results.md — the numbers behind the tables,
one file a seed — and a quick run in its run folder. A record is written atomically once its seed has finished,
and stamped with the experiment's protocol fingerprint: a rerun after a kill takes the finished seeds from their
records (and says so) and trains only the rest; a record of another protocol, or of the other budget (quick or
full), is run again. Delete the folder to run every seed afresh::

    records = Records(folder, "adding-problem", fingerprint, quick=False, log=print)
    data = records.stage("seed-0", lambda: {"test": 0.03}, "seed 0")   # computed once, then read back

The data a seed returns must be JSON (dicts with string keys, lists, numbers, strings, None); what the
experiment tabulates is always the record read back, so a resumed run and an uninterrupted one give the same
tables.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dnn.io import atomic_write

__all__ = ["Progress", "Records", "duration"]


def duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``1 h 05 min``: a time left, as a person reads it."""
    if math.isnan(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Records:
    """The finished stages of one experiment's run, one JSON file each in ``folder``."""

    def __init__(self, folder: Path, experiment: str, fingerprint: str, quick: bool, log: Callable[[str], None]):
        self.folder, self.experiment, self.fingerprint = folder, experiment, fingerprint
        self.quick, self.log = quick, log
        self.kept_seconds = 0.0  # the compute time of the records read back instead of run (results.md counts it)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def kept(self, key: str) -> dict[str, Any] | None:
        """The record of ``key`` if one of this protocol and budget is there."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        fits = (record.get("experiment") == self.experiment and record.get("fingerprint") == self.fingerprint
                and record.get("quick") == self.quick)  # fmt: skip
        return record if fits else None

    def stage(self, key: str, compute: Callable[[], Any], what: str, commands: list[str],
              usable: Callable[[Any], bool] = lambda data: True) -> tuple[Any, bool]:  # fmt: skip
        """``(data, kept)``: the record of ``key`` if there is one (its commands appended to ``commands``), else
        ``compute()`` run, its record written atomically and read back. ``usable(data)`` may refuse a record whose
        files are gone (a run folder deleted since)."""
        record = self.kept(key)
        if record is not None and usable(record["data"]):
            commands.extend(record["commands"])
            self.kept_seconds += float(record["seconds"])
            self.log(f"  {what}: kept from an earlier run ({self.path(key)}; delete it to run it again)")
            return record["data"], True
        if self.path(key).is_file():
            self.log(f"  {what}: the record there is of another protocol or budget; running it again")
        start, first = time.perf_counter(), len(commands)
        data = compute()
        record = {"experiment": self.experiment, "key": key, "quick": self.quick, "fingerprint": self.fingerprint,
                  "seconds": time.perf_counter() - start, "commands": commands[first:], "data": data}  # fmt: skip
        text = json.dumps(record, ensure_ascii=False, indent=1)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(key), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return json.loads(text)["data"], False


class Progress:
    """Progress lines over an experiment's seeds: what is done, and the time left — the estimate until a seed has
    been run here, then the pace measured — plus ``after_s``, the estimate of what runs after this experiment."""

    def __init__(self, name: str, seeds: Sequence[int], estimate_s: float, after_s: float,
                 log: Callable[[str], None]):  # fmt: skip
        self.name, self.seeds, self.estimate_s, self.after_s, self.log = name, list(seeds), estimate_s, after_s, log
        self.paces: list[float] = []

    def start(self) -> None:
        n = len(self.seeds)
        expected = f"about {duration(self.estimate_s)} expected" if self.estimate_s else "no estimate"
        self.log(f"{self.name}: {n} seed{'s' if n != 1 else ''}; {expected}{self._after()}")

    def done(self, index: int, seed: int, seconds: float, kept: bool) -> None:
        n = len(self.seeds)
        if not kept:
            self.paces.append(seconds)
        per_seed = sum(self.paces) / len(self.paces) if self.paces else self.estimate_s / max(n, 1)
        left = per_seed * (n - index - 1)
        how = "kept" if kept else f"done in {duration(seconds)}"
        self.log(f"{self.name}: seed {seed} {how} ({index + 1} of {n}); about {duration(left)} left{self._after()}")

    def _after(self) -> str:
        return f", then about {duration(self.after_s)} for the experiments after it" if self.after_s else ""
