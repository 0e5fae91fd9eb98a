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

from dnn.errors import ConfigError
from dnn.models.cnn_base import HEAD_STAGE, ImageClassifier, ImageClassifierConfig
from dnn.models.registry import register_model

__all__ = ["ConvNet", "ConvNetConfig", "convnet"]


@dataclass
class ConvNetConfig(ImageClassifierConfig):
    """Three 3×3 convolutions of ``channels`` = (c₁, c₂, c₃) filters, one max-pool, global average pooling.
    Defaults: 8×8 grey digits, 10 classes. ``small_input`` has no meaning here and is ignored."""

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 8
    channels: tuple[int, int, int] = (32, 32, 64)

    def __post_init__(self):
        super().__post_init__()
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.channels):
            raise ConfigError(f"ConvNetConfig: channels must be three positive integers, got {list(self.channels)}")


class ConvNet(ImageClassifier):
    """conv → conv → pool → conv → global average pool → linear; see the module docstring."""

    head_path = "fc"

    def __init__(self, config: ConvNetConfig, name: str = "convnet"):
        super().__init__(name, config, small_input=False)
        c1, c2, c3 = config.channels
        self.conv1 = nn.Sequential(nn.Conv2d(config.in_channels, c1, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(c3, config.num_classes)
        self.num_features = c3
        self.set_min_input_size([("conv", 3, 1, 1, False), ("conv", 3, 1, 1, False), ("pool", 2, 2, 0, False)])

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
