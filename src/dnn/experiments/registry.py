"""The experiments by name: ``@experiment(name, claim)`` registers one; :func:`run_experiment` runs it and writes
``<out>/<name>/results.md`` (``results-quick.md`` for ``--quick``) and the index ``<out>/README.md``."""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dnn.errors import ConfigError, did_you_mean
from dnn.experiments.base import Context, ExperimentResult
from dnn.experiments.protocol import NONE, Protocol, fingerprint
from dnn.experiments.resume import Records
from dnn.io import atomic_write

__all__ = ["Experiment", "experiment", "get_experiment", "list_experiments", "run_experiment"]

# the order: the recurrent claims first, then attention, then convolution and transfer
ORDER = (
    "vanishing-gradient",
    "adding-problem",
    "attention-vs-length",
    "attention-scores",
    "gradient-clipping",
    "gru-vs-lstm",
    "cnn-vs-fc",
    "transfer-learning",
    "truncated-bptt",
    "depth-connections",
    "rnn-vs-transformer",
    "text-transfer",
)
MODULES = ("dnn.experiments.gradients", "dnn.experiments.clipping", "dnn.experiments.adding",
           "dnn.experiments.recurrent", "dnn.experiments.attention", "dnn.experiments.vision", "dnn.experiments.depth",
           "dnn.experiments.transformer", "dnn.experiments.text_transfer")  # fmt: skip


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # one line: what the lecture says and this experiment measures
    run: Callable[[Context], ExperimentResult]
    protocol: Protocol  # the paper's protocol beside ours, each difference named
    threads: int = 1  # torch threads for its runs; 0: every core (an experiment about parallel hardware)
    estimate_s: int = 0  # its full-size time on this 2-core machine when quiet: measured, or from a timed slice


_EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, claim: str, protocol: Protocol, threads: int = 1, estimate_s: int = 0):
    """Register ``run(ctx) -> ExperimentResult`` as the experiment ``name``, following ``protocol``, its runs on
    ``threads`` torch threads (0: every core); ``estimate_s``: its expected full-size seconds on a quiet machine
    (the progress lines' first guess, and experiments/README.md's plan)."""

    def decorator(run: Callable[[Context], ExperimentResult]):
        if name in _EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        _EXPERIMENTS[name] = Experiment(name, claim, run, protocol, threads, estimate_s)
        return run

    return decorator


def _load() -> None:
    for module in MODULES:
        importlib.import_module(module)


def list_experiments() -> list[Experiment]:
    """Every experiment, in the issue's order."""
    _load()
    return sorted(_EXPERIMENTS.values(), key=lambda e: ORDER.index(e.name) if e.name in ORDER else len(ORDER))


def get_experiment(name: str) -> Experiment:
    _load()
    if name not in _EXPERIMENTS:
        hint = did_you_mean(name, _EXPERIMENTS, f"; experiments: {', '.join(ORDER)}")
        raise ConfigError(f"no experiment named {name!r}{hint}")
    return _EXPERIMENTS[name]


