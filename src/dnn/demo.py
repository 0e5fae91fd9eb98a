"""``dnn demo``: a short tour of what dnn has, end to end, with the lecture's claims measured on the spot.

1. Convolution arithmetic: W' = ⌊(W − K + 2P)/S⌋ + 1 through LeNet-5's layers, checked against real layers.
2. Vanishing gradients: ‖∂L/∂h_t‖ 50 steps back for a tanh RNN, an LSTM (torch's init and forget bias 1), the
   LSTM's cell state and a GRU — drawn to ``gradient_flow.png``.
3. Attention: dot, general and concat scores over one sentence, with padding that gets weight exactly 0.
4. Two real runs through ``dnn train``: LeNet-5 on the digits and an attention seq2seq on date normalisation,
   then a table of their results and where the runs are.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dnn.data.synthetic import adding_problem
from dnn.errors import ConfigError
from dnn.inspect.gradient_flow import gradient_norms_through_time
from dnn.layers import Attention, ConvBNAct, GRUCell, LSTMCell, RNNCell
from dnn.layers.conv import conv_output_size, pool_output_size
from dnn.rundir import REPORT, as_run


def _say(text: str = "") -> None:
    print(text, flush=True)


def convolution_arithmetic() -> None:
    _say("1. Convolution arithmetic — LeNet-5 on a 32×32 image, W' = ⌊(W − K + 2P)/S⌋ + 1")
    x = torch.zeros(1, 1, 32, 32)
    layers = [
        ("conv 5×5, 6 filters", ConvBNAct(1, 6, 5, padding=0, bn=False), lambda w: conv_output_size(w, 5)),
        ("max-pool 2×2, stride 2", nn.MaxPool2d(2), lambda w: pool_output_size(w, 2)),
        ("conv 5×5, 16 filters", ConvBNAct(6, 16, 5, padding=0, bn=False), lambda w: conv_output_size(w, 5)),
        ("max-pool 2×2, stride 2", nn.MaxPool2d(2), lambda w: pool_output_size(w, 2)),
    ]
    w = 32
    for name, layer, formula in layers:
        w = formula(w)
        x = layer(x)
        ok = "✓" if tuple(x.shape[-2:]) == (w, w) else "✗"
        _say(f"   {name:<24} formula {w:>2}×{w:<2}  layer output {tuple(x.shape[1:])}  {ok}")
    _say(f"   → {x.numel()} features for the fully connected layers (16·5·5 = 400)")
    _say()


def vanishing_gradients(out_dir: Path, seeds: int = 3) -> None:
    T, H = 100, 64
    _say(f"2. Vanishing gradients — ‖∂L/∂h_t‖ 50 steps back ÷ at the last step (T = {T}, H = {H}, median of {seeds})")
    variants = {
        "tanh RNN": lambda: RNNCell(2, H),
        "LSTM, torch's init (forget bias ≈ 0)": lambda: LSTMCell(2, H, forget_bias=None),
        "LSTM, forget bias 1 (dnn's default)": lambda: LSTMCell(2, H, forget_bias=1.0),
        "GRU": lambda: GRUCell(2, H),
    }
    curves = {}
    for name, make in variants.items():
        runs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            x, _ = adding_problem(16, T, torch.Generator().manual_seed(seed))
            runs.append(gradient_norms_through_time(make(), x))
        for key in runs[0]:
            label = name if key == "h" else "LSTM (forget bias 1) cell state c"  # the plot dashes the cell state
            if key == "c" and "forget bias 1" not in name:
                continue
            stacked = torch.stack([r[key] / r[key][-1] for r in runs])  # (seeds, T), 1 at the last step
            curves[label] = stacked.median(dim=0).values.flip(0)  # index = distance from the loss
    for label, curve in curves.items():
        _say(f"   {label:<40} {curve[50].item():9.1e}")
    _say("   (published with torch: tanh ~5e-13, LSTM torch init ~2e-11, LSTM forget bias 1 ~3e-5)")
    from dnn.inspect import gradient_flow_plot

    title = f"Gradient flow through time at initialisation (T = {T}, H = {H}), ÷ the last step's"
    curves = {label: curve.tolist() for label, curve in curves.items()}
    _say(f"   drawn: {gradient_flow_plot(curves, out_dir / 'gradient_flow.png', title)}")
    _say()


def attention_weights() -> None:
    _say("3. Attention — one query over a padded sentence; padding gets weight exactly 0")
    words = ["the", "cat", "sat", "down", "<pad>", "<pad>"]
    torch.manual_seed(0)
    keys = 2.0 * F.normalize(torch.randn(1, len(words), 32), dim=-1)  # (B, S, 32), every key of norm 2
    query = keys[:, 1] + 0.2 * torch.randn(1, 32)  # a query that resembles "cat"
    mask = torch.tensor([[True] * 4 + [False] * 2])
    for score in ("dot", "general", "concat"):
        _, weights = Attention(32, 32, score=score)(query, keys, mask=mask)  # (1, S)
        cells = "  ".join(f"{w}:{a:.2f}" for w, a in zip(words, weights[0].tolist()))
        _say(f"   {score:<8} {cells}")
    _say("   (general and concat are untrained here: their weights are learned in the seq2seq models)")
    _say()


# The runs of the tour: (recipe, overrides, what its headline metric is called, the key in results["test"])
RUNS = [
    ("digits-lenet5", [], "test accuracy", "accuracy"),
    ("dates-attention", [], "exact match", "exact_match"),
]


def training_runs(out: Path, max_steps: int) -> list[dict]:
    from dnn.rundir import remove_run
    from dnn.train import train

    rows = []
    for number, (recipe, overrides, label, key) in enumerate(RUNS, start=4):
        extra = [f"train.max_steps={max_steps}"] if max_steps else []
        _say(f"{number}. dnn train {recipe} {' '.join(overrides + extra)}".rstrip())
        run_dir = out / recipe
        remove_run(run_dir)  # a fresh run each time the demo is run: only what dnn wrote is deleted
        start = time.perf_counter()
        results = train(recipe, overrides + extra, run_dir=run_dir, progress=False)
        test = results["test"]
        rows.append(
            {"recipe": recipe, "metric": label, "value": test.get(key, float("nan")), "bleu": test.get("bleu"),
             "seconds": time.perf_counter() - start, "run": str(run_dir)}
        )  # fmt: skip
        _say(f"   {label} {rows[-1]['value']:.3f} in {rows[-1]['seconds']:.0f} s → {run_dir}")
        _say()
    return rows


def results_table(rows: list[dict]) -> None:
    _say("results (test split):")
    _say(f"   {'run':<18} {'metric':<15} {'value':>7} {'BLEU':>6} {'time':>7}  run directory")
    for r in rows:
        bleu = "" if r["bleu"] is None else f"{r['bleu']:.1f}"
        _say(f"   {r['recipe']:<18} {r['metric']:<15} {r['value']:>7.3f} {bleu:>6} {r['seconds']:>6.0f}s  {r['run']}")
    _say()
    _say("reports (open in a browser: curves, attention heatmaps, filters and feature maps, confusion matrices):")
    for r in rows:
        run = as_run(r["run"])
        _say(f"   {run.file(REPORT)}" + ("" if run.has(REPORT) else "  (not drawn: see the run's log.txt)"))
    _say()
    _say("next: dnn translate RUN 'March 3, 2021' --attention · dnn inspect RUN · dnn serve RUN… · dnn experiment list")


def run_demo(out_dir: str | os.PathLike = "runs/demo", max_steps: int = 0) -> None:
    """The tour; ``max_steps`` > 0 shortens each training run (a quick check that everything works)."""
    if max_steps < 0:
        raise ConfigError(f"--max-steps must be 0 (the full tour) or more, got {max_steps}")
    torch.set_flush_denormal(True)
    out = Path(out_dir)
    start = time.perf_counter()
    _say(f"dnn demo — the lecture's CNN and RNN building blocks, measured (torch {torch.__version__})")
    _say()
    convolution_arithmetic()
    vanishing_gradients(out)
    attention_weights()
    rows = training_runs(out, max_steps)
    results_table(rows)
    _say(f"done in {time.perf_counter() - start:.0f} s; runs and pictures in {out}/")


if __name__ == "__main__":
    run_demo(*sys.argv[1:2])
