"""VGG-11, VGG-16 and VGG-16-BN (Simonyan & Zisserman 2015) in torchvision's layout.

Stacks of 3×3 convolutions (padding 1, so the size is kept) with ReLU, a 2×2/2 max-pool after each block, then
three fully connected layers::

    features    block1 … block5: [3×3 conv (→ BN) → ReLU] × n, max-pool 2×2/2     224 → 7
    avgpool     adaptive average pool to 7×7                                       any → 7
    classifier  fc6 25088→4096, ReLU, dropout · fc7 4096→4096, ReLU, dropout · fc8 4096→K

Configuration A (VGG-11): 64 M 128 M 256 256 M 512 512 M 512 512 M; D (VGG-16): 64 64 M 128 128 M 256 256 256 M
512 512 512 M 512 512 512 M. Parameter names are torchvision's (``features.N``, ``classifier.0/3/6``); published
counts 132,863,336 (VGG-11), 138,357,544 (VGG-16), 138,365,992 (VGG-16-BN).

Small inputs (``image_size < 64`` or ``small_input=True``): the max-pools round up (``ceil_mode``), so any image
of at least 1×1 runs (8×8 → 4 → 2 → 1 → 1 → 1) instead of needing 32×32; the adaptive pool then spreads the last
map over 7×7 and the published classifier is kept. No parameter changes shape, so torchvision checkpoints still
load. ``hidden_size`` narrows fc6/fc7 (4096 as published; CIFAR variants use 512).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.models.cnn_base import (
    HEAD_STAGE,
    FCHeadConfig,
    ImageClassifier,
    init_like_torchvision_conv,
)
from dnn.models.registry import register_model

__all__ = ["VGG", "VGG_CONFIGS", "VGGConfig", "vgg11", "vgg16", "vgg16_bn"]

# Output channels of each 3×3 conv; "M" is a 2×2/2 max-pool.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


@dataclass
class VGGConfig(FCHeadConfig):
    """VGG config: dropout acts after fc6 and fc7 (see :class:`FCHeadConfig`)."""


class VGG(ImageClassifier):
    """VGG with the conv layout ``layout`` (a :data:`VGG_CONFIGS` entry), with or without batch norm."""

    head_path = "classifier.6"

    def __init__(self, layout: tuple[int | str, ...], batch_norm: bool, config: VGGConfig, name: str = "vgg"):
        small = config.resolve_small_input()
        super().__init__(name, config, small)
        layers: list[nn.Module] = []
        channels = config.in_channels
        for v in layout:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=small))
            else:
                layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU())
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        h = config.hidden_size
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, config.num_classes),
        )
        self.num_features = channels
        self.set_min_input_size([("pool", 2, 2, 0, small)] * layout.count("M"))

        init_like_torchvision_conv(self)
        for m in self.classifier:
            if isinstance(m, nn.Linear):
                self.init_head(m)

    @torch.no_grad()
    def init_head(self, linear: nn.Linear) -> None:
        """torchvision's VGG initialisation of a linear layer: ``W ~ N(0, 0.01²)``, ``b = 0``."""
        nn.init.normal_(linear.weight, 0.0, 0.01)
        nn.init.zeros_(linear.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → ``(B, 512, H_img/32, W_img/32)`` (rounded up with small inputs)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 512, H_img', W_img')`` → pool to 7×7 → ``(B, 25088)`` → fc6 → fc7 → fc8 → ``(B, K)``."""
        x = torch.flatten(self.avgpool(features), 1)  # (B, 512, 7, 7) → (B, 25088)
        return self.classifier(x)

    def stages(self) -> dict[str, list[nn.Module]]:
        """``block1`` … ``block5`` (each ending with its max-pool), ``fc6``, ``fc7``, ``head`` (fc8)."""
        stages: dict[str, list[nn.Module]] = {}
        block: list[nn.Module] = []
        for m in self.features:
            block.append(m)
            if isinstance(m, nn.MaxPool2d):
                stages[f"block{len(stages) + 1}"] = block
                block = []
        c = list(self.classifier)
        stages["fc6"] = c[0:3]
        stages["fc7"] = c[3:6]
        stages[HEAD_STAGE] = c[6:]
        return stages


@register_model("vgg11", VGGConfig)
def vgg11(config: VGGConfig) -> VGG:
    """VGG-11 (configuration A); 132,863,336 parameters at 3×224×224, 1000 classes."""
    return VGG(VGG_CONFIGS["A"], False, config, name="vgg11")


@register_model("vgg16", VGGConfig)
def vgg16(config: VGGConfig) -> VGG:
    """VGG-16 (configuration D); 138,357,544 parameters at 3×224×224, 1000 classes."""
    return VGG(VGG_CONFIGS["D"], False, config, name="vgg16")


@register_model("vgg16_bn", VGGConfig)
def vgg16_bn(config: VGGConfig) -> VGG:
    """VGG-16 with batch norm after every conv; 138,365,992 parameters at 3×224×224, 1000 classes."""
    return VGG(VGG_CONFIGS["D"], True, config, name="vgg16_bn")
