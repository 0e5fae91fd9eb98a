"""What every experiment shares: the context it runs in, its result as data, and the results.md it writes.

An experiment is a function ``run(ctx: Context) -> ExperimentResult``. It trains its grid through the ordinary
code — :meth:`Context.train` is :func:`dnn.train.train` on a recipe with overrides, one run directory per point —
measures, and returns tables of numbers plus :class:`Check` s: each an expectation written in the code before
anything ran, the measured value, and PASS or FAIL. ``ctx.quick`` shrinks the budget to seconds; a check that
needs the full budget then reads "n/a (quick)", but the tables still come from real runs.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnn.experiments.protocol import Protocol
from dnn.experiments.protocol import markdown as protocol_markdown
from dnn.experiments.resume import Progress, Records
from dnn.io import atomic_write
from dnn.rundir import METRICS, as_run

__all__ = ["Check", "Context", "ExperimentResult", "Run", "Table", "figure", "fmt", "mean_sd", "save_figure", "spread"]

PASS, FAIL, NA = "PASS", "FAIL", "n/a (quick)"


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits (scientific below 1e-3), everything else as ``str``."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class Check:
    """One expectation, fixed in code before the runs, and what was measured. ``quick_ok``: the check needs no
    training budget (a parameter count, a property at initialisation), so it is asserted in quick mode too."""

    expectation: str
    passed: bool
    measured: str
    quick_ok: bool = False

    def verdict(self, quick: bool) -> str:
        if quick and not self.quick_ok:
            return NA
        return PASS if self.passed else FAIL


@dataclass
class Table:
    """Rows of measured numbers: ``rows`` are dicts keyed by ``columns`` (the data a test asserts on)."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"table {self.title!r} has no column {sorted(unknown)[0]!r}")
        self.rows.append(row)

    def column(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines)


