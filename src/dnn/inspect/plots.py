"""The lecture's pictures, each from plain data (lists, arrays, dicts) to a PNG: nothing here knows about runs.

    attention_heatmap        a_{t,s}: output token t (rows) attending to source token s (columns)
    gradient_flow_plot       ‖∂L/∂h_t‖ against the distance from the loss, one curve per layer (log scale)
    accuracy_by_length_plot  exact match per source length (Bahdanau et al. 2015, Fig. 2)
    confusion_matrix_plot    counts of (true class, predicted class), coloured by the share of each true class
    filters_plot             the first convolution's kernels W[k] (K, C, k_h, k_w) as small images
    feature_maps_plot        the activations of each stage for one input image

Every function returns the path it wrote, draws an empty or one-token input without failing (a panel that says
what is missing), labels its axes with the real tokens or class names, and keeps long inputs legible: tick
labels thinned to at most :data:`~dnn.inspect.figures.MAX_LABELS`, the figure growing with the data up to
:data:`~dnn.inspect.figures.MAX_INCHES`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps

from dnn.errors import ConfigError
from dnn.inspect.figures import (
    fit_title,
    label_inches,
    mosaic,
    new_figure,
    placeholder,
    save_png,
    scaled,
    set_token_ticks,
    token_label,
    unit_range,
)

__all__ = [
    "accuracy_by_length_plot",
    "attention_heatmap",
    "confusion_matrix_plot",
    "feature_maps_plot",
    "filters_plot",
    "gradient_flow_plot",
]

PathLike = str | os.PathLike
TILE = 32  # pixels per feature-map tile


def _array(name: str, value, dims: int) -> np.ndarray:
    # probe: a torch tensor has detach, any other array-like numpy reads has not: duck typing is the point
    tensor = hasattr(value, "detach")
    array = np.asarray(value.detach().cpu() if tensor else value, dtype=np.float64)
    if array.ndim != dims:
        raise ConfigError(f"{name} must be a {dims}-D array, got shape {array.shape}")
    return array


def attention_heatmap(source_tokens: Sequence[str], output_tokens: Sequence[str], weights, path: PathLike,
                      title: str | None = None) -> Path:  # fmt: skip
    """The attention heatmap: one cell per weight a_{t,s}, output tokens down, source tokens across (on top).

    ``weights`` is ``(T, S)`` (T = len(output_tokens) rows, each a distribution over the S source tokens), as
    :meth:`~dnn.tasks.seq2seq.Seq2SeqPredictor.translate` returns in ``attention``.
    """
    S, T = len(source_tokens), len(output_tokens)
    w = np.zeros((0, 0)) if T == 0 or S == 0 else _array("weights", weights, 2)
    if T and S and w.shape != (T, S):
        raise ConfigError(
            f"weights must have shape (len(output_tokens), len(source_tokens)) = ({T}, {S}), got {w.shape}"
        )
    left, top = label_inches(list(output_tokens)) + 0.35, label_inches(list(source_tokens)) + 0.75
    cell = 0.26 if max(S, T) <= 40 else 0.16
    fig, ax = new_figure(left + 1.3 + scaled(S, cell, 0.0, 1.5), top + 0.3 + scaled(T, cell, 0.0, 1.0),
                         left=left, right=1.3, top=top, bottom=0.3)  # fmt: skip
    if w.size == 0:
        placeholder(ax, "nothing to show: the " + ("source" if S == 0 else "output") + " is empty")
    else:
        image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        set_token_ticks(ax, "x", list(source_tokens), rotate=True)
        set_token_ticks(ax, "y", list(output_tokens))
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xlabel("source tokens")
        ax.set_ylabel("output tokens")
        bar = fig.add_axes((1 - 1.0 / fig.get_figwidth(), 0.3 / fig.get_figheight(), 0.15 / fig.get_figwidth(),
                            1 - (top + 0.3) / fig.get_figheight()))  # fmt: skip
        fig.colorbar(image, cax=bar, label="attention weight")
    if title:
        fig.suptitle(fit_title(title, fig.get_figwidth()), fontsize=10, y=1 - 0.08 / fig.get_figheight(), va="top")
    return save_png(fig, path)


def gradient_flow_plot(norms: Mapping[str, Sequence[float]], path: PathLike, title: str | None = None) -> Path:
    """‖∂L/∂h_t‖ per curve (``norms[label][k]`` at distance k from the loss) on a log scale.

    Curves whose label ends in "cell state c" (an LSTM's highway) are dashed. Zeros cannot be drawn on a log
    axis and are left out.
    """
    fig, ax = new_figure(7.0, 4.0, left=1.0)
    curves = {label: np.asarray(list(values), dtype=np.float64) for label, values in norms.items() if len(values)}
    if not curves:
        placeholder(ax, "no gradient to show: the sequence is empty")
    else:
        for label, curve in curves.items():
            shown = np.where(curve > 0, curve, np.nan)
            style = "--" if label.endswith("cell state c") else "-"
            ax.plot(np.arange(len(curve)), shown, style, marker="o" if len(curve) < 3 else None, label=label)
        if any((curve > 0).any() for curve in curves.values()):
            ax.set_yscale("log")
        ax.set_xlabel("distance from the loss (steps back from the sequence's end)")
        ax.set_ylabel("‖∂L/∂h_t‖")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    ax.set_title(fit_title(title or "Gradient flow through time", fig.get_figwidth() - 1.1), fontsize=10)
    return save_png(fig, path)


def accuracy_by_length_plot(accuracy: Mapping[int, float], path: PathLike, counts: Mapping[int, int] | None = None,
                            title: str | None = None, ylabel: str = "exact match") -> Path:  # fmt: skip
    """Accuracy against source length (tokens), with the number of test sentences of each length as bars."""
    fig, ax = new_figure(scaled(len(accuracy), 0.15, 5.0, 6.0, 12.0), 3.8, right=0.9 if counts else 0.3)
    if not accuracy:
        placeholder(ax, "no test sentences to measure")
    else:
        lengths = sorted(accuracy)
        if counts:
            bars = ax.twinx()
            bars.bar(lengths, [counts.get(n, 0) for n in lengths], color="0.85", width=0.8, zorder=0)
            bars.set_ylabel("sentences", color="0.45")
            ax.set_zorder(bars.get_zorder() + 1)
            ax.patch.set_visible(False)
        ax.plot(lengths, [accuracy[n] for n in lengths], "o-", color="C0")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("source length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    ax.set_title(fit_title(title or "Accuracy by source length", fig.get_figwidth() - 1.1), fontsize=10)
    return save_png(fig, path)


def confusion_matrix_plot(matrix, classes: Sequence[str], path: PathLike, title: str | None = None) -> Path:
    """Rows: the true class, columns: the prediction; colour = the share of the row, numbers = counts (K ≤ 20)."""
    K = len(classes)
    m = np.zeros((0, 0)) if K == 0 else _array("matrix", matrix, 2)
    if K and m.shape != (K, K):
        raise ConfigError(f"matrix must have shape (K, K) = ({K}, {K}) for {K} classes, got {m.shape}")
    margin = label_inches(list(classes)) + 0.35
    side = scaled(K, 0.4, 0.5, 2.5, 12.0)
    fig, ax = new_figure(margin + side + 1.4, margin + side + 0.6, left=margin, bottom=margin, right=1.4, top=0.6)
    title = title or "Confusion matrix"
    if K == 0:
        placeholder(ax, "no classes to show")
    else:
        totals = m.sum(axis=1, keepdims=True)
        share = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
        image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        if K <= 20:
            for i, j in zip(*np.nonzero(m)):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8, color=color)
        set_token_ticks(ax, "x", list(classes), rotate=max(len(token_label(c)) for c in classes) > 3)
        set_token_ticks(ax, "y", list(classes))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        bar = fig.add_axes((1 - 1.1 / fig.get_figwidth(), margin / fig.get_figheight(), 0.15 / fig.get_figwidth(),
                            side / fig.get_figheight()))  # fmt: skip
        fig.colorbar(image, cax=bar, label="share of the true class")
        correct = np.trace(m) / m.sum() if m.sum() else float("nan")
        title += f"; accuracy {correct:.3f} on {int(m.sum())} examples"
    ax.set_title(fit_title(title, fig.get_figwidth() - 1.1, lines=3), fontsize=10)
    return save_png(fig, path)


def _picture(array: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` → RGB ``(H, W, 3)`` for C = 3, else the mean over the channels ``(H, W)``; scaled to [0, 1]."""
    return unit_range(array.transpose(1, 2, 0) if array.shape[0] == 3 else array.mean(axis=0))


def filters_plot(weights, path: PathLike, title: str | None = None, max_filters: int = 64) -> Path:
    """The kernels ``(K, C, k_h, k_w)`` of a convolution as a grid of small images (RGB when C = 3, else the mean
    over the input channels in grey, each kernel scaled to its own range). At most ``max_filters`` are shown,
    numbered row by row from the top left."""
    w = _array("weights", weights, 4)
    K = min(len(w), max_filters)
    cols = max(1, math.ceil(math.sqrt(K)))
    rows = max(1, math.ceil(K / cols))
    fig, ax = new_figure(scaled(cols, 0.55, 0.4, 3.6, 10.0), scaled(rows, 0.55, 0.9, 2.2, 10.0), left=0.2, right=0.2,
                         bottom=0.2, top=0.7)  # fmt: skip
    ax.set_axis_off()
    if K == 0:
        placeholder(ax, "no kernels")
    else:
        rgb = w.shape[1] == 3
        grid = mosaic([_picture(k) for k in w[:K]], cols, fill=1.0 if rgb else np.nan)
        ax.imshow(grid, cmap=None if rgb else "gray", interpolation="nearest")
    shape = "×".join(map(str, w.shape[1:]))
    more = f", the first {K}" if len(w) > K else ""
    fig.suptitle(
        fit_title(title or f"First convolution: {len(w)} kernels of {shape}{more}", fig.get_figwidth()), fontsize=10
    )
    return save_png(fig, path)


def _tile(picture: np.ndarray, size: int, cmap: str) -> np.ndarray:
    """A ``(h, w)`` map in [0, 1] (coloured with ``cmap``) or an RGB ``(h, w, 3)`` picture as an RGB tile of
    ``size × size`` pixels: enlarged by a whole factor (or sampled down), centred on white."""
    rgb = picture if picture.ndim == 3 else colormaps[cmap](picture)[..., :3]
    h, w = rgb.shape[:2]
    k = max(1, size // max(h, w))
    rgb = rgb.repeat(k, axis=0).repeat(k, axis=1)
    if max(rgb.shape[:2]) > size:  # a large map: every n-th pixel
        rows = np.linspace(0, rgb.shape[0] - 1, min(size, rgb.shape[0])).astype(int)
        cols = np.linspace(0, rgb.shape[1] - 1, min(size, rgb.shape[1])).astype(int)
        rgb = rgb[rows][:, cols]
    tile = np.ones((size, size, 3))
    top, left = (size - rgb.shape[0]) // 2, (size - rgb.shape[1]) // 2
    tile[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
    return tile


def feature_maps_plot(maps: Mapping[str, object], path: PathLike, image=None, channels: int = 8,
                      title: str | None = None) -> Path:  # fmt: skip
    """One row per stage (``maps[stage]`` is ``(C, H, W)``): its ``channels`` most active maps (largest mean
    activation, each scaled to its own range), under the input ``image (C, H, W)`` when given.

    All tiles are drawn at one size (enlarged by whole factors), so a late 2×2 stage is as visible as the input.
    """
    rows: list[tuple[str, list[np.ndarray]]] = []
    if image is not None:
        picture = _picture(_array("image", image, 3))
        rows.append(("input", [_tile(picture, TILE, "gray")]))
    for name, m in maps.items():
        m = _array(f"maps[{name!r}]", m, 3)
        order = np.argsort(-m.reshape(len(m), -1).mean(axis=1))[:channels]
        label = f"{token_label(name)}\n{m.shape[0]}×{m.shape[1]}×{m.shape[2]}"
        rows.append((label, [_tile(unit_range(m[c]), TILE, "viridis") for c in order]))
    cols = max((len(tiles) for _, tiles in rows), default=1)
    fig, ax = new_figure(1.7 + 0.85 * cols, 0.8 + 0.85 * max(1, len(rows)), left=1.5, right=0.2, bottom=0.1, top=0.7)
    if not rows:
        placeholder(ax, "no feature maps")
    else:
        blank = np.ones((TILE, TILE, 3))
        grid = mosaic([t for _, tiles in rows for t in tiles + [blank] * (cols - len(tiles))], cols, pad=4, fill=1.0)
        ax.imshow(grid, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([r * (TILE + 4) + TILE / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=9)
        ax.tick_params(left=False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(fit_title(title or "Feature maps per stage (most active channels)", fig.get_figwidth()), fontsize=10)
    return save_png(fig, path)
