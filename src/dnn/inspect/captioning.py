"""The picture of a captioner's attention (Show, Attend and Tell, Fig. 2 and 3): the image, then one panel per word
with that word's weights over the feature-map positions laid over the image. A plain function over arrays; the
captioning task's ``figures`` feeds it (:class:`dnn.tasks.base.AttentionOverImage`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dnn.errors import ConfigError
from dnn.inspect.figures import fit_title, new_figure, placeholder, save_png, token_label

__all__ = ["attention_over_image"]

PANEL_INCHES = 2.2  # the width of one panel


def attention_over_image(image, words: Sequence[str], attention, path: str | os.PathLike, title: str = "") -> Path:
    """Draw ``image (H_img, W_img)`` and, for word t of ``words``, ``attention[t] (h, w)`` upsampled over it.

    Each word's weights sum to 1 over the h·w positions; they are shown on their own scale (0 to the word's
    largest weight), bilinearly smoothed over the image as in the paper's figures, with the peak marked.
    """
    picture = np.asarray(image, dtype=np.float64)
    weights = np.asarray(attention, dtype=np.float64).reshape(len(words), *np.shape(attention)[-2:])
    if picture.ndim != 2:
        raise ConfigError(f"image must be a 2-D array (H_img, W_img), got shape {picture.shape}")
    if weights.ndim != 3:
        raise ConfigError(f"attention must be (words, h, w), got shape {np.shape(attention)}")
    H, W = picture.shape
    n = len(words) + 1
    aspect = H / W
    top = 0.6 if title else 0.3  # the heading, and each panel's word above it
    fig, axes = new_figure(PANEL_INCHES * n, 0.9 * PANEL_INCHES * aspect + top + 0.15, 1, n, left=0.15,
                           right=0.15, bottom=0.15, top=top, wspace=0.08)  # fmt: skip
    axes = list(axes[0]) if n > 1 else [axes]  # new_figure gives a row of axes, or one axes for one panel
    extent = (0, W, H, 0)
    axes[0].imshow(picture, cmap="gray", extent=extent, vmin=0.0, vmax=max(1.0, float(picture.max())))
    axes[0].set_title("image", fontsize=9)
    if not words:
        placeholder(axes[0], "(empty caption)")
    for ax, word, alpha in zip(axes[1:], words, weights):
        ax.imshow(picture, cmap="gray", extent=extent)
        ax.imshow(alpha, cmap="inferno", alpha=0.6, extent=extent, interpolation="bilinear", vmin=0.0,
                  vmax=max(float(alpha.max()), 1e-12))  # fmt: skip
        h, w = alpha.shape
        row, col = np.unravel_index(int(np.argmax(alpha)), alpha.shape)
        ax.plot((col + 0.5) * W / w, (row + 0.5) * H / h, marker="+", color="cyan", markersize=8)
        ax.set_title(f"{token_label(word)}  (max {alpha.max():.2f})", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(fit_title(title, PANEL_INCHES * n), fontsize=10)
    return save_png(fig, path)