@dataclass
class ExperimentResult:
    """An experiment's measured tables, its checks with their verdicts, and where its files went."""

    name: str
    claim: str
    quick: bool
    setup: str
    tables: list[Table]
    checks: list[Check]
    references: list[str]
    commands: list[str] = field(default_factory=list)
    plot: Path | None = None
    results_file: Path | None = None
    seconds: float = 0.0
    lesson: str = ""  # "What this shows", in plain words for a student: why it held, or why not and when it does
    protocol: Protocol | None = None  # the paper's protocol beside ours (rendered after the setup)
    hardware: str = "one thread"  # what it ran on: "one thread", "2 threads", "cuda"

    @property
    def verdicts(self) -> list[str]:
        return [check.verdict(self.quick) for check in self.checks]

    @property
    def verdict(self) -> str:
        """FAIL if any checked expectation failed, PASS if every checked one held, n/a if none could be checked."""
        verdicts = self.verdicts
        if FAIL in verdicts:
            return FAIL
        return PASS if PASS in verdicts else NA

    def table(self, title_start: str) -> Table:
        """The table whose title starts with ``title_start``."""
        for table in self.tables:
            if table.title.startswith(title_start):
                return table
        raise KeyError(f"{self.name} has no table starting with {title_start!r}")

    def markdown(self) -> str:
        verdicts = self.verdicts
        counted = [v for v in verdicts if v != NA]
        summary = f"{sum(v == PASS for v in counted)} of {len(counted)} expectations met" if counted else "not checked"
        budget = "quick (tiny) version — not the measured result" if self.quick else "full version"
        parts = [
            f"# `{self.name}` — {self.claim}",
            "",
            f"**Verdict: {self.verdict}** ({summary}). `dnn experiment {self.name}{' --quick' if self.quick else ''}`"
            f", {budget}, {self.seconds:.0f} s on this machine ({self.hardware}).",
            "",
            "## Setup",
            "",
            self.setup,
            "",
        ]
        if self.protocol is not None:
            parts += ["## Protocol: the paper's and ours", "", protocol_markdown(self.protocol), ""]
        parts += ["## Measured", ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        parts += ["## Expectations (fixed in the code before the runs)", "", "| expectation | measured | verdict |"]
        parts.append("|---|---|---|")
        for check, verdict in zip(self.checks, verdicts):
            parts.append(f"| {check.expectation} | {check.measured} | **{verdict}** |")
        parts += ["", "## The papers' numbers it echoes", ""]
        parts += [f"- {ref}" for ref in self.references]
        if self.plot is not None:
            parts += ["", f"![{self.name}]({self.plot.name})"]
        if self.commands:
            parts += ["", "## Each run alone", "", "```"] + self.commands + ["```"]
        if self.lesson:
            parts += ["", "## What this shows", "", self.lesson]
        return "\n".join(parts) + "\n"


@dataclass
class Run:
    """One training run of an experiment: its directory, its results.json, the command that reproduces it."""

    label: str
    path: Path
    results: dict[str, Any]
    command: str
    lines: list[dict[str, Any]] | None = None  # its metrics.jsonl when read back from a seed record

    def record(self) -> dict[str, Any]:
        """The run as JSON data for a seed record: its results, its evaluation lines and its training throughput
        (what the tables read; the weights stay in its directory)."""
        rates = [{"kind": "train", "step": r["step"], "items_per_s": r["items_per_s"]} for r in self.metrics("train")
                 if r.get("items_per_s")]  # fmt: skip
        return {"label": self.label, "path": str(self.path), "results": self.results, "command": self.command,
                "lines": self.metrics("eval") + rates}  # fmt: skip

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Run:
        return cls(data["label"], Path(data["path"]), data["results"], data["command"], data["lines"])

    @property
    def steps(self) -> int:
        return int(self.results["steps"])

    @property
    def seconds(self) -> float:
        return float(self.results["seconds"])

    def model(self):
        """The run's best model (eval mode), through :func:`dnn.run.load_run`."""
        from dnn.run import load_run

        return load_run(self.path).model

    def parameters(self, module: str | None = None) -> int:
        """The number of parameters of the model, or of its submodule ``module`` (e.g. ``"rnn"``)."""
        model = self.model()
        part = model if module is None else model.get_submodule(module)
        return sum(p.numel() for p in part.parameters())

    def ms_per_step(self, items_per_step: int) -> float:
        """Milliseconds per optimiser step: ``items_per_step`` over the median logged training throughput (the
        median keeps the intervals with an evaluation in them from counting)."""
        rates = sorted(r["items_per_s"] for r in self.metrics("train") if r.get("items_per_s"))
        return 1000.0 * items_per_step / rates[len(rates) // 2] if rates else math.nan

    def first_step(self, metric: str, below: float) -> int | None:
        """The first evaluation step at which the validation ``metric`` was below ``below`` (None: never)."""
        return next((r["step"] for r in self.metrics("eval") if r.get(metric, math.inf) < below), None)

    def metrics(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The lines of metrics.jsonl (``kind``: "train" or "eval" only)."""
        if self.lines is not None:
            records = self.lines
        else:
            lines = as_run(self.path).file(METRICS).read_text(encoding="utf-8").splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
        return [r for r in records if kind is None or r.get("kind") == kind]


@dataclass
class Context:
    """Where an experiment writes (``out``: results.md and the plot; ``runs``: its run directories), its budget
    (``quick``) and its log. Every run it trains is recorded in ``commands`` as the `dnn train` line that
    repeats it. Its seeds run through :meth:`each_seed`, which keeps each finished one in ``records`` (a rerun
    after a kill resumes) and logs the progress with the time left."""

    name: str
    claim: str
    quick: bool
    out: Path
    runs: Path
    log: Callable[[str], None] = print
    protocol: Protocol | None = None
    device: str = "auto"  # where its models train (train.device); the measurements after training run on the CPU
    threads: int = 1  # torch threads for its runs: 1, or every core for an experiment about parallel hardware
    records: Records | None = None  # where finished seeds are kept (None: nowhere; nothing resumes)
    estimate_s: float = 0.0  # its expected seconds, for the time-left lines until a seed has been timed
    after_s: float = 0.0  # the expected seconds of the experiments that run after it in the same command
    commands: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def stage(self, key: str, compute: Callable[[], Any], what: str,
              usable: Callable[[Any], bool] = lambda data: True) -> Any:  # fmt: skip
        """``compute()``'s JSON data, kept in ``records`` under ``key``: a rerun reads it back instead of computing
        it (unless ``usable(data)`` says its files are gone). The data is always the record read back."""
        if self.records is None:
            return json.loads(json.dumps(compute()))
        return self.records.stage(key, compute, what, self.commands, usable)[0]

    def each_seed(self, seeds: Sequence[int], compute: Callable[[int], Any]) -> dict[int, Any]:
        """``{seed: compute(seed)}``, each seed's data kept in ``records`` once it has finished (a rerun after a
        kill takes the finished ones from there and says so); a progress line after each seed with the time left."""
        progress = Progress(self.name, seeds, self.estimate_s, self.after_s, self.log)
        progress.start()
        results: dict[int, Any] = {}
        for index, seed in enumerate(seeds):
            start = time.perf_counter()
            if self.records is None:
                results[seed], kept = json.loads(json.dumps(compute(seed))), False
            else:
                results[seed], kept = self.records.stage(
                    f"seed-{seed}", lambda seed=seed: compute(seed), f"seed {seed}", self.commands
                )
            progress.done(index, seed, time.perf_counter() - start, kept)
        return results

    @property
    def device_overrides(self) -> list[str]:
        """``train.device=…`` when ``dnn experiment --device`` names one (``auto`` is every recipe's default)."""
        return [] if self.device == "auto" else [f"train.device={self.device}"]

    def train(self, label: str, recipe: str, overrides: list[str]) -> Run:
        """:func:`dnn.train.train` of ``recipe`` with ``overrides`` (plus the experiment's threads and device) into
        ``runs/<label>``."""
        from dnn.rundir import remove_run
        from dnn.train import train

        run_dir = self.runs / label
        remove_run(run_dir)  # a run of an earlier invocation of this experiment: afresh, deleting only dnn's files
        overrides = [*overrides, *self.device_overrides, f"train.threads={self.threads}",
                     *(["train.report=false"] if self.quick else [])]  # fmt: skip
        results = train(recipe, overrides, run_dir=run_dir, progress=False)
        command = " ".join(["dnn train", recipe, *map(shlex.quote, overrides)])
        self.commands.append(command)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in results["test"].items() if isinstance(v, float))
        self.log(f"  {label}: {results['steps']} steps, {results['seconds']:.1f} s; test {shown}")
        return Run(label, run_dir, results, command)

    @property
    def plot_path(self) -> Path:
        return self.out / f"{self.name}{'-quick' if self.quick else ''}.png"

    def result(self, setup: str, tables: list[Table], checks: list[Check], references: list[str],
               plot: Path | None, lesson: str = "") -> ExperimentResult:  # fmt: skip
        return ExperimentResult(
            name=self.name, claim=self.claim, quick=self.quick, setup=setup, tables=tables, checks=checks,
            references=references, commands=list(self.commands), plot=plot,
            seconds=time.perf_counter() - self.start + (self.records.kept_seconds if self.records else 0.0),
            lesson=lesson, protocol=self.protocol, hardware=self.hardware,
        )  # fmt: skip

    @property
    def hardware(self) -> str:
        """What the runs used, in words: the threads, and the device when it is not the CPU."""
        from dnn.device import resolve_device

        device = resolve_device(self.device)
        threads = "one thread" if self.threads == 1 else f"{self.threads} threads"
        return threads if device.type == "cpu" else f"{device.type}, {threads} on the CPU"


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def figure(ncols: int, width: float = 5.0, height: float = 3.8):
    """A row of ``ncols`` axes on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def mean_sd(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for one value) — how every seed comparison is reported."""
    import statistics

    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spread(values: list[float], digits: int = 3) -> str:
    """``mean ± sd (n)`` in words for a results table: ``0.912 ± 0.011 (3 seeds)``."""
    mean, sd = mean_sd(values)
    if math.isnan(mean):
        return "–"
    n = len(values)
    return f"{mean:.{digits}g} ± {sd:.2g} ({n} seed{'s' if n != 1 else ''})"
