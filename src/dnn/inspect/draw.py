"""A task's or a predictor's figure data (:class:`dnn.tasks.base.Figure`) drawn to a PNG, whichever kind it is.

    figure = predictor.explain("three.wav")        # SpectrogramAlignment: data, no pixels
    draw_figure(figure, "out/alignment.png")      # the picture

``dnn inspect`` (the report) and ``dnn serve`` (``"explain": true``) both draw through :func:`draw_figure`, so a
figure looks the same on the page and in the report. One figure is drawn at a time: some drawings go through
``matplotlib.pyplot``, whose figure registry is shared by every thread (the server draws in its worker threads).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from dnn.errors import ConfigError
from dnn.inspect.captioning import attention_over_image
from dnn.inspect.plots import attention_heatmap, feature_maps_plot
from dnn.inspect.speech import plot_alignment, plot_voice_errors
from dnn.inspect.video import frames_with_belief
from dnn.tasks.base import (
    AttentionHeatmap,
    AttentionOverImage,
    ErrorsByGroup,
    Figure,
    FramesWithBelief,
    SpectrogramAlignment,
    StageFeatureMaps,
)

__all__ = ["draw_figure"]

_DRAWING = threading.Lock()  # pyplot is not thread-safe (see the module docstring)


def draw_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Draw ``figure`` into the PNG file ``path`` and return its path; a one-line ConfigError for a kind of figure
    with no drawing."""
    with _DRAWING:
        return _draw(figure, path)


def _draw(figure: Figure, path: str | os.PathLike) -> Path:
    if isinstance(figure, SpectrogramAlignment):
        return plot_alignment(figure.features, figure.chars, figure.frames, path, figure.heading, figure.hop_ms)
    if isinstance(figure, ErrorsByGroup):
        return plot_voice_errors(figure.groups, path, title=figure.heading)
    if isinstance(figure, AttentionOverImage):
        return attention_over_image(figure.image, figure.words, figure.attention, path, figure.heading)
    if isinstance(figure, AttentionHeatmap):
        return attention_heatmap(figure.source_tokens, figure.output_tokens, figure.attention, path,
                                 title=figure.heading)  # fmt: skip
    if isinstance(figure, StageFeatureMaps):
        return feature_maps_plot(figure.maps, path, image=figure.image, title=figure.heading)
    if isinstance(figure, FramesWithBelief):
        return frames_with_belief(figure.frames, figure.labels, figure.probabilities, path, figure.heading)
    raise ConfigError(f"no drawing for a figure of type {type(figure).__name__}")
