"""The convolutional building blocks of the lecture: Conv → BN → activation, ResNet's and GoogLeNet's blocks.

The output-size arithmetic (``W' = floor((W - K_eff + 2P) / S) + 1``) is :mod:`dnn.layers.conv_arithmetic`;
:func:`conv_output_size` and :func:`pool_output_size` are importable from here too.

The blocks keep torchvision's attribute names and parameter shapes exactly, so that a ResNet or GoogLeNet
built from them has the published parameter count and loads a torchvision ``state_dict`` with
``strict=True``:

* :class:`BasicBlock` / :class:`Bottleneck` — ``torchvision.models.resnet`` (v1.5: stride on the 3×3 conv).
* :class:`Inception` / :class:`BasicConv2d` — ``torchvision.models.googlenet``.

Shapes are written ``(B, C, H_img, W_img)``: batch, channels, image height, image width.
"""

from __future__ import annotations

import torch
from torch import nn

from dnn.checks import positive_int
from dnn.errors import ConfigError
from dnn.layers.conv_arithmetic import (  # conv_output_size, pool_output_size re-exported: public path
    IntOrPair,
    conv_output_size,
    int_pair,
    pool_output_size,
)

__all__ = [
    "BasicBlock",
    "BasicConv2d",
    "Bottleneck",
    "ConvBNAct",
    "Inception",
    "conv1x1",
    "conv3x3",
    "conv_output_size",
    "make_downsample",
    "pool_output_size",
]

# ----------------------------------------------------------------------------------------------------
# Conv → BN → activation
# ----------------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def _make_activation(where: str, act: object) -> nn.Module:
    if act is True:
        return nn.ReLU()
    if act is None or act is False:
        return nn.Identity()
    if isinstance(act, str):
        key = act.lower()
        if key not in _ACTIVATIONS:
            raise ConfigError(
                f"{where}: act must be one of {sorted(_ACTIVATIONS)}, True, None or a module, got {act!r}"
            )
        return _ACTIVATIONS[key]()
    if isinstance(act, nn.Module):
        return act
    raise ConfigError(f"{where}: act must be True, False, None, an activation name or an nn.Module, got {act!r}")


class ConvBNAct(nn.Module):
    """Conv2d → BatchNorm2d → activation, the standard CNN unit.

    Computes ``act(BN(W * x))`` with ``W * x`` a 2-D cross-correlation (no bias when ``bn`` is on, since BN's
    shift makes it redundant; with ``bn=False`` the conv has a bias and ``bn`` is an identity).

    Shapes: input ``(B, in_channels, H_img, W_img)`` → output ``(B, out_channels, H_img', W_img')`` with
    ``H_img' = floor((H_img - k + 2p) / stride) + 1`` (see :func:`conv_output_size`). ``padding=None``
    means "same" padding ``k // 2`` (odd kernels only), so ``H_img' = ceil(H_img / stride)``.

    ``act``: ``True``/``"relu"`` → ReLU, ``None``/``False`` → identity, another name from
    ``relu6, leaky_relu, gelu, silu, tanh, sigmoid, identity``, or an ``nn.Module``.
    Submodules: ``conv``, ``bn``, ``act``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair | None = None,
        groups: int = 1,
        act: bool | str | nn.Module | None = True,
        bn: bool = True,
    ):
        super().__init__()
        where = "ConvBNAct"
        positive_int(f"{where}: in_channels", in_channels)
        positive_int(f"{where}: out_channels", out_channels)
        ks, _ = int_pair(where, "kernel_size", kernel_size, 1)
        int_pair(where, "stride", stride, 1)
        positive_int(f"{where}: groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ConfigError(
                f"{where}: groups must divide in_channels and out_channels, got groups={groups} with "
                f"in_channels={in_channels}, out_channels={out_channels}"
            )
        if not isinstance(bn, bool):
            raise ConfigError(f"{where}: bn must be a bool, got {bn!r}")
        if padding is None:
            if ks[0] % 2 == 0 or ks[1] % 2 == 0:
                raise ConfigError(
                    f"{where}: padding=None ('same') needs an odd kernel_size, got {kernel_size!r}; "
                    f"pass padding explicitly"
                )
            padding = (ks[0] // 2, ks[1] // 2) if isinstance(kernel_size, (tuple, list)) else ks[0] // 2
        else:
            int_pair(where, "padding", padding, 0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=not bn
        )
        self.bn = nn.BatchNorm2d(out_channels) if bn else nn.Identity()
        self.act = _make_activation(where, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H_img, W_img)`` → ``(B, out_channels, H_img', W_img')``."""
        return self.act(self.bn(self.conv(x)))


