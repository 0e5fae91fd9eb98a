"""A small all-convolutional CNN with global pooling: locality, weight sharing and translation invariance.

::

    conv1   conv 3×3 (C → c₁), pad 1 → ReLU                    (B, c₁, H_img, W_img)
    conv2   conv 3×3 (c₁ → c₂), pad 1 → ReLU → max-pool 2×2/2  (B, c₂, H_img/2, W_img/2)
    conv3   conv 3×3 (c₂ → c₃), pad 1 → ReLU                   (B, c₃, H_img/2, W_img/2)
    head    global average pool → (dropout) → fc c₃ → K       (B, c₃) → (B, K)

Each convolution slides one 3×3 kernel over every position (weight sharing), so its output moves with its input
(equivariance), and the global pool then forgets where a feature was (invariance, up to the 2×2 pool's stride and
the borders). Nothing depends on the image size: the parameter count is the same for 8×8 and 64×64 inputs
(28,714 for 1 channel, 10 classes and the default widths), unlike a fully connected net (:mod:`dnn.models.mlp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from dnn.checks import int_in, is_int, positive_int
from dnn.errors import ConfigError
from dnn.layers.conv import conv_output_size
from dnn.models.cnn_base import HEAD_STAGE, ImageClassifier, ImageClassifierConfig
from dnn.models.registry import register_model

__all__ = ["ConvNet", "ConvNetConfig", "convnet"]


@dataclass
class ConvNetConfig(ImageClassifierConfig):
    """Three convolutions of ``channels`` = (c₁, c₂, c₃) filters, one max-pool, global average pooling.
    Defaults: 8×8 grey digits, 10 classes. ``small_input`` has no meaning here and is ignored.

    The convolutions' hyperparameters, as the lecture names them: ``kernel_size`` (the filter's side),
    ``stride`` (how far it moves: 2 halves the map), ``padding`` (zeros around the border; None = ``kernel_size //
    2``, which keeps the size at stride 1), and ``pool`` (the max-pool's window and stride; 1 = no pooling).
    W' = ⌊(W − K + 2P) / S⌋ + 1 for each convolution; a map that shrinks below 1×1 is an error naming the layer."""

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 8
    channels: tuple[int, int, int] = (32, 32, 64)
    kernel_size: int = 3
    stride: int = 1
    padding: int | None = None
    pool: int = 2

    def __post_init__(self):
        super().__post_init__()
        if not all(is_int(c) and c >= 1 for c in self.channels):
            raise ConfigError(f"ConvNetConfig: channels must be three positive integers, got {list(self.channels)}")
        for name in ("kernel_size", "stride", "pool"):
            positive_int(f"ConvNetConfig: {name}", getattr(self, name))
        if self.padding is None:
            self.padding = self.kernel_size // 2
        int_in("ConvNetConfig: padding", self.padding, 0, expected="an integer ≥ 0 or null")
        size = self.image_size
        for layer, (_, k, st, pad) in zip(("conv1", "conv2", "pool", "conv3"), self.layers()):
            try:
                size = conv_output_size(size, k, st, pad)
            except ConfigError:  # the map is already smaller than the kernel
                size = 0
            if size < 1:
                raise ConfigError(
                    f"ConvNetConfig: the {self.image_size}×{self.image_size} image shrinks to nothing at {layer} "
                    f"(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                    f"pool={self.pool}); use a smaller kernel or stride, or more padding"
                )

    def layers(self) -> list[tuple[str, int, int, int]]:
        """(kind, kernel, stride, padding) of conv1, conv2, the pool and conv3, in order."""
        k, st, pad = self.kernel_size, self.stride, self.padding
        return [("conv", k, st, pad), ("conv", k, st, pad), ("pool", self.pool, self.pool, 0), ("conv", k, st, pad)]


class ConvNet(ImageClassifier):
    """conv → conv → pool → conv → global average pool → linear; see the module docstring."""

    head_path = "fc"

    def __init__(self, config: ConvNetConfig, name: str = "convnet"):
        super().__init__(name, config, small_input=False)
        c1, c2, c3 = config.channels
        k, st, pad, pool = config.kernel_size, config.stride, config.padding, config.pool
        self.conv1 = nn.Sequential(nn.Conv2d(config.in_channels, c1, k, st, pad), nn.ReLU())
        pooling = [nn.MaxPool2d(pool, pool)] if pool > 1 else []
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, k, st, pad), nn.ReLU(), *pooling)
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, k, st, pad), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(c3, config.num_classes)
        self.num_features = c3
        self.set_min_input_size([(kind, kk, ss, pp, False) for kind, kk, ss, pp in config.layers()])

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → ``(B, c₃, H_img/2, W_img/2)``."""
        self.check_input(x)
        return self.conv3(self.conv2(self.conv1(x)))

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, c₃, H', W')`` → mean over positions ``(B, c₃)`` → logits ``(B, K)``."""
        return self.fc(self.dropout(features.mean(dim=(2, 3))))

    def stages(self) -> dict[str, list[nn.Module]]:
        """``conv1``, ``conv2`` (with the pool), ``conv3``, ``head`` (the output layer)."""
        return {"conv1": [self.conv1], "conv2": [self.conv2], "conv3": [self.conv3], HEAD_STAGE: [self.fc]}


@register_model("convnet", ConvNetConfig)
def convnet(config: ConvNetConfig) -> ConvNet:
    """Small CNN: three 3×3 convs, global average pool (any image size); 28,714 parameters at 1 channel, 10 classes."""
    return ConvNet(config, name="convnet")
