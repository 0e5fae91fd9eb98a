"""Training speed of dnn's recurrent layers against torch.nn and Keras 3, measured interleaved in one process.

The model is the Keras IMDB example's: Embedding(20000, 128) → LSTM(64) (or GRU(64)) → Linear(1), one training
step = forward + backward + Adam at batch 32, length 200. Variants:

- ``torch.nn``            torch.nn.LSTM / GRU with torch.optim.Adam, denormals flushed — every ratio's reference
- ``torch.nn, denormals`` the same without ``torch.set_flush_denormal(True)``: tiny (vanishing) gradients become
                          denormal numbers, and the CPU slows down on them
- ``dnn fused``           dnn's layer running torch's native kernel on its own parameters, with the optimiser dnn's
                          Trainer builds (``dnn.training.optim.make_optimizer``)
- ``dnn reference``       dnn's step-by-step cells with back-propagation through time written out
- ``dnn reference, compiled``  the reference model under ``torch.compile`` (the time loop stays eager)
- ``keras 3``             ``keras.Sequential`` of the same layers on Keras's torch backend, ``train_on_batch``
                          (LSTM only; when ``keras`` is installed: ``pip install -e '.[bench]'``)
- ``torch.nn, fused Adam``  what the optimiser alone is worth: torch.nn.LSTM with ``Adam(fused=True)``
- ``dnn fused, bf16``     ``dnn fused`` under bf16 autocast (``train.precision=bf16``): the recurrence runs on the
                          CPU's bf16 units. Whether accuracy holds is measured on real text by
                          ``benchmarks/recipes.py --precisions fp32,bf16`` (``benchmarks/RECIPES.md``)

Variants run round-robin (each round times every variant for a few steps) and the table shows medians, so that a
change in the machine's load hits all of them alike. The machine's load average is printed before and after.

    python benchmarks/recurrent.py                 # LSTM and GRU, 5 rounds
    python benchmarks/recurrent.py --quick         # a smoke run: 1 round, short sequences, no compile, no Keras
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BF16,
    DEFAULT_THREADS,
    Row,
    Variant,
    cpu_line,
    load_average,
    markdown_table,
    process_settings,
    ratio,
    round_robin,
)
from dnn.device import autocast  # noqa: E402
from dnn.layers.recurrent import GRU, LSTM  # noqa: E402
from dnn.training.optim import make_optimizer  # noqa: E402

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


def make_rnn(cell: str, kind: str) -> nn.Module:
    if kind == "torch":
        return (nn.LSTM if cell == "lstm" else nn.GRU)(EMBED, HIDDEN)
    cls = LSTM if cell == "lstm" else GRU
    # torch's initialisation on every side (forget_bias=None): the same starting weights, the same work
    extra = {"forget_bias": None} if cell == "lstm" else {}
    return cls(EMBED, HIDDEN, implementation=kind, **extra)


def torch_variant(
    name, cell, kind, template, batches, args, optimizer="torch", compiled=False, flush=True, precision="fp32"
):
    model = Classifier(make_rnn(cell, kind))
    model.load_state_dict(template.state_dict(), strict=True)  # identical weights everywhere
    step_model = torch.compile(model) if compiled else model
    if optimizer == "dnn":
        opt = make_optimizer(model.parameters(), "adam", args.lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=optimizer == "fused" or None)

    def steps() -> float:
        n = 0
        for k in range(args.steps):
            tokens, labels = batches[k % len(batches)]
            with autocast(torch.device("cpu"), precision):
                logits = step_model(tokens)
            F.binary_cross_entropy_with_logits(logits.float(), labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            n += labels.numel()
        return n

    return Variant(name, steps, args.threads, flush)


def keras_variant(cell: str, batches, args) -> tuple[Variant | None, str]:
    """The same model in Keras 3 on its torch backend, or None and why not."""
    if cell != "lstm":
        return None, ""
    if args.no_keras:
        return None, "Keras 3: skipped (--no-keras or --quick)"
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return None, "Keras 3: not installed, skipped (pip install -e '.[bench]' to compare against it)"
    if keras.backend.backend() != "torch":
        return None, f"Keras 3: skipped, its backend is {keras.backend.backend()!r} (set KERAS_BACKEND=torch)"
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(args.length,), dtype="int32"),
        keras.layers.Embedding(VOCAB, EMBED),
        keras.layers.LSTM(HIDDEN),
        keras.layers.Dense(1),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    data = [(tokens.T.contiguous().int().numpy(), labels.numpy()) for tokens, labels in batches]  # (B, T)

    def steps() -> float:
        n = 0
        for k in range(args.steps):
            x, y = data[k % len(data)]
            model.train_on_batch(x, y)
            n += len(y)
        return n

    return Variant(f"keras {keras.__version__} (torch backend)", steps, args.threads), ""


def run_cell(cell: str, args) -> tuple[list[Row], list[str]]:
    g = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randint(0, VOCAB, (args.length, args.batch), generator=g),
            torch.randint(0, 2, (args.batch,), generator=g).float(),
        )
        for _ in range(args.steps)
    ]
    torch.manual_seed(0)
    template = Classifier(make_rnn(cell, "torch"))
    variants = [
        torch_variant("torch.nn", cell, "torch", template, batches, args),
        torch_variant("torch.nn, denormals", cell, "torch", template, batches, args, flush=False),
        torch_variant("dnn fused", cell, "fused", template, batches, args, optimizer="dnn"),
        torch_variant("dnn reference", cell, "reference", template, batches, args, optimizer="dnn"),
        torch_variant("torch.nn, fused Adam", cell, "torch", template, batches, args, optimizer="fused"),
    ]
    if BF16:  # without bf16 units: no bf16 row (BF16_SKIPPED says why)
        variants.append(
            torch_variant("dnn fused, bf16", cell, "fused", template, batches, args, optimizer="dnn", precision="bf16")
        )
    if not args.no_compile:
        variants.append(
            torch_variant("dnn reference, compiled", cell, "reference", template, batches, args, "dnn", True)
        )
    keras, note = keras_variant(cell, batches, args)
    notes = [note] if note else []
    if keras is not None:
        variants.append(keras)
    round_robin(variants, args.rounds, warmup=args.warmup, label=cell, unit="samples/s")

    ref, dnn = variants[0], variants[2]
    section = f"IMDB {cell.upper()} training"
    rows = []
    for v in variants:
        target = 1.2 if v is dnn else None
        note = "accuracy against fp32 on real text: benchmarks/RECIPES.md" if v.name.endswith("bf16") else ""
        rows.append(Row(section, v.name, v.rate, "samples/s", ref.name, ratio(v, ref), target, note))
    if keras is not None:
        rows.append(Row(section, dnn.name, dnn.rate, "samples/s", keras.name, ratio(dnn, keras), 4.0))
    return rows, notes


def breakdown(args, steps: int = 3) -> str:
    """Where a dnn fused LSTM training step spends its time (torch.profiler, self CPU time): what bounds it."""
    from torch.profiler import profile

    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (args.length, args.batch), generator=g)
    labels = torch.randint(0, 2, (args.batch,), generator=g).float()
    torch.manual_seed(0)
    template = Classifier(make_rnn("lstm", "torch"))
    variant = torch_variant("dnn fused", "lstm", "fused", template, [(tokens, labels)], args, optimizer="dnn")
    variant.run()  # warm-up
    with profile() as prof:
        for _ in range(steps):
            variant.run()
    parts = {"recurrent kernel (forward + backward)": 0.0, "Adam": 0.0, "embedding backward": 0.0, "other": 0.0}
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    adam = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step"))
    for e in events:
        if "rnn" in e.key or "lstm" in e.key.lower():
            parts["recurrent kernel (forward + backward)"] += e.self_cpu_time_total
        elif "embedding" in e.key:
            parts["embedding backward"] += e.self_cpu_time_total
    parts["Adam"] = adam
    parts["other"] = max(total - sum(parts.values()), 0.0)
    return "dnn fused LSTM step, self CPU time: " + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items())


def run(args) -> tuple[list[Row], list[str]]:
    print(
        f"IMDB model: batch {args.batch}, length {args.length}, {args.threads or DEFAULT_THREADS} threads; "
        f"load average {load_average()}",
        flush=True,
    )
    rows, notes = [], []
    for cell in args.cells.split(","):
        cell_rows, cell_notes = run_cell(cell.strip(), args)
        rows += cell_rows
        notes += cell_notes
    if "lstm" in args.cells:
        notes.append(breakdown(args))
    for note in notes:
        print(note)
    return rows, notes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="training steps per variant per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--no-keras", action="store_true", help="skip Keras 3 even when it is installed")


def quick(args) -> None:
    """A smoke run in seconds: its numbers are meaningless."""
    args.rounds, args.steps, args.warmup, args.length, args.no_compile, args.no_keras = 1, 1, 1, 20, True, True
    args.batch, args.threads = 8, args.threads or 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 step, length 20, no compile or Keras")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.quick:
        quick(args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    process_settings()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average before: {load_average()}")
    print(cpu_line())
    rows, _ = run(args)
    print(f"load average after: {load_average()}")
    for r in rows:
        print(r.line())
    print()
    print(markdown_table(rows))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump([r.__dict__ for r in rows], f, indent=2)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
