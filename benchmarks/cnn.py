"""CNN training in bf16 autocast against fp32, as a fraction of the machine's measured matrix-multiply peak.

Models (dnn's zoo, ``create_model``), 10 classes, one training step = forward + cross-entropy + backward + Adam:

- LeNet-5 on 1×32×32 images, batch 128
- ResNet-18 (3×3 stem, no max-pool: ``small_input``) on 3×32×32 images, batch 64

Variants of each, round-robin with two matrix products that measure the peak in the same sitting:

- ``fp32``                     the plain step
- ``bf16``                     forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``; the weights,
                               their gradients and Adam stay fp32 (no loss scaling is needed for bf16)
- ``fp32/bf16 channels_last``  the same with the model and the images in ``torch.channels_last`` (NHWC) memory,
                               the layout dnn trains CNNs in by default in bf16 (fp32 stays NCHW unless
                               ``train.channels_last=true``); bf16 against fp32 is reported in each layout and
                               with dnn's defaults
- ``matmul fp32 / bf16``       a square product (N = 2048), 2N³ flops each, through torch.mm and as a 1×1
                               convolution; the peak of a precision is the faster of the two

A step's work is the flops of its convolutions and matrix products, forward and backward, counted once with
``torch.utils.flop_counter.FlopCounterMode``; the fraction of peak is (flops × steps/s) over the peak of the
step's precision.

    python benchmarks/cnn.py              # a minute or two
    python benchmarks/cnn.py --quick      # a smoke run: tiny batches, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BF16,
    DEFAULT_THREADS,
    Row,
    Variant,
    load_average,
    measure_and_print,
    ratio,
    round_robin,
    set_threads,
)
from dnn.models import create_model, model_config  # noqa: E402
from dnn.training.optim import make_optimizer  # noqa: E402

MODELS = {  # name: (create_model arguments, image shape, batch)
    "lenet5": (dict(num_classes=10, in_channels=1, image_size=32), (1, 32, 32), 128),
    "resnet18": (dict(num_classes=10, in_channels=3, image_size=32, small_input=True), (3, 32, 32), 64),
}


def train_step_fn(name: str, bf16: bool, channels_last: bool, batch: int, steps: int):
    """A closure running ``steps`` training steps, and the flops of one."""
    kwargs, shape, _ = MODELS[name]
    torch.manual_seed(0)
    model = create_model(name, model_config(name, **kwargs)).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *shape, generator=g)  # (B, C, H_img, W_img)
    y = torch.randint(0, 10, (batch,), generator=g)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), "adam", 1e-3)

    def step() -> None:
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with precision:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()

    def run() -> float:
        for _ in range(steps):
            step()
        return steps

    return run, flops


def matmul_fn(dtype: torch.dtype, n: int, repeats: int, kind: str):
    """``repeats`` products of two N×N matrices: ``torch.mm`` (MKL for fp32) or the same product as a 1×1
    convolution (oneDNN, the library torch's CPU convolutions run on; MKL takes a slower path on AMD CPUs)."""
    g = torch.Generator().manual_seed(2)
    a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
    image, kernel = a.view(1, n, n, 1), b.view(n, n, 1, 1)  # (1, C_in, H_img, 1), (C_out, C_in, 1, 1)

    def run() -> float:
        for _ in range(repeats):
            torch.mm(a, b) if kind == "mm" else F.conv2d(image, kernel)
        return repeats * 2 * n**3 / 1e9  # GFLOP

    return run


def run(args) -> list[Row]:
    threads = args.threads or DEFAULT_THREADS
    print(f"CNN training, {threads} threads; load average {load_average()}", flush=True)
    precisions = ("fp32", "bf16") if BF16 else ("fp32",)  # no bf16 units: no bf16 row (BF16_SKIPPED says why)
    products = []
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for kind, library in (("mm", "torch.mm"), ("conv", "1×1 conv")):
            fn = matmul_fn(dtype, args.matmul_n, args.matmul_repeats, kind)
            products.append((precision, Variant(f"matmul {precision} ({library})", fn, args.threads)))
    variants, flops = [], {}
    for name in args.models:
        batch = args.batch or MODELS[name][2]
        for precision in precisions:
            for layout in ("", " channels_last"):
                fn, flops[f"{name} {precision}{layout}"] = train_step_fn(
                    name, precision == "bf16", bool(layout), batch, args.steps
                )
                variants.append(Variant(f"{name} {precision}{layout}", fn, args.threads))
    round_robin([v for _, v in products] + variants, args.rounds, label="cnn", unit="steps/s (matmul: GFLOP/s)")

    peak = {p: max(v.rate for q, v in products if q == p) for p in precisions}  # the faster library's
    rows = [Row("matmul peak", v.name, v.rate, "GFLOP/s", note=f"N = {args.matmul_n}") for _, v in products]
    by_name = {v.name: v for v in variants}
    for name in args.models:
        batch = args.batch or MODELS[name][2]
        fp32 = by_name[f"{name} fp32"]
        for v in (by_name[f"{name} {p}{layout}"] for p in precisions for layout in ("", " channels_last")):
            precision = "bf16" if "bf16" in v.name else "fp32"
            achieved = flops[v.name] * v.rate / 1e9  # GFLOP/s
            note = (
                f"{batch * v.rate:.0f} images/s; {achieved:.0f} GFLOP/s = {achieved / peak[precision]:.0%} of the "
                f"{precision} matmul peak ({peak[precision]:.0f})"
            )
            target = 2.0 if v.name in (f"{name} bf16", f"{name} bf16 channels_last") else None
            if v.name == f"{name} bf16 channels_last":
                note += "; dnn's defaults on the CPU: bf16 in NHWC, fp32 in NCHW"
            rows.append(Row(f"{name} training, batch {batch}", v.name, v.rate, "steps/s", fp32.name, ratio(v, fp32),
                            target, note))  # fmt: skip
        if BF16:
            low, full = by_name[f"{name} bf16 channels_last"], by_name[f"{name} fp32 channels_last"]
            section = f"{name} training, batch {batch}, both channels_last"
            rows.append(Row(section, low.name, low.rate, "steps/s", full.name, ratio(low, full), 2.0,
                            "both in NHWC (train.channels_last=true)"))  # fmt: skip
        for precision in precisions:
            plain, last = by_name[f"{name} {precision}"], by_name[f"{name} {precision} channels_last"]
            r = ratio(last, plain)
            pays = "pays" if r[0] > 1.05 else "does not pay"
            rows.append(Row(f"{name} channels_last", last.name, last.rate, "steps/s", plain.name, r, None,
                            f"channels_last {pays} in {precision}"))  # fmt: skip
    return rows


MATRIX_KERNELS = ("convolution", "aten::mm", "aten::addmm", "aten::bmm", "aten::linear")  # conv/matmul ops, + backward


def breakdown(name: str, batch: int, threads: int | None, channels_last: bool = False, steps: int = 5) -> str:
    """What bounds bf16's gain on ``name``: the share of an fp32 step spent in convolution and matrix-product
    kernels (self CPU time, torch.profiler), how much faster those kernels run in bf16, and Amdahl's bound on
    the step's speed-up if bf16 made them free while the rest stayed as it is."""
    from torch.profiler import profile

    set_threads(threads)
    shares = {}
    for precision in ("fp32", "bf16"):
        run, _ = train_step_fn(name, precision == "bf16", channels_last, batch, steps)
        run()  # warm-up
        with profile() as prof:
            run()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        matrix = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in MATRIX_KERNELS))
        shares[precision] = (total, matrix)
    (t32, m32), (t16, m16) = shares["fp32"], shares["bf16"]
    kernels, rest = m32 / max(m16, 1e-9), (t32 - m32) / max(t16 - m16, 1e-9)
    return (
        f"{name}{' channels_last' if channels_last else ''}, batch {batch}, what bounds bf16: convolution and "
        f"matrix-product kernels are {m32 / t32:.0%} of an fp32 training step (the rest: pooling, activations, loss, "
        f"Adam, framework); in bf16 those kernels run {kernels:.2f}× as fast and the rest {rest:.2f}×; were the "
        f"kernels free, the fp32 step could be at most {t32 / (t32 - m32):.2f}× faster (profiled here: bf16 step "
        f"{t32 / t16:.2f}× fp32)"
    )


def breakdowns(args) -> list[str]:
    """:func:`breakdown` for every model of the run, in NCHW and in NHWC."""
    steps = 1 if args.quick else 5
    return [breakdown(m, args.batch or MODELS[m][2], args.threads, layout, steps)
            for m in args.models for layout in (False, True)]  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="lenet5,resnet18", help="comma-separated: lenet5, resnet18")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    p.add_argument("--batch", type=int, default=None, help="override the models' batch sizes")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--matmul-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")


def quick(args) -> None:
    """A smoke run in seconds: its numbers are meaningless."""
    args.rounds, args.steps, args.batch, args.matmul_n, args.matmul_repeats = 1, 1, 2, 128, 1
    args.models, args.threads = "lenet5", args.threads or 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--quick", action="store_true", help="smoke run: LeNet-5 only, batch 2, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        quick(args)
    args.models = args.models.split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    measure_and_print(lambda: run(args))
    if BF16:
        print("\n".join(breakdowns(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
