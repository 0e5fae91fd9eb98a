"""What every benchmark shares: variants timed round-robin, medians of per-round ratios, the machine's load.

A *variant* is one way of doing a piece of work (dnn's model, its plain PyTorch peer, Keras; 1 or 2 threads;
fp32 or bf16). Each round times every variant once, in turn, so that a change in the machine's load (these
machines have 2 shared cores) hits all of them alike; a ratio is the median over rounds of the per-round ratios.
Every variant runs with denormals flushed (unless it is the one that shows what they cost) and with its own thread
count, both set before each timing.

Each timing also records the process's CPU time. Wall time is what a user waits for and is what the tables show;
CPU time per item is printed beside it for the single-thread variants, where it is a measure of work that
another process's load does not inflate as much (it still pays for a shared cache and memory bus).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = [
    "BF16",
    "BF16_SKIPPED",
    "DEFAULT_THREADS",
    "Row",
    "Variant",
    "load_average",
    "process_settings",
    "ratio",
    "round_robin",
    "cpu_line",
    "set_threads",
]


def process_settings() -> None:
    """What ``dnn train`` sets for its process, set here for every side alike: denormals flushed, and freed memory
    kept for reuse (``train.keep_memory``; glibc). Both are process-wide, so the ratios compare the models' code,
    not these settings; ``benchmarks/seq2seq.py`` measures what keeping memory is worth in processes of its own."""
    from dnn.device import keep_freed_memory

    torch.set_flush_denormal(True)
    keep_freed_memory()


def _bf16_units() -> tuple[bool, str]:
    from dnn.device import precision_supported

    why = precision_supported(torch.device("cpu"), "bf16")
    return why is None, "" if why is None else f"bf16 rows skipped: {why}"


# Whether this CPU has bf16 units (torch's report, which follows ONEDNN_MAX_CPU_ISA): without them bf16 is emulated,
# a matrix product ~160× slower than fp32, and dnn refuses it, so no bf16 row is measured; BF16_SKIPPED says why.
BF16, BF16_SKIPPED = _bf16_units()


def cpu_line() -> str:
    """The CPU every figure of the run comes from: model, instruction sets, torch's kernel set, bf16 units."""
    from dnn.device import cpu_info

    return f"cpu: {cpu_info().describe()}, {os.cpu_count()} logical cores"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, taken before any benchmark changes it


def set_threads(n: int | None) -> None:
    """``n`` intra-op threads; None is torch's default (not whatever an earlier variant left behind)."""
    n = DEFAULT_THREADS if n is None else n
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@dataclass
class Variant:
    """One timed way of doing the work: ``run()`` does one unit of it and returns how many items it did."""

    name: str
    run: Callable[[], float]
    threads: int | None = None
    flush_denormal: bool = True  # False only for the variant that shows what denormals cost
    rates: list[float] = field(default_factory=list)  # items per wall second, one per round
    cpu_per_item: list[float] = field(default_factory=list)  # process CPU seconds per item, one per round

    def time_once(self) -> None:
        set_threads(self.threads)
        torch.set_flush_denormal(self.flush_denormal)
        wall, cpu = time.perf_counter(), time.process_time()
        items = self.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        torch.set_flush_denormal(True)
        self.rates.append(items / wall)
        self.cpu_per_item.append(cpu / items)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def round_robin(variants: list[Variant], rounds: int, warmup: int = 1, label: str = "", unit: str = "/s") -> None:
    """Warm every variant up, then time each once per round, in turn; print each round's rates."""
    for v in variants:
        set_threads(v.threads)
        torch.set_flush_denormal(v.flush_denormal)
        for _ in range(warmup):
            v.run()
        torch.set_flush_denormal(True)
    for r in range(rounds):
        for v in variants:
            v.time_once()
        line = ", ".join(f"{v.name} {v.rates[-1]:.3g}" for v in variants)
        print(f"  {label} round {r + 1}/{rounds}: {line} {unit}", flush=True)


def ratio(a: Variant, b: Variant) -> tuple[float, float, float]:
    """a's rate over b's: the median of the per-round ratios, and their min and max."""
    ratios = [x / y for x, y in zip(a.rates, b.rates, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


@dataclass
class Row:
    """One line of a results table: a variant against its reference, and the target the ratio is held to."""

    section: str
    variant: str
    value: float
    unit: str
    reference: str = ""
    ratio: tuple[float, float, float] | None = None
    target: float | None = None  # the ratio it should reach, if any
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None or self.ratio is None:
            return ""
        return "met" if self.ratio[0] >= self.target else "MISSED"

    def ratio_text(self) -> str:
        if self.ratio is None:
            return ""
        r, lo, hi = self.ratio
        return f"{r:.2f}× ({lo:.2f}–{hi:.2f})"

    def line(self) -> str:
        """The printed ratio line: ``ratio  <variant> vs <reference>: 1.23× (…) [target ≥ 1.2×: met]``."""
        if self.ratio is None:
            return f"rate   {self.section}: {self.variant}: {self.value:.4g} {self.unit}" + (
                f"  {self.note}" if self.note else ""
            )
        text = f"ratio  {self.section}: {self.variant} vs {self.reference}: {self.ratio_text()}"
        if self.target is not None:
            text += f"  [target ≥ {self.target:g}×: {self.verdict}]"
        return text + (f"  {self.note}" if self.note else "")


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| section | variant | rate | × reference (median, min–max over rounds) | target |",
        "|---|---|---:|---|---|",
    ]
    for r in rows:
        against = f"{r.ratio_text()} {r.reference}" if r.ratio is not None else ""
        target = f"≥ {r.target:g}×: {r.verdict}" if r.target is not None else ""
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.section} | {r.variant}{note} | {r.value:.4g} {r.unit} | {against} | {target} |")
    return "\n".join(lines)


def measure_and_print(run: Callable[[], list[Row]], header: str = "") -> list[Row]:
    """:func:`process_settings`, the load average printed before and after ``run()``, then every ratio line and the
    markdown table: what each benchmark script prints on its own."""
    process_settings()
    print(f"torch {torch.__version__}{header}; load average before: {load_average()}", flush=True)
    print(cpu_line() + (f"; {BF16_SKIPPED}" if not BF16 else ""), flush=True)
    rows = run()
    print(f"load average after: {load_average()}")
    for r in rows:
        print(r.line())
    print()
    print(markdown_table(rows))
    return rows
