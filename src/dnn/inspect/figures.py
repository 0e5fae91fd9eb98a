"""What every picture shares: a figure that needs no display, a size that grows with the data up to a cap,
thinned tick labels, tokens shown as they are, and a PNG written atomically.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: a PNG is rendered by
matplotlib's Agg canvas whatever backend the user's session has chosen, nothing global is touched, and the web
server may draw from several threads at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dnn.io import atomic_write

__all__ = [
    "DPI",
    "MAX_LABELS",
    "fit_title",
    "label_inches",
    "mosaic",
    "new_figure",
    "placeholder",
    "save_png",
    "scaled",
    "set_token_ticks",
    "thinned",
    "token_label",
    "unit_range",
]

DPI = 100
MAX_LABELS = 40  # tick labels on one axis before they are thinned to every k-th
MAX_INCHES = 16.0  # no side of a figure grows past this, however long the sequence

# whitespace and the characters matplotlib would read as markup, shown as visible symbols
_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "$": r"\$"}


def scaled(n: int, per_item: float, base: float, low: float, high: float = MAX_INCHES) -> float:
    """A side in inches for ``n`` items: ``base + per_item·n``, kept within [low, high]."""
    return min(high, max(low, base + per_item * n))


def thinned(n: int, max_labels: int = MAX_LABELS) -> list[int]:
    """Indices of the tick labels to show among ``n``: all up to ``max_labels``, then every k-th from 0."""
    step = max(1, math.ceil(n / max_labels))
    return list(range(0, n, step))


def token_label(token: object) -> str:
    """A token as a tick label: whitespace made visible, ``$`` escaped (no mathtext), empty → ∅, long → cut."""
    text = "".join(_VISIBLE.get(ch, ch) for ch in str(token))
    if not text:
        return "∅"
    return text if len(text) <= 24 else text[:23] + "…"


def fit_title(text: str, width: float, size: int = 10, lines: int = 2) -> str:
    """``text`` wrapped to a figure ``width`` inches wide, at most ``lines`` lines, the rest cut with "…"."""
    import textwrap

    per_line = max(12, int(width * 72 / (0.6 * size)))
    wrapped = textwrap.wrap(" ".join(text.split()), per_line) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: per_line - 1] + "…"
    return "\n".join(wrapped).replace("$", r"\$")


def _font_size(n: int) -> int:
    return 9 if n <= 20 else 7


def label_inches(tokens: Sequence[object]) -> float:
    """Room in inches that the longest of the (shown) tick labels of ``tokens`` needs beside its axis."""
    shown = thinned(len(tokens))
    longest = max((len(token_label(tokens[i])) for i in shown), default=1)
    return 0.25 + longest * 0.62 * _font_size(len(shown)) / 72


def set_token_ticks(ax: Axes, axis: str, tokens: Sequence[object], rotate: bool = False) -> None:
    """Label the x or y axis of an image of ``len(tokens)`` cells with the tokens, thinned when there are many."""
    shown = thinned(len(tokens))
    size = _font_size(len(shown))
    labels = [token_label(tokens[i]) for i in shown]
    if axis == "x":
        ax.set_xticks(shown, labels, fontsize=size, rotation=90 if rotate else 0)
    else:
        ax.set_yticks(shown, labels, fontsize=size)


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, *, left: float = 0.8,
               right: float = 0.3, bottom: float = 0.6, top: float = 0.5, wspace: float = 0.35,
               hspace: float = 0.55) -> tuple[Figure, object]:  # fmt: skip
    """A figure of ``width × height`` inches (grown to fit its margins) and its axes (``Figure.subplots``).

    Margins are in inches and fixed: no layout engine runs, which would measure every label again at each
    draw (on a busy CPU that doubled the time of a report).
    """
    width, height = max(width, left + right + 1.0), max(height, bottom + top + 1.0)
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace, hspace=hspace)  # fmt: skip
    return fig, fig.subplots(nrows, ncols, squeeze=not (nrows > 1 or ncols > 1))


def mosaic(tiles: Sequence[np.ndarray], cols: int, pad: int = 1, fill: float = np.nan) -> np.ndarray:
    """Tiles of one size — ``(h, w)`` grey or ``(h, w, 3)`` RGB, each already scaled to [0, 1] — as one image of
    ``cols`` columns with ``pad`` pixels of ``fill`` between them (NaN: drawn as the background; use 1.0, white,
    for RGB): one picture instead of one axes per tile, which is what keeps 64 kernels cheap to draw."""
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad) + tiles[0].shape[2:]
    out = np.full(shape, fill, dtype=np.float64)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    return out


def unit_range(array: np.ndarray) -> np.ndarray:
    """``array`` scaled to [0, 1] by its own minimum and maximum (all zeros when it is constant)."""
    low, high = float(np.min(array)), float(np.max(array))
    return (array - low) / (high - low) if high > low else np.zeros_like(array, dtype=np.float64)


def placeholder(ax: Axes, text: str) -> None:
    """An empty panel that says why it is empty (an empty input, a run without logged steps)."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, color="0.35", transform=ax.transAxes)


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (a reader never sees half a picture)."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
