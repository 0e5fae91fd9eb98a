"""One intra-op thread or two: training throughput of small recurrent batches and of CNN batches, side by side.

Workloads (dnn's models and optimiser, fp32), each timed at 1 and at 2 threads, all round-robin:

- ``translate-tsv``  the recipe's seq2seq (bi-GRU 256, concat attention, embedding 128, vocabulary 8000), batch 32
- ``IMDB LSTM``      Embedding(20000, 128) → dnn LSTM(64) (fused) → Linear(1), batch 32, length 200
- ``ResNet-18``      32×32 images (``small_input``), batch 64
- ``LeNet-5``        32×32 images, batch 128

The ratio is 2 threads over 1; above 1, the second thread pays. On a machine whose other core is busy, a second
thread waits for it at every parallel region: compare the load average printed beside the figures.

    python benchmarks/threads.py              # about a minute
    python benchmarks/threads.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cnn import train_step_fn  # noqa: E402
from common import Row, Variant, load_average, markdown_table, process_settings, ratio, round_robin  # noqa: E402
from dnn.training.optim import make_optimizer  # noqa: E402
from peers.seq2seq_plain import random_batch  # noqa: E402
from recurrent import Classifier, make_rnn  # noqa: E402
from seq2seq import dnn_model  # noqa: E402


def seq2seq_fn(args):
    torch.manual_seed(0)
    model = dnn_model(args.vocab, 128, args.hidden, 0.2).train()
    optimizer = make_optimizer(model.parameters(), "adam", 1e-3)
    g = torch.Generator().manual_seed(0)
    batches = [
        random_batch(args.seq2seq_batch, args.vocab, args.vocab, g, hi=args.max_length) for _ in range(args.steps)
    ]

    def run() -> float:
        for src, lengths, tgt_in, tgt_out in batches:
            logits, _ = model(src, lengths, tgt_in)
            model.loss(logits, tgt_out).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return len(batches)

    return run


def lstm_fn(args):
    torch.manual_seed(0)
    model = Classifier(make_rnn("lstm", "fused"))
    optimizer = make_optimizer(model.parameters(), "adam", 1e-3)
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randint(0, 20000, (args.length, 32), generator=g), torch.randint(0, 2, (32,), generator=g).float())
        for _ in range(args.steps)
    ]

    def run() -> float:
        for tokens, labels in batches:
            F.binary_cross_entropy_with_logits(model(tokens), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return len(batches)

    return run


WORKLOADS = {
    "translate-tsv seq2seq, batch 32": seq2seq_fn,
    "IMDB LSTM, batch 32": lstm_fn,
    "ResNet-18 32×32, batch 64": lambda args: train_step_fn("resnet18", False, False, args.cnn_batch or 64,
                                                             args.steps)[0],
    "LeNet-5 32×32, batch 128": lambda args: train_step_fn("lenet5", False, False, args.cnn_batch or 128,
                                                            args.steps)[0],
}  # fmt: skip


def run(args) -> list[Row]:
    print(f"threads: 1 against 2; load average {load_average()}", flush=True)
    variants = []
    for name, make in WORKLOADS.items():
        if args.workloads and not any(w in name for w in args.workloads):
            continue
        for threads in (1, 2):
            variants.append(Variant(f"{name} @{threads}", make(args), threads))
    round_robin(variants, args.rounds, label="threads", unit="steps/s")
    rows = []
    for name in WORKLOADS:
        if args.workloads and not any(w in name for w in args.workloads):
            continue
        one, two = (next(v for v in variants if v.name == f"{name} @{t}") for t in (1, 2))
        rows.append(Row("threads", f"{name}: 2 threads", two.rate, "steps/s", "1 thread", ratio(two, one), None,
                        f"1 thread {one.rate:.3g} steps/s"))  # fmt: skip
    return rows


def recommendation(rows: list[Row], load_before: float, cores: int) -> str:
    """The default thread count the measurements argue for, in one paragraph."""
    gains = {r.variant.split(":")[0]: r.ratio[0] for r in rows if r.section == "threads"}
    listed = "; ".join(f"{k} {v:.2f}×" for k, v in gains.items())
    busy = f"the 1-minute load average was {load_before:.2f} on {cores} cores"
    if all(v >= 1.05 for v in gains.values()):
        return (
            f"2 threads over 1: {listed} ({busy}). Recommended default: all cores (torch's own default): the second "
            "thread paid on every workload. One thread is better only where another process keeps a core busy."
        )
    if all(v < 0.95 for v in gains.values()):
        return (
            f"2 threads over 1: {listed} ({busy}). Every workload ran slower with a second thread: each parallel "
            "region waits for a thread that another process has taken off its core. Recommended default: 1 thread "
            "while the machine is busy (load average ≥ cores at start), all cores when it is idle."
        )
    return f"2 threads over 1: {listed} ({busy}). Recommended: 1 thread for the workloads below 1×, all cores above."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--max-length", type=int, default=40)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--seq2seq-batch", type=int, default=32)
    p.add_argument("--cnn-batch", type=int, default=None)
    p.add_argument("--workloads", default="", help="comma-separated name parts (default: all)")


def quick(args) -> None:
    """A smoke run in seconds: its numbers are meaningless."""
    args.rounds, args.steps, args.vocab, args.hidden, args.max_length, args.length = 1, 1, 50, 8, 14, 10
    args.seq2seq_batch, args.cnn_batch, args.workloads = 2, 2, "LeNet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        quick(args)
    args.workloads = [w for w in args.workloads.split(",") if w]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    process_settings()
    load_before = os.getloadavg()[0]
    print(f"torch {torch.__version__}; load average before: {load_average()}", flush=True)
    rows = run(args)
    print(f"load average after: {load_average()}")
    for r in rows:
        print(r.line())
    print(recommendation(rows, load_before, os.cpu_count() or 1))
    print()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
