"""Image data: a folder-per-class reader, scikit-learn's 8×8 digits, training augmentation and normalisation.

Every image becomes a float tensor ``(C, H_img, W_img)`` with values in [0, 1]; normalisation comes last, with
statistics computed on the training split only (:func:`channel_stats`) and stored with the run
(:meth:`Normalize.to_dict`). Pillow and torch only — no torchvision.

Randomness. Every augmentation takes ``generator``: give one for a reproducible stream in one process (tests, a
single-process loader); leave it ``None`` inside a :class:`torch.utils.data.DataLoader` with workers, so each
worker draws from torch's global generator, which the loader seeds per worker from its own ``generator``
(:func:`dnn.data.batching.make_generator`). A generator stored in a dataset is *copied* into every worker, and the
copies would repeat each other's draws.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from dnn.checks import is_int
from dnn.errors import ConfigError, DataError
from dnn.io import check_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``n`` -> ``(n, n)``; ``(h, w)`` -> ``(h, w)``; both positive ints, else ConfigError naming ``name``."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(is_int(v) and v > 0 for v in pair):
        raise ConfigError(f"{name} must be a positive int or (H, W) of positive ints, got {value!r}")
    return pair  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ reading


def _is_grey(img: Image.Image) -> bool:
    """True for grey modes, and for palette images whose palette entries all have R = G = B."""
    if img.mode in _GREY_MODES:
        return True
    if img.mode in ("P", "PA"):
        palette = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        return bool(np.all(palette[:, 0] == palette[:, 1]) and np.all(palette[:, 1] == palette[:, 2]))
    return False


def _convert(img: Image.Image, grayscale: bool) -> Image.Image:
    """Any PNG/JPEG mode -> 8-bit "L" or "RGB". Alpha is dropped (as torchvision's loader does); RGB -> L is
    ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B; 16-bit grey is rescaled, not clipped, to 0..255."""
    if img.mode.startswith("I"):
        values = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "La"):
        img = img.convert("L")
    target = "L" if grayscale else "RGB"
    return img if img.mode == target else img.convert(target)


def load_image(path: str | Path, image_size: int | Sequence[int], grayscale: bool) -> Tensor:
    """Read one PNG/JPEG, convert it to grey or RGB, resize it (bilinear) and return ``(C, H_img, W_img)`` in [0, 1].

    Pillow's bilinear filter widens with the scale factor when shrinking (it antialiases, like
    ``F.interpolate(..., antialias=True)``); an image already at the size is not resampled. A file Pillow cannot
    decode raises :class:`DataError` naming it.
    """
    height, width = _pair(image_size, "image_size")
    if isinstance(path, (str, os.PathLike)):  # a file (not an in-memory image): a FIFO would block Pillow forever
        check_file(path, expected="a PNG or JPEG image")
    try:
        with Image.open(path) as img:
            img.load()
            img = _convert(img, grayscale)
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.array(img, dtype=np.uint8)  # (H_img, W_img) or (H_img, W_img, 3)
    except _PIL_ERRORS as error:
        raise DataError(f"{path}: cannot read image ({type(error).__name__}: {error})") from error
    image = torch.from_numpy(pixels).float().div_(255.0)
    return image.unsqueeze(0) if grayscale else image.permute(2, 0, 1).contiguous()  # (C, H_img, W_img)


class ImageFolder(Dataset):
    """Images in one sub-folder per class: ``root/<class>/<name>.png|.jpg|.jpeg`` (extensions case-insensitive,
    sub-folders of a class folder included, hidden files and folders skipped, other files ignored).

    Returns ``(image (C, H_img, W_img) float in [0, 1], label int)``, with ``transform`` (augmentation,
    normalisation) applied to the image when given. ``C`` is 1 when ``grayscale``, 3 otherwise; ``grayscale=None``
    decides from the data: grey when every image is grey (the chosen value is in ``.grayscale``).

    ``classes`` fixes the class list and label order (pass the training set's ``.classes`` to a validation or test
    folder): a folder not in it is a DataError; a listed class without a folder is allowed. By default the classes
    are the sorted folder names.

    Errors are found early: every file's header is opened here (cheap, Pillow decodes no pixels), so a file that
    is not an image fails at construction; a file whose pixel data is truncated fails when it is first read. Both
    raise :class:`DataError` naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int | Sequence[int],
        grayscale: bool | None = None,
        classes: Sequence[str] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ):
        self.root = Path(root)
        self.image_size = _pair(image_size, "image_size")
        if grayscale is not None and not isinstance(grayscale, bool):
            raise ConfigError(f"grayscale must be True, False or None, got {grayscale!r}")
        if not self.root.exists():
            raise DataError(f"{self.root}: image folder does not exist")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: image folder is not a directory")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"{self.root}: no class folders (expected one sub-folder of images per class)")
        if classes is None:
            self.classes = folders
        else:
            self.classes = [str(c) for c in classes]
            if len(set(self.classes)) != len(self.classes):
                raise ConfigError(f"classes has duplicates: {self.classes}")
            unknown = [f for f in folders if f not in self.classes]
            if unknown:
                raise DataError(f"{self.root / unknown[0]}: class folder {unknown[0]!r} is not one of {self.classes}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for name in folders:
            files = _image_files(self.root / name)
            if not files:
                raise DataError(
                    f"{self.root / name}: class folder {name!r} has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            self.samples += [(path, self.class_to_idx[name]) for path in files]
        self.targets = [label for _, label in self.samples]
        greys = [_header_is_grey(path) for path, _ in self.samples]  # every header, even once one is colour
        self.grayscale = all(greys) if grayscale is None else grayscale
        self.transform = transform

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        image = load_image(path, self.image_size, self.grayscale)  # (C, H_img, W_img)
        return (self.transform(image) if self.transform is not None else image), label

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root='{self.root}', classes={len(self.classes)}, samples={len(self)}, "
            f"image_size={self.image_size}, channels={self.channels})"
        )


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _header_is_grey(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return _is_grey(img)
    except _PIL_ERRORS as error:
        raise DataError(f"{path}: cannot read image ({type(error).__name__}: {error})") from error


# ------------------------------------------------------------------------------------------------ digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def load_digits_dataset() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes; nothing is downloaded).

    Returns ``images (N, 1, 8, 8)`` float32 in [0, 1] (the stored 0..16 counts divided by 16) and
    ``labels (N,)`` int64.
    """
    images, labels = _digits_arrays()
    return torch.tensor(images, dtype=torch.float32).div_(16.0).unsqueeze(1), torch.tensor(labels, dtype=torch.int64)


def digits_split_indices(seed: int, valid: float = 0.1, test: float = 0.2) -> tuple[Tensor, Tensor, Tensor]:
    """Disjoint, stratified ``(train, valid, test)`` index tensors covering the digits; the same for a seed.

    ``test`` is split off first, then ``valid`` (a fraction of the whole) from the rest, both with
    ``sklearn.model_selection.train_test_split(stratify=labels)``, so each class keeps its share in each split.
    """
    from sklearn.model_selection import train_test_split

    for name, fraction in (("valid", valid), ("test", test)):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"{name} must be a fraction in [0, 1), got {fraction!r}")
    if valid + test >= 1.0:
        raise ConfigError(f"valid + test must be < 1 to leave training data, got {valid} + {test}")
    labels = _digits_arrays()[1]
    rest = np.arange(len(labels))
    parts: list[np.ndarray] = []
    for fraction in (test, valid / (1.0 - test)):
        if fraction == 0.0:
            parts.append(np.zeros(0, dtype=np.int64))
            continue
        rest, part = train_test_split(rest, test_size=fraction, random_state=seed, stratify=labels[rest])
        parts.append(part)
    test_idx, valid_idx = parts
    return tuple(torch.from_numpy(np.sort(i).astype(np.int64)) for i in (rest, valid_idx, test_idx))  # type: ignore


def digits_splits(
    seed: int, valid: float = 0.1, test: float = 0.2
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Train / valid / test :class:`TensorDataset` s of ``(image (1, 8, 8), label)`` from
    :func:`digits_split_indices`."""
    images, labels = load_digits_dataset()
    return tuple(TensorDataset(images[i], labels[i]) for i in digits_split_indices(seed, valid, test))  # type: ignore


# ------------------------------------------------------------------------------------------------ augmentation


def _check_image(x: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"expected an image (C, H_img, W_img), got shape {tuple(x.shape)}")


def _check_affine(degrees: float, translate: float, scale: Sequence[float]) -> None:
    if not degrees >= 0:
        raise ConfigError(f"degrees must be ≥ 0, got {degrees!r}")
    if not 0.0 <= translate <= 1.0:
        raise ConfigError(f"translate must be a fraction of the image size in [0, 1], got {translate!r}")
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"scale must be (low, high) with 0 < low ≤ high, got {scale!r}")


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


class RandomCrop(nn.Module):
    """Pad every side by ``padding`` pixels (value ``fill``), then crop ``size`` at a uniformly random offset."""

    def __init__(
        self, size: int | Sequence[int], padding: int = 0, fill: float = 0.0, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.size = _pair(size, "size")
        if not isinstance(padding, int) or padding < 0:
            raise ConfigError(f"padding must be an int ≥ 0, got {padding!r}")
        self.padding, self.fill, self.generator = padding, fill, generator

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x)
        p = self.padding
        x = F.pad(x, (p, p, p, p), value=self.fill) if p else x  # (C, H_img + 2p, W_img + 2p)
        (height, width), (h, w) = x.shape[-2:], self.size
        if h > height or w > width:
            raise ValueError(f"RandomCrop size {self.size} is larger than the padded image {(height, width)}")
        top = int(torch.randint(height - h + 1, (), generator=self.generator))
        left = int(torch.randint(width - w + 1, (), generator=self.generator))
        return x[:, top : top + h, left : left + w]


class RandomHorizontalFlip(nn.Module):
    """Mirror left-right with probability ``p``. Only where a mirrored image is still the same class (photos of
    objects) — not for digits or text, where the configuration must leave it off."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be a probability in [0, 1], got {p!r}")
        self.p, self.generator = p, generator

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x)
        return x.flip(-1) if torch.rand((), generator=self.generator).item() < self.p else x


class RandomAffine(nn.Module):
    """A small random similarity transform, sampled bilinearly, zeros outside the image.

    Angle α ~ U(−degrees, degrees), scale s ~ U(scale), shift t ~ U(±translate · (W_img, H_img)) pixels; in pixel
    coordinates about the centre, ``out = s · R(α) · in + t``. ``affine_grid`` wants the inverse map in coordinates
    normalised to [−1, 1], D = diag(W_img/2, H_img/2) pixels per unit:
        θ = [ D⁻¹ A⁻¹ D | −D⁻¹ A⁻¹ t ],  A = s · R(α).
    """

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_affine(degrees, translate, scale)
        self.degrees, self.translate, self.scale, self.generator = degrees, translate, tuple(scale), generator

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x)
        height, width = x.shape[-2:]
        angle = math.radians(_uniform(-self.degrees, self.degrees, self.generator))
        s = _uniform(*self.scale, self.generator)
        shift = [_uniform(-self.translate, self.translate, self.generator) * n for n in (width, height)]
        t = torch.tensor(shift, dtype=torch.float64)  # (2,) pixels, (x, y)
        cos, sin = math.cos(angle), math.sin(angle)
        a_inv = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64) / s  # (s R(α))⁻¹ = R(−α) / s
        d = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
        theta = torch.cat([a_inv * d[None, :] / d[:, None], (-(a_inv @ t) / d)[:, None]], dim=1)  # (2, 3)
        theta = theta.to(x.dtype)[None]  # (1, 2, 3)
        grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)  # (1, H_img, W_img, 2)
        return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


class Compose(nn.Module):
    """Apply ``transforms`` in order (modules or plain callables on ``(C, H_img, W_img)``)."""

    def __init__(self, transforms: Sequence[Callable[[Tensor], Tensor]]):
        super().__init__()
        self.transforms = list(transforms)
        self.registered = nn.ModuleList(t for t in self.transforms if isinstance(t, nn.Module))  # for .to() / state

    def forward(self, x: Tensor) -> Tensor:
        for transform in self.transforms:
            x = transform(x)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


@dataclass
class AugmentationConfig:
    """Training augmentation; all off by default. ``horizontal_flip`` only where a mirror image keeps its class."""

    crop_padding: int = 0
    horizontal_flip: bool = False
    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, ...] = (1.0, 1.0)

    def __post_init__(self):
        if self.crop_padding < 0:
            raise ConfigError(f"crop_padding must be ≥ 0, got {self.crop_padding}")
        _check_affine(self.degrees, self.translate, self.scale)


def build_augmentation(
    config: AugmentationConfig, image_size: int | Sequence[int], generator: torch.Generator | None = None
) -> Compose:
    """The configured augmentations, in the order crop, flip, affine; an empty :class:`Compose` is the identity."""
    transforms: list[nn.Module] = []
    if config.crop_padding:
        transforms.append(RandomCrop(image_size, config.crop_padding, generator=generator))
    if config.horizontal_flip:
        transforms.append(RandomHorizontalFlip(0.5, generator=generator))
    if config.degrees or config.translate or tuple(config.scale) != (1.0, 1.0):
        transforms.append(RandomAffine(config.degrees, config.translate, config.scale, generator=generator))
    return Compose(transforms)


# ------------------------------------------------------------------------------------------------ normalisation


def channel_stats(data: Dataset | Tensor, chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Per-channel mean and population standard deviation over every pixel of every image, in one pass.

    ``data`` is a tensor ``(N, C, H_img, W_img)`` or a dataset of ``(image, label)`` / ``image`` items (images may
    differ in size). Sums are kept in float64:  μ_c = Σx / n,  σ_c = sqrt(Σx² / n − μ_c²). Compute them on the
    training split only, before augmentation and normalisation. Returns two float32 tensors ``(C,)``.
    """
    total = total_sq = None
    count = 0
    if isinstance(data, Tensor):
        if data.dim() != 4:
            raise ValueError(f"expected images (N, C, H_img, W_img), got shape {tuple(data.shape)}")
        chunks = (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))
    else:
        chunks = ((item[0] if isinstance(item, (tuple, list)) else item)[None] for item in data)
    for chunk in chunks:
        chunk = chunk.to(torch.float64).transpose(0, 1).flatten(1)  # (C, N·H_img·W_img)
        total = chunk.sum(1) if total is None else total + chunk.sum(1)
        total_sq = (chunk * chunk).sum(1) if total_sq is None else total_sq + (chunk * chunk).sum(1)
        count += chunk.shape[1]
    if total is None:
        raise DataError("channel_stats: the dataset is empty")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0.0).sqrt()
    return mean.float(), std.float()


class Normalize(nn.Module):
    """``(x − mean_c) / std_c`` per channel of ``(C, H_img, W_img)`` (or ``(B, C, H_img, W_img)``)."""

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.shape != std.shape or mean.numel() == 0:
            raise ConfigError(f"mean and std need one value per channel each, got {mean.tolist()} and {std.tolist()}")
        if not bool((std > 0).all()):
            raise ConfigError(f"std must be > 0 in every channel, got {std.tolist()} (a constant channel?)")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[-3] != self.mean.numel():
            raise ValueError(f"Normalize has {self.mean.numel()} channels, got an image of shape {tuple(x.shape)}")
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able ``{"mean": [...], "std": [...]}``; :meth:`from_dict` restores exactly."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, stats: dict[str, Sequence[float]]) -> Normalize:
        if not isinstance(stats, dict) or set(stats) != {"mean", "std"}:
            raise DataError(f"normalisation statistics need exactly the keys 'mean' and 'std', got {stats!r}")
        return cls(stats["mean"], stats["std"])

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
