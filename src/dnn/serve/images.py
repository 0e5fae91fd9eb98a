"""Images from a client, and what the first layer of a CNN makes of them.

:func:`decode_image` reads a base64 PNG/JPEG in memory (never a file, never a pickle): the header first, so an
image over the pixel limit is refused before a single pixel is decoded; then :func:`dnn.data.images.load_image`
turns it into the run's input, exactly as ``dnn predict`` reads a file.

:func:`first_conv_maps` records the output of the model's first ``nn.Conv2d`` — the first layer's feature maps
``(B, C_1, H_1, W_1)`` — while the predictor runs its ordinary forward pass: a forward hook, removed on exit, that
records only the forward of the thread that installed it, so concurrent requests on the same model never see
each other's maps.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dnn.data.images import load_image
from dnn.errors import ConfigError, DataError
from dnn.serve import uploads

__all__ = ["FirstConv", "decode_image", "feature_maps", "first_conv_maps"]


def decode_image(data: str, image_size: int, channels: int, max_pixels: int) -> Tensor:
    """A base64 image (optionally a ``data:image/...;base64,`` URL) → ``(C, H_img, W_img)`` in [0, 1], resized to
    the run's ``image_size``. Not base64, not an image, or more than ``max_pixels`` pixels: DataError."""
    raw = uploads.from_base64(data, "image", "PNG/JPEG")
    width, height = uploads.image_size(raw, max_pixels, "image")  # from the header, before any pixel is decoded
    try:
        return load_image(io.BytesIO(raw), image_size, grayscale=channels == 1)  # (C, H_img, W_img)
    except DataError as err:
        raise DataError(f"image: cannot decode the {width}×{height} image ({err.__cause__ or err})") from None


@dataclass
class FirstConv:
    """The first convolution's name (as in ``model.named_modules()``) and its output, once the forward has run."""

    name: str
    output: Tensor | None = None


@contextmanager
def first_conv_maps(model: nn.Module) -> Iterator[FirstConv]:
    """Within the block, every forward pass of ``model`` made by this thread records the output of its first
    ``nn.Conv2d`` (the first layer's feature maps) in the yielded :class:`FirstConv`."""
    found = next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise ConfigError(f"{type(model).__name__} has no convolution layer: no feature maps to show")
    name, conv = found
    capture = FirstConv(name)
    thread = threading.get_ident()

    def hook(module: nn.Module, inputs, output: Tensor) -> None:
        if threading.get_ident() == thread:
            capture.output = output.detach()

    handle = conv.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()


def feature_maps(output: Tensor, max_maps: int = 16, max_side: int = 64) -> Tensor:
    """The first ``max_maps`` maps of one image's activations ``(C_1, H_1, W_1)``, average-pooled down to at most
    ``max_side`` pixels a side: ``(min(C_1, max_maps), H', W')`` — what a page can show."""
    maps = output[:max_maps].float()  # (K, H_1, W_1)
    height, width = maps.shape[-2:]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        maps = F.adaptive_avg_pool2d(maps.unsqueeze(0), size).squeeze(0)  # (K, H', W')
    return maps
