"""Seq2seq speed: dnn's training step against a plain PyTorch script, and batched beam search against a loop.

Training. The ``translate-tsv`` recipe's architecture (bi-GRU encoder, GRU decoder, concat attention), vocabulary
8000 on both sides, embedding 256, hidden 256, dropout 0.2, batch 64 of length-bucketed random pairs (8–40
tokens). One step = forward, the loss over the real target tokens, backward, clipping to norm 1, Adam:

- ``dnn``    ``create_model("seq2seq", ...)`` with dnn's own optimiser factory; the loss is the seq2seq task's own
             step (``Seq2SeqTask.step``: ``forward_loss``, the output layer only at real target positions and fused
             with its cross-entropy), then the Trainer's backward, clipping and Adam
- ``plain``  ``benchmarks/peers/seq2seq_plain.py``: the ~100-line torch.nn script a user would write instead

Both see the same batches and compute the same numbers (tests/reference/test_seq2seq_speedpaths.py checks dnn's
step against that script's model, loss and every gradient); the target is dnn ≥ 1.2× the script.

both at 2 threads and at 1 thread, all four round-robin, in a process with dnn's settings on every side
(denormals flushed, freed memory kept for reuse). What keeping memory is worth (``train.keep_memory``) is measured on
the plain script alone, in fresh processes with and without it, alternating: the setting cannot be undone inside one.

Beam search, at two sizes with random weights: the ``translate-tsv`` recipe's (vocabulary 8000, embedding 128,
hidden 256) and the ``dates-attention`` recipe's (vocabulary 40, embedding 32, hidden 64). 64 sentences of 8–30
tokens, beam 5, 30 output tokens each (random weights never end early, so every sentence decodes to max_len):

- ``batched``       ``beam_search`` over all 64 sentences at once (64·5 rows a step)
- ``per sentence``  ``beam_search`` called once per sentence (5 rows a step)
- ``output layer``  the batched search's vocabulary projection alone (64·5 × H × V, 30 times): its share of the
                    batched time is the part that batching cannot shrink
- ``bf16``          both searches again under bf16 autocast (``dnn translate --precision bf16``): the vocabulary
                    projection runs on the CPU's bf16 matrix units

    python benchmarks/seq2seq.py              # both, a few minutes
    python benchmarks/seq2seq.py --quick      # a smoke run: tiny sizes, 1 round
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BF16, Row, Variant, load_average, measure_and_print, ratio, round_robin  # noqa: E402
from dnn.data.batching import Seq2SeqBatch  # noqa: E402
from dnn.decoding import beam_search  # noqa: E402
from dnn.device import autocast  # noqa: E402
from dnn.models import create_model, model_config  # noqa: E402
from dnn.tasks.seq2seq import Seq2SeqTask  # noqa: E402
from dnn.training.optim import make_optimizer  # noqa: E402
from peers.seq2seq_plain import Seq2Seq as PlainSeq2Seq  # noqa: E402
from peers.seq2seq_plain import random_batch  # noqa: E402
from peers.seq2seq_plain import train_step as plain_train_step  # noqa: E402

RECIPE = dict(cell="gru", bidirectional=True, attention="concat")
PEER = Path(__file__).resolve().parent / "peers" / "seq2seq_plain.py"
# the plain script run as its own program, after dnn's train.keep_memory setting or not
RUN_PEER = "import runpy, sys; {keep}sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
KEEP = "from dnn.device import keep_freed_memory; assert keep_freed_memory(); "


def dnn_model(vocab: int, embedding: int, hidden: int, dropout: float):
    return create_model(
        "seq2seq",
        model_config(
            "seq2seq",
            src_vocab_size=vocab,
            tgt_vocab_size=vocab,
            embedding_size=embedding,
            hidden_size=hidden,
            attention_hidden_size=hidden,
            dropout=dropout,
            **RECIPE,
        ),
    )


def as_dnn_batch(src, src_lengths, tgt_in, tgt_out) -> Seq2SeqBatch:
    tgt_mask = tgt_out != -100
    return Seq2SeqBatch(src=src, src_lengths=src_lengths, src_mask=src != 0, tgt_in=tgt_in, tgt_out=tgt_out,
                        tgt_lengths=tgt_mask.sum(1), tgt_mask=tgt_mask)  # fmt: skip


def training_variants(args) -> list[Variant]:
    g = torch.Generator().manual_seed(0)
    batches = [random_batch(args.batch, args.vocab, args.vocab, g, hi=args.max_length) for _ in range(args.steps)]
    dnn_batches = [as_dnn_batch(*b) for b in batches]  # the same tensors, as dnn's data pipeline hands them over
    variants = []
    for threads in args.threads:
        torch.manual_seed(0)
        model = dnn_model(args.vocab, args.embedding, args.hidden, 0.2).train()
        optimizer = make_optimizer(model.parameters(), "adam", 1e-3)
        plain = PlainSeq2Seq(args.vocab, args.vocab, args.embedding, args.hidden, 0.2).train()
        plain_optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3)

        def dnn_steps(model=model, optimizer=optimizer) -> float:
            for batch in dnn_batches:
                loss, _ = Seq2SeqTask.step(model, batch, None)  # what dnn's Trainer runs for a seq2seq task
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            return len(batches)

        def plain_steps(model=plain, optimizer=plain_optimizer) -> float:
            for batch in batches:
                plain_train_step(model, optimizer, batch)
            return len(batches)

        variants += [Variant(f"dnn {threads}t", dnn_steps, threads), Variant(f"plain {threads}t", plain_steps, threads)]
    return variants


def kept_memory_row(args) -> Row:
    """The plain script alone, 3 fresh processes (fewer with ``--rounds``) with glibc's default malloc and as many after
    ``keep_freed_memory()``, alternating, at the section's largest thread count: what ``train.keep_memory`` is worth."""
    threads = max(args.threads)
    argv = [str(PEER), "--steps", str(args.steps * 4), "--batch", str(args.batch), "--vocab", str(args.vocab),
            "--threads", str(threads)]  # fmt: skip
    default, kept = (
        Variant("plain script, glibc's malloc", lambda: 0.0),
        Variant("plain script, memory kept", lambda: 0.0),
    )
    rounds = min(args.rounds, 3)
    for r in range(rounds):
        for v, keep in ((default, ""), (kept, KEEP)):
            out = subprocess.run([sys.executable, "-c", RUN_PEER.format(keep=keep), *argv], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
            v.rates.append(float(out.split()[0]))  # "2.45 steps/s, …"
        print(f"  kept memory round {r + 1}/{rounds}: {default.name} {default.rates[-1]:.3g}, {kept.name} "
              f"{kept.rates[-1]:.3g} steps/s", flush=True)  # fmt: skip
    note = (
        f"{threads} threads, {args.steps * 4} steps a process; glibc's malloc "
        f"{statistics.median(default.rates):.3g} steps/s"
    )
    return Row("seq2seq training, train.keep_memory", kept.name, kept.rate, "steps/s", default.name,
               ratio(kept, default), None, note)  # fmt: skip


def beam_sizes(args) -> dict[str, tuple[int, int, int]]:
    """Model sizes for beam search: (vocabulary, embedding, hidden)."""
    return {
        "translate-tsv size": (args.vocab, args.beam_embedding, args.hidden),
        "dates-attention size": (args.small_vocab, 32, 64),
    }


def beam_variants(args, size: str) -> list[Variant]:
    vocab, embedding, hidden = beam_sizes(args)[size]
    torch.manual_seed(0)
    model = dnn_model(vocab, embedding, hidden, 0.0).eval()
    g = torch.Generator().manual_seed(1)
    n, K = args.sentences, args.beam
    lengths = torch.randint(args.source_lengths[0], args.source_lengths[1] + 1, (n,), generator=g)
    src = torch.randint(4, vocab, (n, int(lengths.max())), generator=g)
    src[torch.arange(src.shape[1]) >= lengths.unsqueeze(1)] = 0
    output = model.decoder.output  # W_o: (V, H)
    rows = torch.randn(n * K, hidden, generator=g)  # (B·K, H)

    def batched(precision: str = "fp32") -> float:
        with autocast(torch.device("cpu"), precision):
            beam_search(model, src, lengths, K, args.beam_max_len, length_penalty=0.6)
        return n

    def per_sentence(precision: str = "fp32") -> float:
        with autocast(torch.device("cpu"), precision):
            for i in range(n):
                beam_search(model, src[i : i + 1, : int(lengths[i])], None, K, args.beam_max_len, 0.6)
        return n

    @torch.no_grad()
    def output_layer() -> float:  # the batched search's vocabulary projection alone: B·K rows, every step
        for _ in range(args.beam_max_len):
            output(rows)
        return n

    variants = []
    for threads in args.threads:
        variants += [
            Variant(f"batched {threads}t", batched, threads),
            Variant(f"per sentence {threads}t", per_sentence, threads),
            Variant(f"output layer {threads}t", output_layer, threads),
        ]
        if BF16:  # without bf16 units: no bf16 row (BF16_SKIPPED says why)
            variants += [
                Variant(f"batched bf16 {threads}t", partial(batched, "bf16"), threads),
                Variant(f"per sentence bf16 {threads}t", partial(per_sentence, "bf16"), threads),
            ]
    return variants


def run(args) -> list[Row]:
    rows = []
    if "train" in args.parts:
        print(f"seq2seq training: batch {args.batch}, vocab {args.vocab}, embedding {args.embedding}, hidden "
              f"{args.hidden}; load average {load_average()}", flush=True)  # fmt: skip
        variants = training_variants(args)
        round_robin(variants, args.rounds, label="seq2seq train", unit="steps/s")
        by_name = {v.name: v for v in variants}
        for threads in args.threads:
            dnn, plain = by_name[f"dnn {threads}t"], by_name[f"plain {threads}t"]
            cpu = sum(plain.cpu_per_item) / sum(dnn.cpu_per_item)
            rows.append(Row("seq2seq training", dnn.name, dnn.rate, "steps/s", plain.name, ratio(dnn, plain), 1.2,
                            f"plain {plain.rate:.3g} steps/s; CPU-time ratio {cpu:.2f}"))  # fmt: skip
        if not args.quick:
            rows.append(kept_memory_row(args))
    if "beam" in args.parts:
        for size, (vocab, embedding, hidden) in beam_sizes(args).items():
            print(f"beam search, {size} (vocabulary {vocab}, embedding {embedding}, hidden {hidden}): "
                  f"{args.sentences} sentences, beam {args.beam}, {args.beam_max_len} tokens each; load average "
                  f"{load_average()}", flush=True)  # fmt: skip
            variants = beam_variants(args, size)
            warmup = 0 if args.quick else 1
            round_robin(variants, args.rounds, warmup=warmup, label=f"beam search, {size}", unit="sentences/s")
            by_name = {v.name: v for v in variants}
            for threads in args.threads:
                batched, loop = by_name[f"batched {threads}t"], by_name[f"per sentence {threads}t"]
                share = batched.rate / by_name[f"output layer {threads}t"].rate
                note = (f"per sentence {loop.rate:.3g} sentences/s; the output layer's B·K × H × V product alone "
                        f"takes {share:.0%} of the batched time")  # fmt: skip
                rows.append(Row(f"beam search, beam {args.beam}, {size}", batched.name, batched.rate, "sentences/s",
                                loop.name, ratio(batched, loop), 5.0, note))  # fmt: skip
                if not BF16:
                    continue
                low, low_loop = by_name[f"batched bf16 {threads}t"], by_name[f"per sentence bf16 {threads}t"]
                note = (f"per sentence {low_loop.rate:.3g} sentences/s; batched bf16 is {low.rate / batched.rate:.2f}× "
                        f"batched fp32")  # fmt: skip
                rows.append(Row(f"beam search, beam {args.beam}, {size}", low.name, low.rate, "sentences/s",
                                low_loop.name, ratio(low, low_loop), 5.0, note))  # fmt: skip
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parts", default="train,beam", help="comma-separated: train, beam")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--embedding", type=int, default=256)
    p.add_argument("--beam-embedding", type=int, default=128, help="the recipe's embedding, for beam search")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--small-vocab", type=int, default=40, help="beam search: the dates recipe's vocabulary")
    p.add_argument("--steps", type=int, default=4, help="training steps per variant per round")
    p.add_argument("--max-length", type=int, default=40, help="the longest training pair")
    p.add_argument("--source-lengths", default="8,30", help="beam search: shortest,longest source")
    p.add_argument("--sentences", type=int, default=64)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--beam-max-len", type=int, default=30)
    p.add_argument("--threads", default="2,1", help="comma-separated thread counts to compare at")


def quick(args) -> None:
    """Tiny sizes and one round: a smoke run in seconds, its numbers meaningless."""
    args.rounds, args.batch, args.vocab, args.embedding, args.beam_embedding, args.hidden = 1, 4, 50, 8, 8, 8
    args.small_vocab = 20
    args.steps, args.max_length, args.source_lengths, args.sentences, args.beam_max_len = 1, 14, "3,6", 3, 4
    args.threads = "1"  # a second thread on a busy 2-core machine can stall a tiny step for seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        quick(args)
    args.parts = args.parts.split(",")
    args.threads = [int(t) for t in str(args.threads).split(",")]
    args.source_lengths = [int(n) for n in str(args.source_lengths).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    measure_and_print(lambda: run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
