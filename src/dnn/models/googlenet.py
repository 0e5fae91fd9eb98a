"""GoogLeNet / Inception v1 (Szegedy et al. 2015) in torchvision's layout, without the auxiliary classifiers.

Inception blocks run 1×1, 3×3 and "5×5" convolutions and a pooled branch side by side and concatenate them (see
:class:`dnn.layers.conv.Inception`; like torchvision, the "5×5" branch is a 3×3 conv)::

    stem        conv1 7×7/2 (64) → max-pool 3×3/2 → conv2 1×1 (64) → conv3 3×3 (192) → max-pool 3×3/2   224 → 28
    inception3  3a (256) → 3b (480) → max-pool 3×3/2                                                  28 → 14
    inception4  4a (512) → 4b (512) → 4c (512) → 4d (528) → 4e (832) → max-pool 2×2/2                 14 → 7
    inception5  5a (832) → 5b (1024)
    head        adaptive average pool → flatten → dropout (0.2) → fc 1024→K

All max-pools use ``ceil_mode`` and every conv is conv → BN (eps 0.001) → ReLU. Parameter names are torchvision's
(``conv1.conv``, ``conv1.bn``, ``inception3a.branch2.1.conv``, …, ``fc``): 6,624,904 parameters. torchvision's
ImageNet checkpoint also holds the auxiliary heads ``aux1.*`` / ``aux2.*`` (13,004,888 parameters in all);
:func:`dnn.transfer.load_pretrained` skips them, and that checkpoint expects ``transform_input=True``.

Small inputs (``image_size < 64`` or ``small_input=True``): conv1 is a 3×3 stride-1 conv, the first max-pool is
dropped and the next two get padding 1 without rounding up, so any image runs (32 → 16 → 8 → 4; 8 → 4 → 2 → 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.layers.conv import BasicConv2d, Inception
from dnn.models.cnn_base import HEAD_STAGE, ImageClassifier, ImageClassifierConfig
from dnn.models.registry import register_model

__all__ = ["GoogLeNet", "GoogLeNetConfig", "googlenet"]


@dataclass
class GoogLeNetConfig(ImageClassifierConfig):
    """GoogLeNet config. ``dropout`` (0.2, as torchvision) acts before ``fc``. ``transform_input`` maps images
    normalised with the ImageNet mean/std to the ``[-1, 1]`` scaling the original weights were trained on
    (``x_c · σ_c / 0.5 + (μ_c − 0.5) / 0.5``); set it when loading torchvision's checkpoint (RGB only)."""

    dropout: float = 0.2
    transform_input: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.transform_input, bool):
            raise ConfigError(f"GoogLeNetConfig: transform_input must be true or false, got {self.transform_input!r}")
        if self.transform_input and self.in_channels != 3:
            raise ConfigError(
                f"GoogLeNetConfig: transform_input needs RGB images (in_channels=3), got in_channels={self.in_channels}"
            )


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class GoogLeNet(ImageClassifier):
    """GoogLeNet without auxiliary heads; torchvision's initialisation (truncated normal, std 0.01)."""

    checkpoint_ignore = ("aux1.", "aux2.")

    def __init__(self, config: GoogLeNetConfig, name: str = "googlenet"):
        small = config.resolve_small_input()
        super().__init__(name, config, small)
        self.transform_input = config.transform_input
        c = config.in_channels
        if small:
            self.conv1 = BasicConv2d(c, 64, kernel_size=3, stride=1, padding=1)
            self.maxpool1: nn.Module = nn.Identity()
            self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
            self.maxpool3 = nn.MaxPool2d(3, stride=2, padding=1)
            path = [("pool", 3, 2, 1, False), ("pool", 3, 2, 1, False), ("pool", 2, 2, 0, True)]
        else:
            self.conv1 = BasicConv2d(c, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            path = [("conv", 7, 2, 3, False)] + [("pool", 3, 2, 0, True)] * 3 + [("pool", 2, 2, 0, True)]
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)

        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(config.dropout)
        self.num_features = 1024
        self.fc = nn.Linear(1024, config.num_classes)
        self.set_min_input_size(path)

        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    @torch.no_grad()
    def init_head(self, linear: nn.Linear) -> None:
        """torchvision's GoogLeNet initialisation: ``W ~ N(0, 0.01²)`` truncated at ±2, and PyTorch's bias."""
        linear.reset_parameters()
        nn.init.trunc_normal_(linear.weight, mean=0.0, std=0.01, a=-2, b=2)

    def _transform_input(self, x: Tensor) -> Tensor:
        """``x_c ← x_c · σ_c / 0.5 + (μ_c − 0.5) / 0.5`` per RGB channel (torchvision's ``transform_input``)."""
        std = x.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        mean = x.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → ``(B, 1024, H_img', W_img')`` (7×7 at 224×224, 4×4 at 32×32 small)."""
        self.check_input(x)
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, 56, 56) at 224
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (B, 480, 14, 14)
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.maxpool4(self.inception4e(x))  # (B, 832, 7, 7)
        return self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 1024, H_img', W_img')`` → pool → ``(B, 1024)`` → dropout → fc → ``(B, K)``."""
        x = torch.flatten(self.avgpool(features), 1)  # (B, 1024, 1, 1) → (B, 1024)
        return self.fc(self.dropout(x))

    def stages(self) -> dict[str, list[nn.Module]]:
        return {
            "stem": [self.conv1, self.maxpool1, self.conv2, self.conv3, self.maxpool2],
            "inception3": [self.inception3a, self.inception3b, self.maxpool3],
            "inception4": [
                self.inception4a,
                self.inception4b,
                self.inception4c,
                self.inception4d,
                self.inception4e,
                self.maxpool4,
            ],
            "inception5": [self.inception5a, self.inception5b],
            HEAD_STAGE: [self.fc],
        }


@register_model("googlenet", GoogLeNetConfig)
def googlenet(config: GoogLeNetConfig) -> GoogLeNet:
    """GoogLeNet without auxiliary heads; 6,624,904 parameters at 3×224×224, 1000 classes."""
    return GoogLeNet(config, name="googlenet")
