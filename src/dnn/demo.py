"""``dnn demo``: a short tour of what dnn has, end to end, with the lecture's claims measured on the spot.

1. Convolution arithmetic: W' = ⌊(W − K + 2P)/S⌋ + 1 through LeNet-5's layers, checked against real layers.
2. Vanishing gradients: ‖∂L/∂h_t‖ 50 steps back for a tanh RNN, an LSTM (torch's init and forget bias 1), the
   LSTM's cell state and a GRU — drawn to ``gradient_flow.png``.
3. Learning to remember: the adding problem, where a tanh RNN stays at the baseline and gated units learn.
4. Attention: dot, general and concat scores over one sentence, with padding that gets weight exactly 0.
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
from dnn.layers import GRU, LSTM, RNN, Attention, ConvBNAct, GRUCell, LSTMCell, RNNCell
from dnn.layers.conv import conv_output_size, pool_output_size


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
            label = name if key == "h" else f"{name.split(',')[0]} cell state c, forget bias 1"
            if key == "c" and "forget bias 1" not in name:
                continue
            stacked = torch.stack([r[key] / r[key][-1] for r in runs])  # (seeds, T), 1 at the last step
            curves[label] = stacked.median(dim=0).values.flip(0)  # index = distance from the loss
    for label, curve in curves.items():
        _say(f"   {label:<40} {curve[50].item():9.1e}")
    _say("   (published with torch: tanh ~5e-13, LSTM torch init ~2e-11, LSTM forget bias 1 ~3e-5)")
    path = _plot_gradient_flow(curves, out_dir / "gradient_flow.png")
    if path:
        _say(f"   drawn: {path}")
    _say()


def _plot_gradient_flow(curves: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the picture is a bonus; the numbers above are the result
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for label, curve in curves.items():
        ax.semilogy(range(len(curve)), curve.clamp_min(1e-30).numpy(), label=label)
    ax.set_xlabel("distance from the loss (steps)")
    ax.set_ylabel("‖∂L/∂h_t‖ ÷ ‖∂L/∂h_T‖")
    ax.set_title("Gradient flow through time at initialisation (T = 100, H = 64)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


class _Regressor(nn.Module):
    def __init__(self, rnn: nn.Module, hidden: int):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (T, B, H)
        return self.head(out[-1]).squeeze(-1)  # (B,)


def adding_problem_training(steps: int) -> dict[str, float]:
    """Train a tanh RNN, an LSTM and a GRU on the adding problem; return each one's final test MSE."""
    T, H = 50, 32
    _say(f"3. Learning to remember — the adding problem, T = {T}, H = {H}, Adam 1e-3, batch 64, clip 1, {steps} steps")
    _say("   always predicting 1 scores MSE 1/6 ≈ 0.167; beating it means carrying a value across up to 50 steps")
    test_x, test_y = adding_problem(1000, T, torch.Generator().manual_seed(1234))
    final = {}
    for name, rnn in [("tanh RNN", RNN(2, H)), ("LSTM", LSTM(2, H)), ("GRU", GRU(2, H))]:
        torch.manual_seed(0)
        model = _Regressor(rnn, H)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        data = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        marks = []
        for step in range(1, steps + 1):
            x, y = adding_problem(64, T, data)
            loss = F.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step % (steps // 4) == 0:
                with torch.no_grad():
                    marks.append(F.mse_loss(model(test_x), test_y).item())
        progress = " → ".join(f"{m:.3f}" for m in marks)
        _say(f"   {name:<9} test MSE {progress}   ({time.perf_counter() - start:.0f} s)")
        final[name] = marks[-1]
    _say()
    return final


def attention_weights() -> None:
    _say("4. Attention — one query over a padded sentence; padding gets weight exactly 0")
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


def run_demo(out_dir: str | os.PathLike = "runs/demo", steps: int = 1500) -> None:
    if steps < 4:
        raise ConfigError(f"--steps must be at least 4 (the demo reports the test error 4 times), got {steps}")
    torch.set_flush_denormal(True)
    out = Path(out_dir)
    start = time.perf_counter()
    _say(f"dnn demo — the lecture's CNN and RNN building blocks, measured (torch {torch.__version__})")
    _say()
    convolution_arithmetic()
    vanishing_gradients(out)
    adding_problem_training(steps)
    attention_weights()
    _say(f"done in {time.perf_counter() - start:.0f} s; pictures in {out}/")


if __name__ == "__main__":
    run_demo(*sys.argv[1:2])
