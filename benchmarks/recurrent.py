"""Training speed of dnn's recurrent layers against torch.nn, measured interleaved in one process.

The model is the Keras IMDB example's: Embedding(20000, 128) → LSTM(64) (or GRU(64)) → Linear(1), one training
step = forward + backward + Adam at batch 32, length 200. Variants:

- ``torch.nn``            torch.nn.LSTM / GRU, denormals flushed — the reference every ratio is taken against
- ``torch.nn, denormals`` the same without ``torch.set_flush_denormal(True)``: tiny (vanishing) gradients become
                          denormal numbers, and the CPU slows down on them
- ``dnn fused``           dnn's layer running torch's native kernel on its own parameters
- ``dnn reference``       dnn's step-by-step cells with back-propagation through time written out
- ``dnn reference, compiled``  the reference model under ``torch.compile`` (the time loop stays eager)

Variants run round-robin (each round times every variant for a few steps) and the table shows medians, so that a
change in the machine's load hits all of them alike. The machine's load average is printed before and after.

    python benchmarks/recurrent.py                 # LSTM and GRU, 5 rounds
    python benchmarks/recurrent.py --quick         # a smoke run: 2 rounds, short sequences, no compile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dnn.layers.recurrent import GRU, LSTM

VOCAB, EMBED, HIDDEN = 20000, 128, 64


class Classifier(nn.Module):
    """Embedding → recurrent layer → Linear(1) on the last hidden state: the Keras IMDB example's model."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED)
        self.rnn = rnn
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(self.embedding(tokens))  # tokens (T, B) → (T, B, E)
        h_n = state[0] if isinstance(state, tuple) else state  # (1, B, H)
        return self.head(h_n[-1]).squeeze(-1)  # (B,)


@dataclass
class Variant:
    name: str
    model: nn.Module
    step_model: nn.Module  # what is called: the model, or its compiled wrapper
    optimizer: torch.optim.Optimizer
    flush_denormal: bool
    samples_per_s: list[float]


def make_rnn(cell: str, kind: str) -> nn.Module:
    if kind == "torch":
        return (nn.LSTM if cell == "lstm" else nn.GRU)(EMBED, HIDDEN)
    cls = LSTM if cell == "lstm" else GRU
    # torch's initialisation on every side (forget_bias=None): the same starting weights, the same work
    extra = {"forget_bias": None} if cell == "lstm" else {}
    return cls(EMBED, HIDDEN, implementation=kind, **extra)


def make_variants(cell: str, compile_: bool, lr: float) -> list[Variant]:
    torch.manual_seed(0)
    template = Classifier(make_rnn(cell, "torch"))
    specs = [
        ("torch.nn", "torch", True, False),
        ("torch.nn, denormals", "torch", False, False),
        ("dnn fused", "fused", True, False),
        ("dnn reference", "reference", True, False),
    ]
    if compile_:
        specs.append(("dnn reference, compiled", "reference", True, True))
    variants = []
    for name, kind, flush, compiled in specs:
        model = Classifier(make_rnn(cell, kind))
        model.load_state_dict(template.state_dict(), strict=True)  # identical weights everywhere
        step_model = torch.compile(model) if compiled else model
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        variants.append(Variant(name, model, step_model, optimizer, flush, []))
    return variants


def train_steps(v: Variant, batches, steps: int) -> float:
    """Run ``steps`` training steps; return samples per second."""
    torch.set_flush_denormal(v.flush_denormal)
    start = time.perf_counter()
    n = 0
    for k in range(steps):
        tokens, labels = batches[k % len(batches)]
        loss = F.binary_cross_entropy_with_logits(v.step_model(tokens), labels)
        loss.backward()
        v.optimizer.step()
        v.optimizer.zero_grad(set_to_none=True)
        n += labels.numel()
    elapsed = time.perf_counter() - start
    torch.set_flush_denormal(True)
    return n / elapsed


def run(cell: str, args) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randint(0, VOCAB, (args.length, args.batch), generator=g),
            torch.randint(0, 2, (args.batch,), generator=g).float(),
        )
        for _ in range(8)
    ]
    variants = make_variants(cell, not args.no_compile, args.lr)
    for v in variants:  # warm-up (and compilation) outside the timed rounds
        start = time.perf_counter()
        train_steps(v, batches, args.warmup)
        print(f"  {cell}: {v.name}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    for r in range(args.rounds):
        for v in variants:
            v.samples_per_s.append(train_steps(v, batches, args.steps))
        line = ", ".join(f"{v.name} {v.samples_per_s[-1]:.0f}" for v in variants)
        print(f"  {cell} round {r + 1}/{args.rounds}: {line} samples/s", flush=True)
    ref = variants[0].samples_per_s
    rows = []
    for v in variants:
        ratios = [a / b for a, b in zip(v.samples_per_s, ref)]
        rows.append(
            dict(
                cell=cell,
                variant=v.name,
                samples_per_s=statistics.median(v.samples_per_s),
                ratio=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="training steps per variant per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 steps, length 50, no compile")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.length, args.no_compile = 2, 2, 1, 50, True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, length {args.length}, "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    rows = []
    for cell in args.cells.split(","):
        rows += run(cell.strip(), args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| cell | variant | samples/s (median) | × torch.nn (median, min–max over rounds) |")
    print("|---|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['cell']} | {r['variant']} | {r['samples_per_s']:.0f} | "
            f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) |"
        )
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(rows, f, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