# ----------------------------------------------------------------------------------------------------
# ResNet blocks (torchvision layout and names)
# ----------------------------------------------------------------------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3×3 conv, "same" padding, no bias (torchvision's ``conv3x3``): ``H' = floor((H-1)/stride)+1``."""
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution without bias (torchvision's ``conv1x1``): a per-pixel linear map of the channels."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def make_downsample(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut of a residual block, or ``None`` when the identity shortcut fits.

    Returns ``nn.Sequential(conv1x1(inplanes, outplanes, stride), BatchNorm2d(outplanes))`` (state-dict
    keys ``0.weight``, ``1.weight``, ``1.bias``, ``1.running_mean``, …, as torchvision) when
    ``stride != 1`` or ``inplanes != outplanes``; it maps ``(B, inplanes, H_img, W_img)`` →
    ``(B, outplanes, H_img', W_img')`` with ``H_img' = floor((H_img - 1) / stride) + 1``.
    ``outplanes`` is the block's ``planes * expansion``.
    """
    where = "make_downsample"
    positive_int(f"{where}: inplanes", inplanes)
    positive_int(f"{where}: outplanes", outplanes)
    positive_int(f"{where}: stride", stride)
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))


def _check_downsample(where: str, downsample: object, inplanes: int, outplanes: int, stride: int) -> None:
    if downsample is not None and not isinstance(downsample, nn.Module):
        raise ConfigError(f"{where}: downsample must be None or an nn.Module, got {type(downsample).__name__}")
    if downsample is None and (stride != 1 or inplanes != outplanes):
        raise ConfigError(
            f"{where}: downsample is None but the identity shortcut does not fit (inplanes={inplanes}, "
            f"planes*expansion={outplanes}, stride={stride}); expected "
            f"downsample=make_downsample({inplanes}, {outplanes}, {stride})"
        )


class BasicBlock(nn.Module):
    """ResNet basic block (ResNet-18/34), torchvision's ``BasicBlock``.

    Computes ``y = ReLU(BN2(conv2(ReLU(BN1(conv1(x))))) + shortcut(x))`` with two 3×3 convolutions (the
    first one strided) and ``shortcut = downsample`` if given, else the identity.

    Shapes: input ``(B, inplanes, H_img, W_img)`` → output ``(B, planes, H_img', W_img')`` with
    ``H_img' = floor((H_img - 1) / stride) + 1`` (``expansion = 1``).
    Parameters: ``9·inplanes·planes + 9·planes² + 4·planes``, plus ``inplanes·planes + 2·planes`` for a
    projection shortcut. Submodules: ``conv1``, ``bn1``, ``relu``, ``conv2``, ``bn2``, ``downsample``
    (see :func:`make_downsample`).
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        where = "BasicBlock"
        positive_int(f"{where}: inplanes", inplanes)
        positive_int(f"{where}: planes", planes)
        positive_int(f"{where}: stride", stride)
        _check_downsample(where, downsample, inplanes, planes * self.expansion, stride)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H_img, W_img)`` → ``(B, planes, H_img', W_img')``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet bottleneck block (ResNet-50/101/152), torchvision's ``Bottleneck`` (v1.5: strided 3×3 conv).

    Computes ``y = ReLU(BN3(conv3(ReLU(BN2(conv2(ReLU(BN1(conv1(x)))))))) + shortcut(x))``: a 1×1 conv
    reduces to ``width = int(planes · base_width / 64) · groups`` channels, a (grouped, strided) 3×3 conv
    works there, and a 1×1 conv expands to ``planes · expansion`` channels. ``shortcut = downsample`` if
    given, else the identity.

    Shapes: input ``(B, inplanes, H_img, W_img)`` → output ``(B, 4·planes, H_img', W_img')`` with
    ``H_img' = floor((H_img - 1) / stride) + 1`` (``expansion = 4``).
    Parameters: ``inplanes·width + 9·width²/groups + width·4·planes + 2·(2·width + 4·planes)``.
    Submodules: ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``, ``bn3``, ``relu``, ``downsample``.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        where = "Bottleneck"
        positive_int(f"{where}: inplanes", inplanes)
        positive_int(f"{where}: planes", planes)
        positive_int(f"{where}: stride", stride)
        positive_int(f"{where}: groups", groups)
        positive_int(f"{where}: base_width", base_width)
        width = int(planes * (base_width / 64.0)) * groups
        if width < 1:
            raise ConfigError(
                f"{where}: base_width must give at least one channel, got planes={planes}, "
                f"base_width={base_width} (width = int(planes*base_width/64)*groups = 0)"
            )
        _check_downsample(where, downsample, inplanes, planes * self.expansion, stride)
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H_img, W_img)`` → ``(B, 4·planes, H_img', W_img')``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# ----------------------------------------------------------------------------------------------------
# GoogLeNet inception block (torchvision layout and names)
# ----------------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """GoogLeNet's conv unit, torchvision's ``BasicConv2d``: ``ReLU(BN(conv(x)))``.

    The conv has no bias; BN uses ``eps=0.001``.

    Shapes: ``(B, in_channels, H_img, W_img)`` → ``(B, out_channels, H_img', W_img')`` with
    ``H_img' = floor((H_img - k + 2·padding) / stride) + 1``. Submodules: ``conv``, ``bn``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
    ):
        super().__init__()
        where = "BasicConv2d"
        positive_int(f"{where}: in_channels", in_channels)
        positive_int(f"{where}: out_channels", out_channels)
        int_pair(where, "kernel_size", kernel_size, 1)
        int_pair(where, "stride", stride, 1)
        int_pair(where, "padding", padding, 0)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H_img, W_img)`` → ``(B, out_channels, H_img', W_img')``."""
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """GoogLeNet inception block, torchvision's ``Inception`` (same names: state dicts load strictly).

    Four parallel branches on the same input, concatenated along the channels:

    * ``branch1``: 1×1 conv → ``ch1x1`` channels;
    * ``branch2``: 1×1 conv → ``ch3x3red``, then 3×3 conv (padding 1) → ``ch3x3``;
    * ``branch3``: 1×1 conv → ``ch5x5red``, then a **3×3** conv (padding 1) → ``ch5x5``. The paper uses
      5×5 here; torchvision uses 3×3 (a known quirk, kept for compatibility: torchvision's published
      GoogLeNet count of 6,624,904 parameters and its pretrained weights depend on it);
    * ``branch4``: 3×3 max pool (stride 1, padding 1, ceil_mode) → 1×1 conv → ``pool_proj``.

    Every conv is a :class:`BasicConv2d` (conv + BN + ReLU). All branches keep the spatial size, so
    input ``(B, in_channels, H_img, W_img)`` → output ``(B, out_channels, H_img, W_img)`` with
    ``out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj``.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ):
        super().__init__()
        where = "Inception"
        for name, value in (
            ("in_channels", in_channels),
            ("ch1x1", ch1x1),
            ("ch3x3red", ch3x3red),
            ("ch3x3", ch3x3),
            ("ch5x5red", ch5x5red),
            ("ch5x5", ch5x5),
            ("pool_proj", pool_proj),
        ):
            positive_int(f"{where}: {name}", value, expected="a positive int")
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),  # 3×3, not 5×5: torchvision's layout
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H_img, W_img)`` → ``(B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H_img, W_img)``."""
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        # (B, ch1x1 | ch3x3 | ch5x5 | pool_proj, H_img, W_img) each → (B, out_channels, H_img, W_img)
        return torch.cat(branches, dim=1)
