"""ResNet-18/34/50 (He et al. 2016) in torchvision's layout: residual stages of basic or bottleneck blocks.

Each block learns a residual ``F`` on top of a shortcut: ``y = ReLU(F(x) + shortcut(x))`` (see
:class:`dnn.layers.conv.BasicBlock` / :class:`~dnn.layers.conv.Bottleneck`). The network::

    stem    conv1 7×7/2 (64) → bn1 → ReLU → maxpool 3×3/2        224 → 56
    layer1  blocks × n1, 64·e channels                           56
    layer2  blocks × n2, 128·e channels, first block stride 2    28
    layer3  blocks × n3, 256·e channels, first block stride 2    14
    layer4  blocks × n4, 512·e channels, first block stride 2    7
    head    adaptive average pool → flatten → dropout → fc       (B, 512·e) → (B, K)

with ``e = 1`` (basic block; ResNet-18 ``[2, 2, 2, 2]``, ResNet-34 ``[3, 4, 6, 3]``) or ``e = 4`` (bottleneck;
ResNet-50 ``[3, 4, 6, 3]``). Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, …,
``fc``), so its checkpoints load with ``strict=True``; published counts: 11,689,512 / 21,797,672 / 25,557,032.

Small inputs (``image_size < 64`` or ``small_input=True``): the stem is a 3×3 stride-1 conv without max-pool (the
CIFAR ResNet stem), so a 32×32 image reaches layer4 at 4×4 instead of 1×1. ``conv1.weight`` is then
``(64, C, 3, 3)``, which a torchvision checkpoint cannot fill (load it with ``strict=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.layers.conv import BasicBlock, Bottleneck, make_downsample
from dnn.models.cnn_base import (
    HEAD_STAGE,
    ImageClassifier,
    ImageClassifierConfig,
    init_like_torchvision_conv,
)
from dnn.models.registry import register_model

__all__ = ["ResNet", "ResNetConfig", "resnet18", "resnet34", "resnet50"]


@dataclass
class ResNetConfig(ImageClassifierConfig):
    """ResNet config. ``dropout`` (default 0, as published) acts before ``fc``; ``zero_init_residual`` starts
    every block's last BN at weight 0, so each block begins as the identity (Goyal et al. 2017)."""

    zero_init_residual: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.zero_init_residual, bool):
            raise ConfigError(
                f"ResNetConfig: zero_init_residual must be true or false, got {self.zero_init_residual!r}"
            )


class ResNet(ImageClassifier):
    """A ResNet of ``block`` (BasicBlock or Bottleneck) with ``layers[i]`` blocks in stage ``i + 1``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        config: ResNetConfig,
        name: str = "resnet",
    ):
        small = config.resolve_small_input()
        super().__init__(name, config, small)
        self.inplanes = 64
        if small:  # CIFAR stem: keep the resolution
            self.conv1 = nn.Conv2d(config.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:  # ImageNet stem: /4
            self.conv1 = nn.Conv2d(config.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(config.dropout)
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, config.num_classes)
        # 3×3/2 convs with padding 1 (and the 1×1/2 shortcuts) never empty an image: only the stem can.
        path = [] if small else [("conv", 7, 2, 3, False), ("pool", 3, 2, 1, False)]
        self.set_min_input_size(path)

        init_like_torchvision_conv(self)
        if config.zero_init_residual:
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, Bottleneck):
                        nn.init.zeros_(m.bn3.weight)
                    elif isinstance(m, BasicBlock):
                        nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1):
        """``blocks`` blocks; the first one changes the stride/width and gets a projection shortcut if needed."""
        downsample = make_downsample(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → ``(B, 512·e, H_img', W_img')`` (``H_img' = H_img/32``, or ``/8`` small)."""
        self.check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 512·e, H_img', W_img')`` → pool → ``(B, 512·e)`` → dropout → fc → ``(B, K)``."""
        x = torch.flatten(self.avgpool(features), 1)  # (B, 512·e, 1, 1) → (B, 512·e)
        return self.fc(self.dropout(x))

    def stages(self) -> dict[str, list[nn.Module]]:
        return {
            "stem": [self.conv1, self.bn1, self.relu, self.maxpool],
            "layer1": [self.layer1],
            "layer2": [self.layer2],
            "layer3": [self.layer3],
            "layer4": [self.layer4],
            HEAD_STAGE: [self.fc],
        }


@register_model("resnet18", ResNetConfig)
def resnet18(config: ResNetConfig) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters at 3×224×224, 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), config, name="resnet18")


@register_model("resnet34", ResNetConfig)
def resnet34(config: ResNetConfig) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters at 3×224×224, 1000 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), config, name="resnet34")


@register_model("resnet50", ResNetConfig)
def resnet50(config: ResNetConfig) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 25,557,032 parameters at 3×224×224, 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), config, name="resnet50")
