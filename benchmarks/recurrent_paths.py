"""Which recurrent path trains faster on a CPU: torch's kernel or dnn's hand-written BPTT scan, over a grid of shapes.

``implementation="auto"`` (dnn.layers.recurrent_kernels.scan_is_faster) picks between them from this table. One
training step of one layer = forward over a batch, ``output.sum().backward()``; the two implementations run the
same parameters, interleaved round-robin, medians over rounds:

- ``torch``  ``implementation="fused"``: torch.gru / torch.lstm, packed when the batch has lengths
- ``scan``   ``implementation="reference"``: the input projection as one product, the recurrence in
             dnn.layers.bptt with its backward written out, padded steps computed and masked

Three cases per shape: bidirectional with lengths (a seq2seq encoder, lengths within 6 steps of the longest),
one direction with the same lengths (a sequence classifier), one direction without lengths (a decoder). The padding
column is the share of padded steps in the batch.

    python benchmarks/recurrent_paths.py                   # GRU and LSTM, 1 and 2 threads: ~15 minutes
    python benchmarks/recurrent_paths.py --cells gru --threads 2 --rounds 1
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_line, load_average, process_settings, set_threads  # noqa: E402
from dnn.layers.recurrent import GRU, LSTM  # noqa: E402
from dnn.layers.recurrent_kernels import scan_is_faster  # noqa: E402

CELLS = {"gru": GRU, "lstm": LSTM}
CASES = {"bi, lengths": (True, True), "one way, lengths": (False, True), "one way": (False, False)}


def step(module, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
    out, _ = module(x.clone().requires_grad_(), lengths=lengths)
    out.sum().backward()


def measure(cell: str, batch: int, hidden: int, steps: int, case: str, rounds: int):
    """(padding share, torch ms, scan ms, what "auto" picks) for one shape."""
    bidirectional, with_lengths = CASES[case]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, steps, hidden, generator=g)
    lengths = None
    padding = 0.0
    if with_lengths:
        lengths = torch.randint(max(1, steps - 6), steps + 1, (batch,), generator=g)
        lengths[0] = steps
        padding = 1.0 - float(lengths.sum()) / (batch * steps)
    modules = {}
    for kind in ("fused", "reference"):
        torch.manual_seed(0)
        modules[kind] = CELLS[cell](hidden, hidden, batch_first=True, bidirectional=bidirectional, implementation=kind)
        step(modules[kind], x, lengths)  # warm-up
    repeats = max(1, int(2e8 / (batch * hidden * hidden * steps * 6)))
    times: dict[str, list[float]] = {kind: [] for kind in modules}
    for _ in range(rounds):
        for kind, module in modules.items():
            start = time.perf_counter()
            for _ in range(repeats):
                step(module, x, lengths)
            times[kind].append((time.perf_counter() - start) / repeats * 1e3)
    x_time_major = torch.empty(steps, batch, hidden)
    picks = "scan" if scan_is_faster(cell.upper(), x_time_major, lengths, training=True) else "torch"
    return padding, statistics.median(times["fused"]), statistics.median(times["reference"]), picks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="gru,lstm")
    p.add_argument("--threads", default="2,1")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", default="32,128")
    p.add_argument("--hiddens", default="64,256,512")
    p.add_argument("--steps", default="10,40")
    p.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    process_settings()
    lines = [
        "# Recurrent training paths: torch's kernel against dnn's BPTT scan",
        "",
        f"Measured by `python benchmarks/recurrent_paths.py` on {time.strftime('%Y-%m-%d')}: "
        f"torch {torch.__version__}.",
        "",
        f"CPU: {cpu_line()}. Load average before: {load_average()}.",
        "",
        "One training step of one layer (forward, `output.sum().backward()`), median of "
        f"{args.rounds} interleaved rounds; speed-up = torch ms ÷ scan ms (above 1: the scan is faster).",
        "",
        "| cell | threads | batch | hidden | steps | case | padding | torch ms | scan ms | speed-up | auto picks |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    print("\n".join(lines), flush=True)

    for cell, threads in itertools.product(args.cells.split(","), ints(args.threads)):
        set_threads(threads)
        for batch, hidden, steps, case in itertools.product(ints(args.batches), ints(args.hiddens), ints(args.steps),
                                                            CASES):  # fmt: skip
            padding, fused, scan, picks = measure(cell, batch, hidden, steps, case, args.rounds)
            line = (f"| {cell} | {threads} | {batch} | {hidden} | {steps} | {case} | {padding:.0%} | {fused:.2f} | "
                    f"{scan:.2f} | {fused / scan:.2f} | {picks} |")  # fmt: skip
            lines.append(line)
            print(line, flush=True)
    lines += ["", f"Load average after: {load_average()}."]
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
