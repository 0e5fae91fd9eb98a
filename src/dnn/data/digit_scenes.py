"""Scenes made of scikit-learn's 8×8 digits: canvases to caption, and clips of a moving digit to classify.

Captioning (one-to-many): n ∈ [min_digits, max_digits] digits pasted left to right on a blank canvas
``(1, H_img, W_img)``, each at its own height, with random gaps between them; the caption is the digits' words in
reading order ("three one four")::

    free = W_img − 8n                              pixels not covered by a digit along the row
    g_0 … g_n ≥ 0,  Σ g_k = free                   the gaps, a uniformly drawn composition of ``free``
    x_k = g_0 + … + g_k + 8k                        left edge of digit k (so x_0 < x_1 < … and no overlap)
    y_k ~ U{0 … H_img − 8}                          top edge of digit k (the vertical jitter)

Video (CNN per frame → RNN over time): one digit at a random place moves ``speed`` pixels per frame in one of
four directions across T frames of ``size × size``; the label is the direction. ``distractors`` other digits stand
still at random places in every frame (pixels combine by maximum). No single frame tells the direction, nor which
digit moves: only the change from frame to frame does.

Digits are drawn only from the digit images of the split being generated, so validation and test scenes show
handwriting that training never saw. Every draw comes from the ``torch.Generator`` given: the same seed gives the
same scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dnn.data.images import digits_split_indices, load_digits_dataset
from dnn.errors import ConfigError

__all__ = ["DIGIT", "DIGIT_WORDS", "DIRECTIONS", "CaptionScenes", "caption_scenes", "digits_by_split",
           "moving_digit_clips"]  # fmt: skip

DIGIT = 8  # the side of a scikit-learn digit image, in pixels
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIRECTIONS = ("left", "right", "up", "down")
_STEP = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx) per frame, y grows downwards


def digits_by_split(
    seed: int, valid_fraction: float, test_fraction: float, sizes: tuple[int, int, int], what: str
) -> dict[str, tuple[Tensor, Tensor]]:
    """The digit images ``(M_s, 1, 8, 8)`` and labels ``(M_s,)`` that each split ("train", "valid", "test") draws
    its scenes from: scikit-learn's digits split by seed, stratified (:func:`~dnn.data.images.digits_split_indices`).

    ``sizes``: how many scenes (``what``: "images", "clips") each split asks for; a split that asks for some but has
    no digits, its fraction being 0, is a ConfigError.
    """
    digits, labels = load_digits_dataset()  # (M, 1, 8, 8), (M,)
    indices = digits_split_indices(seed, valid_fraction, test_fraction)  # (train, valid, test)
    out = {}
    for split, idx, n in zip(("train", "valid", "test"), indices, sizes):
        if n and not len(idx):
            raise ConfigError(f"data.{split}_fraction is 0, so there are no digits to draw {n} {split} {what} from")
        out[split] = (digits[idx], labels[idx])
    return out


def _check_digits(digits: Tensor, labels: Tensor) -> None:
    if digits.dim() != 4 or digits.shape[1:] != (1, DIGIT, DIGIT) or labels.shape != digits.shape[:1]:
        raise ConfigError(
            f"digits must be (M, 1, {DIGIT}, {DIGIT}) with labels (M,), got {tuple(digits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise ConfigError("digits: no digit images to draw from")


@dataclass
class CaptionScenes:
    """``images (N, 1, H_img, W_img)`` in [0, 1], ``captions`` (the words of each), ``boxes`` (per image, the
    (top, left) of each digit, left to right)."""

    images: Tensor
    captions: list[list[str]]
    boxes: list[list[tuple[int, int]]]

    def __len__(self) -> int:
        return len(self.captions)


def caption_scenes(
    digits: Tensor,
    labels: Tensor,
    n: int,
    height: int = 16,
    width: int = 48,
    min_digits: int = 1,
    max_digits: int = 4,
    generator: torch.Generator | None = None,
) -> CaptionScenes:
    """``n`` canvases of 1–4 digits placed left to right (see the module docstring) and their captions."""
    _check_digits(digits, labels)
    if not 1 <= min_digits <= max_digits:
        raise ConfigError(f"need 1 ≤ min_digits ≤ max_digits, got {min_digits} and {max_digits}")
    if height < DIGIT or width < DIGIT * max_digits:
        raise ConfigError(
            f"a canvas of {height}×{width} cannot hold {max_digits} digits of {DIGIT}×{DIGIT} side by side "
            f"(needs height ≥ {DIGIT}, width ≥ {DIGIT * max_digits})"
        )
    images = torch.zeros(n, 1, height, width)
    captions: list[list[str]] = []
    boxes: list[list[tuple[int, int]]] = []
    counts = torch.randint(min_digits, max_digits + 1, (n,), generator=generator).tolist()
    for i, count in enumerate(counts):
        picks = torch.randint(0, len(labels), (count,), generator=generator)  # (n_i,)
        free = width - DIGIT * count
        cuts = torch.randint(0, free + 1, (count,), generator=generator).sort().values.tolist()
        gaps = [b - a for a, b in zip([0, *cuts], cuts)]  # g_0 … g_{n−1}; g_n is what is left
        tops = torch.randint(0, height - DIGIT + 1, (count,), generator=generator).tolist()
        left, placed = 0, []
        for k in range(count):
            left += gaps[k]
            top = tops[k]
            images[i, :, top : top + DIGIT, left : left + DIGIT] = digits[picks[k]]
            placed.append((top, left))
            left += DIGIT
        captions.append([DIGIT_WORDS[int(labels[j])] for j in picks])
        boxes.append(placed)
    return CaptionScenes(images, captions, boxes)


def moving_digit_clips(
    digits: Tensor,
    labels: Tensor,
    n: int,
    frames: int = 8,
    size: int = 20,
    speed: int = 1,
    distractors: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``n`` clips ``(N, T, 1, size, size)`` of one digit moving ``speed`` px per frame (and ``distractors``
    still ones), and the direction of each ``(N,)`` (an index into :data:`DIRECTIONS`). The start is uniform over
    the places from which the whole path stays inside the frame; the coordinate across the motion is uniform too."""
    _check_digits(digits, labels)
    travel = speed * (frames - 1)
    if distractors < 0:
        raise ConfigError(f"distractors must be 0 or more, got {distractors}")
    if frames < 2 or speed < 1:
        raise ConfigError(f"a moving digit needs frames ≥ 2 and speed ≥ 1, got frames={frames}, speed={speed}")
    if size < DIGIT + travel:
        raise ConfigError(
            f"frames of {size}×{size} are too small for a digit of {DIGIT} moving {travel} px "
            f"({frames} frames × {speed} px); need size ≥ {DIGIT + travel}"
        )
    clips = torch.zeros(n, frames, 1, size, size)
    direction = torch.randint(0, len(DIRECTIONS), (n,), generator=generator)  # (N,)
    picks = torch.randint(0, len(labels), (n,), generator=generator)  # (N,)
    along = torch.randint(0, size - DIGIT - travel + 1, (n,), generator=generator).tolist()
    across = torch.randint(0, size - DIGIT + 1, (n,), generator=generator).tolist()
    still = torch.randint(0, len(labels), (n, distractors), generator=generator)  # (N, n_d)
    places = torch.randint(0, size - DIGIT + 1, (n, distractors, 2), generator=generator).tolist()
    for i in range(n):
        for k, (y, x) in enumerate(places[i]):
            patch = clips[i, :, :, y : y + DIGIT, x : x + DIGIT]  # (T, 1, 8, 8), a view
            torch.maximum(patch, digits[still[i, k]], out=patch)
        dy, dx = _STEP[DIRECTIONS[int(direction[i])]]
        # the start: "along" from the edge the digit moves away from, "across" on the other axis
        start = along[i] if dx + dy > 0 else along[i] + travel
        y0, x0 = (start, across[i]) if dy else (across[i], start)
        for t in range(frames):
            y, x = y0 + dy * speed * t, x0 + dx * speed * t
            patch = clips[i, t, :, y : y + DIGIT, x : x + DIGIT]  # (1, 8, 8), a view
            torch.maximum(patch, digits[picks[i]], out=patch)
    return clips, direction
