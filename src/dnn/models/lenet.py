"""LeNet-5 (LeCun et al. 1998) in its common modern form.

::

    features    C1 conv 5×5 (6) → act → S2 max-pool 2×2/2        32 → 28 → 14
                C3 conv 5×5 (16) → act → S4 max-pool 2×2/2       14 → 10 → 5
    avgpool     adaptive average pool to 5×5 (the identity at 32×32)
    classifier  C5/F5 fc 400→120 → act · F6 fc 120→84 → act · (dropout) · output fc 84→K

Differences from the paper, all customary: C3 connects to all six S2 maps (the paper's sparse connection table
saved parameters and compute in 1998), S2/S4 are plain max-pools (the paper's sub-sampling had a trainable
coefficient and bias), the activation is ReLU or plain tanh (``activation``), and the output is a linear layer
(the paper used RBF units). 61,706 parameters for 1×32×32 inputs and 10 classes.

Small inputs. LeCun centred the 28×28 MNIST digits in a 32×32 field; likewise, for ``image_size < 32`` (or
``small_input=True``) C1 zero-pads its input by ``ceil((32 − image_size) / 2)`` on each side, so the maps have the
published sizes: 28×28 → padding 2 (the classic MNIST LeNet); scikit-learn's 8×8 digits → padding 12. The padding
is part of C1, so nothing else changes and the parameter count stays 61,706.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.models.cnn_base import HEAD_STAGE, ImageClassifier, ImageClassifierConfig
from dnn.models.registry import register_model

__all__ = ["LeNet5", "LeNet5Config", "lenet5"]

LENET_INPUT = 32  # the side LeNet-5 was designed for


@dataclass
class LeNet5Config(ImageClassifierConfig):
    """LeNet-5 config; the defaults are the published setting (1×32×32 digits, 10 classes). ``dropout`` (default 0)
    acts before the output layer; ``activation`` is ``"relu"`` or ``"tanh"``."""

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = LENET_INPUT
    activation: Literal["relu", "tanh"] = "relu"

    def __post_init__(self):
        super().__post_init__()
        if self.activation not in ("relu", "tanh"):
            raise ConfigError(f"LeNet5Config: activation must be 'relu' or 'tanh', got {self.activation!r}")


class LeNet5(ImageClassifier):
    """LeNet-5 with max-pooling and a full C3; PyTorch's default initialisation."""

    head_path = "classifier.5"

    def __init__(self, config: LeNet5Config, name: str = "lenet5"):
        small = config.resolve_small_input(below=LENET_INPUT)
        super().__init__(name, config, small)
        pad = max(0, -(-(LENET_INPUT - config.image_size) // 2)) if small else 0  # ceil((32 − size) / 2)
        act = nn.ReLU if config.activation == "relu" else nn.Tanh
        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, 6, kernel_size=5, padding=pad),  # C1
            act(),
            nn.MaxPool2d(kernel_size=2, stride=2),  # S2
            nn.Conv2d(6, 16, kernel_size=5),  # C3
            act(),
            nn.MaxPool2d(kernel_size=2, stride=2),  # S4
        )
        self.avgpool = nn.AdaptiveAvgPool2d((5, 5))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),  # C5 (a 5×5 conv over the 5×5 maps is this linear layer)
            act(),
            nn.Linear(120, 84),  # F6
            act(),
            nn.Dropout(config.dropout),
            nn.Linear(84, config.num_classes),  # output
        )
        self.num_features = 16
        path = [
            ("conv", 5, 1, pad, False),
            ("pool", 2, 2, 0, False),
            ("conv", 5, 1, 0, False),
            ("pool", 2, 2, 0, False),
        ]
        self.set_min_input_size(path)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → ``(B, 16, H_img', W_img')`` (5×5 at 32×32 or with the small-input padding)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 16, H_img', W_img')`` → pool to 5×5 → ``(B, 400)`` → C5 → F6 → output ``(B, K)``."""
        if features.shape[-2:] != (5, 5):  # at 5×5 the pool is the identity: skip its copy and its backward
            features = self.avgpool(features)
        x = torch.flatten(features, 1)  # (B, 16, 5, 5) → (B, 400)
        return self.classifier(x)

    def stages(self) -> dict[str, list[nn.Module]]:
        """``conv1`` (C1, S2), ``conv2`` (C3, S4), ``fc1`` (C5), ``fc2`` (F6), ``head`` (output layer)."""
        f, c = list(self.features), list(self.classifier)
        return {"conv1": f[0:3], "conv2": f[3:6], "fc1": c[0:2], "fc2": c[2:5], HEAD_STAGE: c[5:]}


@register_model("lenet5", LeNet5Config)
def lenet5(config: LeNet5Config) -> LeNet5:
    """LeNet-5 (modern form: max-pool, ReLU/tanh, full C3); 61,706 parameters at 1×32×32, 10 classes."""
    return LeNet5(config, name="lenet5")
