"""Pictures of a speech recogniser: the spectrogram with the recognised characters under it, and error rates per
voice. Plain functions over arrays and numbers; the speech task's ``report_figures`` feeds them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["plot_alignment", "plot_voice_errors"]


def plot_alignment(features: Tensor, chars: Sequence[str], frames: Sequence[int], path: str | Path,
                   title: str = "", hop_ms: float = 10.0) -> Path:  # fmt: skip
    """``features (T, F)`` as a spectrogram; under it each recognised character at the frame where the greedy
    CTC path emits it (a thin line marks the frame on the spectrogram)."""
    T = features.shape[0]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(6.0, T / 40), 3.6), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    seconds = T * hop_ms / 1000
    top.imshow(
        features.T.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, features.shape[1])
    )
    top.set_ylabel("mel band")
    top.set_title(title, fontsize=9)
    for frame in frames:
        top.axvline(frame * hop_ms / 1000, color="white", linewidth=0.5, alpha=0.6)
    for char, frame in zip(chars, frames):
        x = frame * hop_ms / 1000
        if char == " ":  # a space: a small grey mark, so the characters stand out
            bottom.text(x, 0.5, "␣", ha="center", va="center", fontsize=7, color="#999999", family="monospace")
        else:
            bottom.text(x, 0.5, char, ha="center", va="center", fontsize=11, family="monospace")
    bottom.set_yticks([0.5], ["output"])
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_voice_errors(per_voice: dict[str, dict[str, float]], path: str | Path, metric: str = "cer",
                      title: str = "") -> Path:  # fmt: skip
    """A bar per voice: ``per_voice[name][metric]`` (as %), unseen voices (``"unseen": True``) hatched."""
    names = list(per_voice)
    values = [100 * per_voice[n][metric] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3.2))
    bars = ax.bar(names, values, color=["#d95f02" if per_voice[n].get("unseen") else "#1b9e77" for n in names])
    for bar, name in zip(bars, names):
        if per_voice[name].get("unseen"):
            bar.set_hatch("//")
        ax.annotate(f"n={int(per_voice[name]['n'])}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=6)  # fmt: skip
    ax.set_ylabel(f"{metric.upper()} (%)")
    ax.set_title(title or f"{metric.upper()} per voice (hatched: unseen in training)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
