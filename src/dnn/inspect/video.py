"""The picture of a video classifier's answer: the clip's frames in a row, each with the class the model believes
after seeing the clip up to that frame (a CNN per frame, then an LSTM over time: many-to-one, read step by step).
A plain function over arrays; :class:`dnn.tasks.base.FramesWithBelief` feeds it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dnn.errors import ConfigError
from dnn.inspect.figures import fit_title, new_figure, save_png

__all__ = ["frames_with_belief"]

PANEL_INCHES = 1.6  # one frame
MAX_FRAMES = 32  # frames drawn; a longer clip shows every k-th


def frames_with_belief(frames, labels: Sequence[str], probabilities: Sequence[float], path: str | os.PathLike,
                       title: str = "") -> Path:  # fmt: skip
    """Draw ``frames (T, H, W)`` in [0, 1] in a row; above frame t, ``labels[t]`` and ``probabilities[t]``: the
    class believed after frames 1…t. The frames where the belief changes are titled in red."""
    clip = np.asarray(frames, dtype=np.float64)
    if clip.ndim != 3:
        raise ConfigError(f"frames must be (T, H, W), got shape {clip.shape}")
    if not len(labels) == len(probabilities) == len(clip):
        raise ConfigError(f"{len(clip)} frames need as many labels and probabilities, got {len(labels)} and "
                          f"{len(probabilities)}")  # fmt: skip
    T = len(clip)
    shown = list(range(0, T, max(1, -(-T // MAX_FRAMES))))
    top = 0.75 if title else 0.45
    fig, axes = new_figure(PANEL_INCHES * len(shown), PANEL_INCHES + top + 0.1, 1, len(shown), left=0.1,
                           right=0.1, bottom=0.1, top=top, wspace=0.06)  # fmt: skip
    axes = list(axes[0]) if len(shown) > 1 else [axes]
    for ax, t in zip(axes, shown):
        ax.imshow(clip[t], cmap="gray", vmin=0.0, vmax=max(1.0, float(clip[t].max())))
        changed = t > 0 and labels[t] != labels[t - 1]
        ax.set_title(f"{t + 1}: {labels[t]} {probabilities[t]:.2f}", fontsize=8, color="#b22" if changed else "#222")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(fit_title(title, PANEL_INCHES * len(shown)), fontsize=10)
    return save_png(fig, path)
