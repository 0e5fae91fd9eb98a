"""``make bench``: every benchmark in one process, dnn against its peers, ratios printed and written to RESULTS.md.

Sections (each round-robins its own variants; see each script's docstring):

- ``seq2seq``  training steps/s, dnn against ``peers/seq2seq_plain.py``, 2 threads and 1   (seq2seq.py)
- ``beam``     batched beam search against a per-sentence loop, beam 5                       (seq2seq.py)
- ``imdb``     the Keras IMDB LSTM: dnn fused against torch.nn.LSTM and Keras 3             (recurrent.py)
- ``cnn``      LeNet-5 and ResNet-18 in bf16 autocast against fp32, channels_last; matmul peak (cnn.py)
- ``threads``  1 thread against 2, small recurrent batches and CNN batches                  (threads.py)

    python benchmarks/run_all.py                    # all, a few minutes; writes benchmarks/RESULTS.md
    python benchmarks/run_all.py --only cnn,beam    # some sections
    python benchmarks/run_all.py --quick            # a smoke run in seconds; writes nothing unless --out
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cnn  # noqa: E402
import recurrent  # noqa: E402
import seq2seq  # noqa: E402
import threads  # noqa: E402
from common import BF16, BF16_SKIPPED, Row, cpu_line, load_average, markdown_table, process_settings  # noqa: E402
from dnn.device import release_freed_memory  # noqa: E402

SECTIONS = ("seq2seq", "beam", "imdb", "cnn", "threads")


def run_sections(only: list[str], quick: bool, keras: bool, compile_: bool) -> tuple[dict[str, list[Row]], list[str]]:
    flag = ["--quick"] if quick else []
    results: dict[str, list[Row]] = {}
    notes: list[str] = []
    for name in only:
        release_freed_memory()  # each section starts from a compact heap, as a fresh `dnn train` does
        start = time.perf_counter()
        print(f"\n== {name} ==", flush=True)
        if name in ("seq2seq", "beam"):
            args = seq2seq.parse_args([*flag, "--parts", "train" if name == "seq2seq" else "beam"])
            results[name] = seq2seq.run(args)
        elif name == "imdb":
            args = recurrent.parse_args([*flag, "--cells", "lstm"])
            args.no_keras = args.no_keras or not keras
            args.no_compile = args.no_compile or not compile_
            results[name], section_notes = recurrent.run(args)
            notes += section_notes
        elif name == "cnn":
            args = cnn.parse_args(flag)
            results[name] = cnn.run(args)
            notes += cnn.breakdowns(args) if BF16 else []
        elif name == "threads":
            load_before = os.getloadavg()[0]
            results[name] = threads.run(threads.parse_args(flag))
            notes.append(threads.recommendation(results[name], load_before, os.cpu_count() or 1))
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    return results, notes


def results_markdown(results: dict[str, list[Row]], notes: list[str], before: str, after: str, command: str) -> str:
    rows = [r for section in results.values() for r in section]
    targets = [r for r in rows if r.target is not None]
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `{command}` on {datetime.date.today().isoformat()}: torch {torch.__version__}, "
        f"Python {platform.python_version()}.",
        "",
        f"CPU{cpu_line().removeprefix('cpu')}."
        + (f" The {BF16_SKIPPED.replace(' skipped:', ' are skipped:')}." if not BF16 else ""),
        f"Load average (1, 5, 15 min) before: {before}; after: {after}. These machines have 2 shared cores: a load "
        "above 2 means other processes took CPU time from these measurements (2-thread figures suffer most).",
        "",
        "Every ratio is the median over rounds of per-round ratios (min–max in brackets); the variants of a section "
        "run interleaved round-robin in one process, with denormals flushed and freed memory kept for reuse on every "
        "side (what `dnn train` sets: `train.flush_denormal`, `train.keep_memory`).",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for r in targets:
        lines.append(f"| {r.section}: {r.variant} ≥ {r.target:g}× {r.reference} | {r.ratio_text()} | {r.verdict} |")
    for name, section in results.items():
        lines += ["", f"## {name}", "", markdown_table(section)]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 round, no Keras")
    p.add_argument("--no-keras", action="store_true", help="skip Keras 3 even when it is installed")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variant to the IMDB section")
    p.add_argument("--out", default=None, help="the results file (default benchmarks/RESULTS.md; none with --quick)")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out = args.out or (None if args.quick else str(HERE / "RESULTS.md"))

    process_settings()
    before = load_average()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average before: {before}")
    print(cpu_line())
    if not BF16:
        print(BF16_SKIPPED)
    results, notes = run_sections(only, args.quick, keras=not args.no_keras and not args.quick, compile_=args.compile)
    after = load_average()
    print(f"\nload average before: {before}; after: {after}")
    for section in results.values():
        for r in section:
            print(r.line())
    for n in notes:
        print(n)
    if out:
        command = (
            "make bench"
            if argv is None and not sys.argv[1:]
            else "python benchmarks/run_all.py " + " ".join(sys.argv[1:] if argv is None else argv)
        )
        text = results_markdown(results, notes, before, after, command)
        tmp = Path(out + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
