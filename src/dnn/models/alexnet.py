"""AlexNet (Krizhevsky et al. 2012) in torchvision's single-tower layout ("one weird trick", Krizhevsky 2014).

::

    features    conv1 11×11/4 (64), ReLU, max-pool 3×3/2      224 → 55 → 27
                conv2 5×5 (192), ReLU, max-pool 3×3/2          27 → 13
                conv3 3×3 (384), ReLU · conv4 3×3 (256), ReLU · conv5 3×3 (256), ReLU, max-pool 3×3/2   13 → 6
    avgpool     adaptive average pool to 6×6
    classifier  dropout, fc6 9216→4096, ReLU · dropout, fc7 4096→4096, ReLU · fc8 4096→K

Parameter names are torchvision's (``features.0/3/6/8/10``, ``classifier.1/4/6``); published count 61,100,840.
The standard stem needs images of at least 63×63.

Small inputs (``image_size < 64`` or ``small_input=True``): conv1 is a 3×3 stride-1 conv (weight ``(64, C, 3, 3)``)
and the max-pools get padding 1, so any image runs (32 → 16 → 8 → 4; 8 → 4 → 2 → 1); the adaptive pool keeps the
published classifier. ``hidden_size`` narrows fc6/fc7 (4096 as published).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.models.cnn_base import HEAD_STAGE, FCHeadConfig, ImageClassifier
from dnn.models.registry import register_model

__all__ = ["AlexNet", "AlexNetConfig", "alexnet"]


@dataclass
class AlexNetConfig(FCHeadConfig):
    """AlexNet config: dropout acts before fc6 and fc7 (see :class:`FCHeadConfig`)."""


class AlexNet(ImageClassifier):
    """AlexNet; torchvision's initialisation (PyTorch's defaults for every layer)."""

    head_path = "classifier.6"

    def __init__(self, config: AlexNetConfig, name: str = "alexnet"):
        small = config.resolve_small_input()
        super().__init__(name, config, small)
        c = config.in_channels
        if small:
            conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1)
            pool_padding = 1
        else:
            conv1 = nn.Conv2d(c, 64, kernel_size=11, stride=4, padding=2)
            pool_padding = 0
        self.features = nn.Sequential(
            conv1,
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        h = config.hidden_size
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(256 * 6 * 6, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Linear(h, config.num_classes),
        )
        self.num_features = 256
        pool = ("pool", 3, 2, pool_padding, False)
        stem = ("conv", conv1.kernel_size[0], conv1.stride[0], conv1.padding[0], False)
        self.set_min_input_size([stem, pool, pool, pool])

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → ``(B, 256, H_img', W_img')`` (6×6 at 224×224, 4×4 at 32×32 small)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 256, H_img', W_img')`` → pool to 6×6 → ``(B, 9216)`` → fc6 → fc7 → fc8 → ``(B, K)``."""
        x = torch.flatten(self.avgpool(features), 1)  # (B, 256, 6, 6) → (B, 9216)
        return self.classifier(x)

    def stages(self) -> dict[str, list[nn.Module]]:
        """``conv1`` … ``conv5`` (with their ReLU and max-pool), ``fc6``, ``fc7``, ``head`` (fc8)."""
        f, c = list(self.features), list(self.classifier)
        return {
            "conv1": f[0:3],
            "conv2": f[3:6],
            "conv3": f[6:8],
            "conv4": f[8:10],
            "conv5": f[10:13],
            "fc6": c[0:3],
            "fc7": c[3:6],
            HEAD_STAGE: c[6:],
        }


@register_model("alexnet", AlexNetConfig)
def alexnet(config: AlexNetConfig) -> AlexNet:
    """AlexNet (torchvision's single-tower variant); 61,100,840 parameters at 3×224×224, 1000 classes."""
    return AlexNet(config, name="alexnet")
