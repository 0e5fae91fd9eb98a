"""What a recipe reaches on any machine: the same recipe trained with several seeds, mean ± spread.

The README's figures for the demo's runs come from this script, not from one lucky run. It prints the machine
(cores, torch threads, load average) beside the figures and writes ``benchmarks/RECIPES.md``.

    python benchmarks/recipes.py                          # the demo's two runs, 5 seeds each
    python benchmarks/recipes.py --recipes digits-lenet5 --seeds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dnn.train import train

# recipe → (overrides as the demo runs it, the headline metric in results["test"])
RECIPES = {
    "digits-lenet5": ([], "accuracy"),
    "dates-attention": ([], "exact_match"),
}


def measure(recipe: str, seeds: int, threads: int) -> dict:
    overrides, metric = RECIPES[recipe]
    values, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            start = time.perf_counter()
            args = [*overrides, f"seed={seed}", f"train.threads={threads}", "train.report=false"]
            results = train(recipe, args, run_dir=Path(tmp) / f"{recipe}-{seed}", progress=False)
            seconds.append(time.perf_counter() - start)
            values.append(results["test"][metric])
            print(f"  {recipe} seed {seed}: test {metric} {values[-1]:.4f} ({seconds[-1]:.0f} s)", flush=True)
    return {"recipe": recipe, "metric": metric, "values": values, "mean": statistics.mean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values),
            "seconds": statistics.mean(seconds)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "RECIPES.md"))
    args = parser.parse_args()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s), "
               f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print(machine)
    rows = [measure(recipe, args.seeds, args.threads) for recipe in args.recipes]
    lines = [
        "# What the demo's recipes reach, over seeds",
        "",
        f"Measured with `python benchmarks/recipes.py --seeds {args.seeds}` on {machine}; load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        "| recipe | test metric | mean ± sd | min – max | seeds | seconds per run |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['recipe']}` | {r['metric']} | {r['mean']:.3f} ± {r['sd']:.3f} | {r['min']:.3f} – "
                     f"{r['max']:.3f} | {len(r['values'])} | {r['seconds']:.0f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