def run_experiment(name: str, quick: bool = False, out: str | Path = "experiments", runs: str | Path | None = None,
                   log: Callable[[str], None] = print, device: str = "auto",
                   after: Sequence[str] = ()) -> ExperimentResult:  # fmt: skip
    """Run one experiment on one thread (every core for one about parallel hardware); write its results.md
    (quick: results-quick.md) and plot into ``out/<name>/``, its run directories into ``runs/<name>`` (default
    ``runs/experiments/<name>[-quick]``), and refresh ``out/README.md``. Its models train on ``device`` (``auto``:
    CUDA when there is one).

    Each finished seed is kept in ``out/<name>/seeds/`` (quick: in its run folder), so a rerun after a kill trains
    only the seeds that had not finished; ``after`` names the experiments this command runs next, whose estimates
    the progress lines add to the time left."""
    import os

    import torch

    from dnn.device import resolve_device

    spec = get_experiment(name)
    resolve_device(device, where="--device")  # a device that is not there: one line before anything runs
    # small recurrent batches: a second intra-op thread only waits on a busy core — unless parallelism is the claim;
    # a quick version checks the machinery, on one thread so that the test suite stays fast on a busy machine
    threads = 1 if quick else spec.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    out = Path(out)
    runs = Path(runs) if runs is not None else Path("runs") / "experiments"
    run_folder = runs / f"{name}{'-quick' if quick else ''}"
    records = Records(run_folder / "seeds" if quick else out / name / "seeds", name, fingerprint(spec.protocol),
                      quick, log)  # fmt: skip
    ctx = Context(name, spec.claim, quick, out / name, run_folder, log, spec.protocol, device, threads, records,
                  0.0 if quick else spec.estimate_s,
                  0.0 if quick else sum(get_experiment(n).estimate_s for n in after))  # fmt: skip
    ctx.out.mkdir(parents=True, exist_ok=True)
    log(f"experiment {name}{' (quick)' if quick else ''}: {spec.claim}")
    result = spec.run(ctx)
    result.results_file = ctx.out / ("results-quick.md" if quick else "results.md")
    text = result.markdown()
    atomic_write(result.results_file, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    _write_index(out)
    return result


def last_full_run(out: Path, spec: Experiment) -> dict[str, str | float | bool] | None:
    """What ``out/<name>/results.md`` says of the last full run: its verdict and summary, its seconds, and whether
    it ran under the protocol now in the code (its fingerprint). None: never run at full size."""
    results = out / spec.name / "results.md"
    if not results.is_file():
        return None
    text = results.read_text(encoding="utf-8")
    found = re.search(r"\*\*Verdict: ([^*]+)\*\* \(([^)]*)\)", text)
    timed = re.search(r"full version, (\d+) s on this machine", text)
    return {
        "verdict": found.group(1) if found else "?",
        "summary": found.group(2) if found else "?",
        "seconds": float(timed.group(1)) if timed else math.nan,
        "current": f"Protocol fingerprint: `{fingerprint(spec.protocol)}`." in text,
    }


def _write_index(out: Path) -> None:
    """``out/README.md``: each experiment's claim, the verdict of its last full run (from its results.md), whether
    its protocol changed since, the difference from the paper that remains, its time, and the total."""
    lines = [
        "# What the lecture claims, measured",
        "",
        "Written by `dnn experiment NAME` (all of them: `make experiments`); each verdict is that of the last full",
        "run on this machine, against an expectation fixed in the code before the run, following the protocol of",
        "the paper it cites (each results.md has the protocol table: the paper's beside ours, each difference",
        "named). A FAIL stays a FAIL: its results.md says why the claim did not hold here and when it does. An",
        "experiment whose protocol or expectations changed since its last full run says so; its verdict is that",
        "of the earlier protocol until it is rerun.",
        "",
        "| experiment | claim | verdict of the last full run | remaining difference from the paper | seconds "
        "(last full run) | estimated seconds (full size, now) |",
        "|---|---|---|---|---|---|",
    ]
    total, missing, planned = 0.0, 0, 0
    for spec in list_experiments():
        last = last_full_run(out, spec)
        verdict, seconds = "not run yet", "–"
        if last is not None:
            verdict = f"[{last['verdict']}, {last['summary']}]({spec.name}/results.md)"
            if not last["current"]:
                verdict += " — protocol changed, not yet rerun at full size"
            if not math.isnan(last["seconds"]):
                seconds = f"{last['seconds']:.0f}"
                total += last["seconds"]
        if seconds == "–":
            missing += 1
        planned += spec.estimate_s
        remaining = spec.protocol.remaining if spec.protocol.remaining != NONE else "none"
        lines.append(f"| `{spec.name}` | {spec.claim} | {verdict} | {remaining} | {seconds} | {spec.estimate_s:,} |")
    minutes = f"{total / 60:.0f} minutes" + (f", {missing} not run" if missing else "")
    lines += [
        "",
        f"Last full runs: {total:,.0f} s ({minutes}), the sum of the experiments' own times.",
        "",
        f"Estimated for `make experiments` with the protocols now in the code: {planned:,} s (about "
        f"{planned / 3600:.1f} hours) on this 2-core machine when it is quiet — each experiment's own time in its "
        "last full run where its budget did not change, else a timed slice of its budget scaled to a quiet "
        "machine (the numbers and how they were measured are beside each `@experiment` in the code). Every "
        "experiment prints a line after each seed with the time it expects to have left, and keeps each finished "
        "seed in `<name>/seeds/` (the numbers behind its tables, stamped with its protocol): killed, a rerun "
        "trains only the seeds that had not finished; delete the folder to run them all again. "
        "`rnn-vs-transformer` uses every core, so it needs the machine to "
        "itself: on a busy one its second thread waits for a core (11× slower under a load average of 4.7).",
        "",
        "Transfer learning for text (a language model pretrained on unlabelled text, fine-tuned to classify,",
        "ULMFiT) is `text-transfer`; `transfer-learning` covers images.",
    ]
    text = "\n".join(lines) + "\n"
    atomic_write(out / "README.md", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
