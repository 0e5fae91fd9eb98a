"""What every CNN of the zoo shares: the config fields, the input-size rule, and the classifier interface.

Every image classifier is split the same way, so that transfer learning needs nothing model-specific::

    f      = forward_features(x)      # (B, C, H_img, W_img) → (B, num_features, H_img', W_img'): the body
    logits = forward_head(f)          # pool → flatten → (dropout) → linear layers → (B, K)
    forward(x) = forward_head(forward_features(x))

``stages()`` names the body's parts in input-to-output order (ResNet: ``stem, layer1 … layer4, head``); the last
stage is always ``head`` and holds exactly the final linear layer, the one ``reset_classifier`` replaces.

Small inputs. The published networks were designed for 224×224 ImageNet crops (LeNet-5 for 32×32 digits); their
stems shrink an 8×8 or 32×32 image to nothing. A config's ``image_size`` is the side of the images the model will
see; ``small_input=None`` (the default) switches each model to its small-input stem when ``image_size < 64``
(LeNet-5: ``< 32``), ``True``/``False`` forces the choice. Every model pools adaptively before its classifier, so
the head (and the published parameter count of the standard stem) does not depend on the input size; the
smallest input a built model accepts is ``model.min_input_size``.

Batch normalisation under transfer learning: a BatchNorm layer whose affine parameters are all frozen
(``requires_grad=False``) stays in eval mode — it normalises with its running statistics and never updates them —
even when ``model.train()`` is called (:meth:`ImageClassifier.train`). Freezing a stage therefore freezes its
statistics too; unfreezing it gives them back to training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from dnn.checks import number_in, positive_int
from dnn.errors import ConfigError
from dnn.layers.conv import conv_output_size, pool_output_size

__all__ = [
    "HEAD_STAGE",
    "SMALL_INPUT_BELOW",
    "ImageClassifier",
    "ImageClassifierConfig",
    "SpatialOp",
    "in_memory_layout",
    "init_like_torchvision_conv",
    "min_input_size",
]

SMALL_INPUT_BELOW = 64  # image_size below this → small-input stem (ResNet, AlexNet, VGG, GoogLeNet)
HEAD_STAGE = "head"

# One step of a network's down-sampling path: (kind, kernel, stride, padding, ceil_mode), kind "conv" or "pool".
SpatialOp = tuple[str, int, int, int, bool]


@dataclass
class ImageClassifierConfig:
    """Fields shared by every CNN config (the published ImageNet setting by default).

    ``num_classes``: K, the size of the output layer. ``in_channels``: C of the input images (3 for RGB, 1 for
    grey). ``image_size``: the side of the (square) images the model is meant for; it only chooses the stem, any
    input of at least ``model.min_input_size`` pixels runs. ``small_input``: ``None`` → small-input stem iff
    ``image_size < 64``; ``True``/``False`` forces it. ``dropout``: drop probability in the head (see each model).
    """

    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224
    small_input: bool | None = None
    dropout: float = 0.0

    def __post_init__(self):
        where = type(self).__name__
        for name in ("num_classes", "in_channels", "image_size"):
            positive_int(f"{where}: {name}", getattr(self, name))
        if self.small_input is not None and not isinstance(self.small_input, bool):
            raise ConfigError(f"{where}: small_input must be true, false or null, got {self.small_input!r}")
        number_in(f"{where}: dropout", self.dropout, 0, 1, high_open=True)

    def resolve_small_input(self, below: int = SMALL_INPUT_BELOW) -> bool:
        """``small_input`` if given, else ``image_size < below``."""
        return self.image_size < below if self.small_input is None else self.small_input


@dataclass
class FCHeadConfig(ImageClassifierConfig):
    """Config of a CNN with two hidden fully connected layers (AlexNet, VGG): ``dropout`` (0.5, as published) in
    the head, ``hidden_size`` the width of fc6 and fc7."""

    dropout: float = 0.5
    hidden_size: int = 4096

    def __post_init__(self):
        super().__post_init__()
        positive_int(f"{type(self).__name__}: hidden_size", self.hidden_size)


def min_input_size(path: list[SpatialOp], limit: int = 4096) -> int:
    """Smallest square input side for which every step of ``path`` has a non-empty output (W' ≥ 1).

    Each step applies ``W' = floor((W - K + 2P) / S) + 1`` (ceil for pools in ``ceil_mode``, see
    :func:`dnn.layers.conv.pool_output_size`); steps that keep or cannot empty the size need not be listed.
    """
    for size in range(1, limit + 1):
        w = size
        try:
            for op, k, s, p, ceil_mode in path:
                if op == "conv":
                    w = conv_output_size(w, k, s, p)
                else:
                    w = pool_output_size(w, k, s, p, ceil_mode=ceil_mode)
        except ConfigError:
            continue
        return size
    raise ConfigError(f"no input size up to {limit} fits the down-sampling path {path}")


class ImageClassifier(nn.Module):
    """Base class of the CNN zoo: ``forward = forward_head ∘ forward_features``, named stages, a replaceable head.

    Subclasses build their layers, set ``num_features`` (channels of the feature map), ``head_path`` (the dotted
    name of the final ``nn.Linear``) and ``min_input_size`` (through :meth:`set_min_input_size`), and implement
    ``forward_features``, ``forward_head``, ``stages`` and, if the head is not initialised like a fresh
    ``nn.Linear``, ``init_head``.
    ``checkpoint_ignore`` lists key prefixes of published checkpoints that this model has no place for on purpose
    (GoogLeNet's auxiliary heads); :func:`dnn.transfer.load_pretrained` drops them.
    """

    head_path: str = "fc"
    checkpoint_ignore: tuple[str, ...] = ()

    def __init__(self, name: str, config: ImageClassifierConfig, small_input: bool):
        super().__init__()
        self.name = name
        self.config = dataclasses.replace(config, small_input=small_input)  # the resolved config
        self.in_channels = config.in_channels
        self.num_classes = config.num_classes
        self.num_features = 0
        self.min_input_size = 1

    # ------------------------------------------------------------------------------------------ subclass hooks

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → feature map ``(B, num_features, H_img', W_img')`` (the body)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features")

    def forward_head(self, features: Tensor) -> Tensor:
        """Feature map ``(B, num_features, H_img', W_img')`` → logits ``(B, K)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_head")

    def stages(self) -> dict[str, list[nn.Module]]:
        """The model's parts in input-to-output order; every parameter is in exactly one, the last is ``head``."""
        raise NotImplementedError(f"{type(self).__name__} must implement stages")

    def init_head(self, linear: nn.Linear) -> None:
        """Initialise a new output layer (default: ``nn.Linear``'s own initialisation)."""
        linear.reset_parameters()

    def set_min_input_size(self, path: list[SpatialOp]) -> None:
        """Set ``min_input_size`` from the down-sampling ``path``; the config's ``image_size`` must reach it."""
        self.min_input_size = min_input_size(path)
        if self.config.image_size < self.min_input_size:
            raise ConfigError(
                f"{self.name}: image_size={self.config.image_size} is below the {self.min_input_size}×"
                f"{self.min_input_size} pixels its stem needs with small_input={self.config.small_input}; "
                f"leave small_input unset (null) or set it to true"
            )

    # ------------------------------------------------------------------------------------------ shared behaviour

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H_img, W_img)`` → logits ``(B, K)``."""
        return self.forward_head(self.forward_features(x))

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line ConfigError unless ``x`` is ``(B, in_channels, H_img, W_img)`` with sides ≥ min size."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(
                f"{self.name}: input must be a tensor of shape (B, {self.in_channels}, H_img, W_img) "
                f"(in_channels={self.in_channels}), got {got}"
            )
        if min(x.shape[2], x.shape[3]) < self.min_input_size:
            small = self.config.small_input
            raise ConfigError(
                f"{self.name}: input images must be at least {self.min_input_size}×{self.min_input_size} pixels "
                f"with small_input={small}, got {x.shape[2]}×{x.shape[3]}"
                + ("" if small else "; build it with a smaller image_size or small_input=True")
            )

    def get_classifier(self) -> nn.Linear:
        """The final linear layer (``num_features_head → K``)."""
        return self.get_submodule(self.head_path)

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs.

        The body is untouched; the new layer has the old one's input size, device and dtype.
        """
        positive_int(f"{self.name}: num_classes", num_classes)
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self.init_head(new)
        self.set_submodule(self.head_path, new)
        self.num_classes = num_classes
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        return new

    def train(self, mode: bool = True) -> ImageClassifier:
        """``nn.Module.train``, except that BatchNorm layers with all parameters frozen stay in eval mode."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, _BatchNorm) and _all_frozen(module):
                    module.eval()
        return self


def _all_frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


@torch.no_grad()
def init_like_torchvision_conv(model: nn.Module) -> None:
    """He (fan-out, ReLU) initialisation of every conv, zero conv biases, BN weight 1 and bias 0 (torchvision's
    ResNet / VGG scheme)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def in_memory_layout(
    model: nn.Module, device: torch.device, channels_last: bool | None = None, precision: str = "fp32"
) -> nn.Module:
    """The model in the memory layout its runs use: NHWC (``torch.channels_last``) for a CNN when
    ``channels_last`` is true, or when it is None (``train.channels_last``'s default) on CUDA (cuDNN's tensor
    cores) and, in bf16/fp16, on the CPU. Measured on the CPU at 32×32 across the zoo, NHWC made bf16 training
    steps 1.03–2.0× faster on every model; in fp32 it paid on most (1.1–1.9×) but cost VGG-16-BN 10%, and its
    convolution gradients rounded 2–10× further from an fp64 reference than NCHW's, so fp32 stays NCHW unless
    asked. Training, ``dnn eval`` and prediction share this rule, so a run's evaluation is the same to the last
    bit as the one its training wrote."""
    if channels_last is None:
        channels_last = device.type == "cuda" or (device.type == "cpu" and precision != "fp32")
    if channels_last and isinstance(model, ImageClassifier):
        return model.to(memory_format=torch.channels_last)
    return model
