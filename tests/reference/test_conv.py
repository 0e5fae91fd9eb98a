"""Reference tests of dnn.layers.conv: output sizes against torch, blocks against torchvision's layout.

torchvision is not installed, so its layout is written out here from raw ``nn.Conv2d`` / ``nn.BatchNorm2d``
(the twin modules below) and its published parameter counts are checked on networks assembled from our
blocks exactly as ``torchvision.models.resnet`` / ``googlenet`` assemble theirs.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dnn.errors import ConfigError
from dnn.layers.conv import (
    BasicBlock,
    BasicConv2d,
    Bottleneck,
    ConvBNAct,
    Inception,
    conv_output_size,
    make_downsample,
    pool_output_size,
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------
# conv_output_size / pool_output_size against torch
# ----------------------------------------------------------------------------------------------------------

SIZES = range(1, 21)
KERNELS = range(1, 6)
STRIDES = range(1, 4)


def _torch_conv_size(size: int, k: int, s: int, p: int, d: int) -> int | None:
    """Height of F.conv2d's output for a (1, 1, size, 1) input, or None if torch refuses."""
    x = torch.zeros(1, 1, size, 1)
    w = torch.zeros(1, 1, k, 1)
    try:
        return F.conv2d(x, w, stride=(s, 1), padding=(p, 0), dilation=(d, 1)).shape[2]
    except RuntimeError:
        return None


def _torch_pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int | None:
    """Height of F.max_pool2d's output for a (1, 1, size, 1) input, or None if torch refuses."""
    x = torch.zeros(1, 1, size, 1)
    try:
        out = F.max_pool2d(x, kernel_size=(k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1), ceil_mode=ceil_mode)
    except RuntimeError:
        return None
    return out.shape[2]


@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_output_size_matches_torch_conv2d_on_grid(dilation: int) -> None:
    mismatches = []
    n_refused = 0
    for size, k, s, p in itertools.product(SIZES, KERNELS, STRIDES, range(3)):
        expected = _torch_conv_size(size, k, s, p, dilation)
        if expected is None:
            n_refused += 1
            with pytest.raises(ConfigError, match="too small for this kernel"):
                conv_output_size(size, k, s, p, dilation)
            continue
        got = conv_output_size(size, k, stride=s, padding=p, dilation=dilation)
        if got != expected:
            mismatches.append((size, k, s, p, dilation, got, expected))
    assert not mismatches
    assert n_refused > 0  # the grid does reach inputs that are too small


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dilation", [1, 2])
def test_pool_output_size_matches_torch_maxpool2d_on_grid(dilation: int, ceil_mode: bool) -> None:
    mismatches = []
    n_refused = 0
    for size, k, s in itertools.product(SIZES, KERNELS, STRIDES):
        for p in range(k // 2 + 1):  # torch requires padding <= kernel_size // 2
            expected = _torch_pool_size(size, k, s, p, dilation, ceil_mode)
            if expected is None:
                n_refused += 1
                with pytest.raises(ConfigError, match="too small for this kernel"):
                    pool_output_size(size, k, s, p, dilation, ceil_mode)
                continue
            got = pool_output_size(size, k, stride=s, padding=p, dilation=dilation, ceil_mode=ceil_mode)
            if got != expected:
                mismatches.append((size, k, s, p, dilation, ceil_mode, got, expected))
    assert not mismatches
    assert n_refused > 0


def test_pool_output_size_ceil_mode_drops_window_starting_in_right_padding() -> None:
    # size 5, k 2, s 2, p 1: ceil((5+2-2)/2)+1 = 4 windows; in padded coordinates (0..6) the last one starts
    # at (4-1)*2 = 6 >= size + left padding = 6, i.e. in the right padding: torch drops it.
    assert pool_output_size(5, 2, 2, 1, ceil_mode=True) == _torch_pool_size(5, 2, 2, 1, 1, True) == 3
    # ceil_mode adds a partial window at the end when one starts inside the input
    assert pool_output_size(6, 3, 2, ceil_mode=False) == 2
    assert pool_output_size(6, 3, 2, ceil_mode=True) == _torch_pool_size(6, 3, 2, 0, 1, True) == 3


def test_pool_output_size_stride_defaults_to_kernel() -> None:
    for size, k in itertools.product(SIZES, KERNELS):
        for ceil_mode in (False, True):
            if size < k:
                continue
            expected = nn.MaxPool2d(k, ceil_mode=ceil_mode)(torch.zeros(1, 1, size, size)).shape[2:]
            assert pool_output_size(size, k, ceil_mode=ceil_mode) == expected[0]
            assert pool_output_size((size, size), k, ceil_mode=ceil_mode) == tuple(expected)


def test_pool_padding_above_half_kernel_raises_like_torch() -> None:
    for k, s in itertools.product(KERNELS, STRIDES):
        p = k // 2 + 1
        assert _torch_pool_size(20, k, s, p, 1, False) is None
        with pytest.raises(ConfigError, match="padding"):
            pool_output_size(20, k, s, p)


def test_output_size_doc_examples() -> None:
    # lecture examples: 32x32 image, 5x5 kernel, no padding -> 28; "same" 3x3 -> 32; stride 2 halves
    assert conv_output_size(32, 5) == 28
    assert conv_output_size(32, 3, padding=1) == 32
    assert conv_output_size(32, 3, stride=2, padding=1) == 16
    assert conv_output_size(224, 7, stride=2, padding=3) == 112  # ResNet stem
    assert conv_output_size(7, 3, dilation=2) == 3  # K_eff = 5
    assert pool_output_size(112, 3, stride=2, padding=1) == 56  # ResNet max pool
    assert pool_output_size(112, 3, stride=2, ceil_mode=True) == 56  # GoogLeNet max pool
    assert conv_output_size((224, 160), 7, stride=2, padding=3) == (112, 80)


pair_or_int = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    kernel=pair_or_int,
    stride=st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    padding=st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    dilation=st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))),
)
def test_conv_output_size_tuples_match_conv2d(h, w, kernel, stride, padding, dilation) -> None:
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    try:
        expected = tuple(conv(torch.zeros(1, 1, h, w)).shape[2:])
    except RuntimeError:
        with pytest.raises(ConfigError, match="too small"):
            conv_output_size((h, w), kernel, stride, padding, dilation)
        return
    assert conv_output_size((h, w), kernel, stride, padding, dilation) == expected
    args = (kernel, stride, padding, dilation)
    if h == w:  # an int size with a pair among the other arguments still gives a pair; all ints give an int
        as_pair = any(isinstance(a, tuple) for a in args)
        assert conv_output_size(h, *args) == (expected if as_pair else expected[0])


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    ceil_mode=st.booleans(),
    data=st.data(),
)
def test_pool_output_size_tuples_match_maxpool2d(h, w, kh, kw, stride, ceil_mode, data) -> None:
    padding = (data.draw(st.integers(0, kh // 2)), data.draw(st.integers(0, kw // 2)))
    pool = nn.MaxPool2d((kh, kw), stride=stride, padding=padding, ceil_mode=ceil_mode)
    try:
        expected = tuple(pool(torch.zeros(1, 1, h, w)).shape[2:])
    except RuntimeError:
        with pytest.raises(ConfigError, match="too small"):
            pool_output_size((h, w), (kh, kw), stride, padding, ceil_mode=ceil_mode)
        return
    assert pool_output_size((h, w), (kh, kw), stride, padding, ceil_mode=ceil_mode) == expected


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"size": 8, "kernel_size": 0}, "kernel_size"),
        ({"size": 8, "kernel_size": 3, "stride": 0}, "stride"),
        ({"size": 8, "kernel_size": 3, "stride": -1}, "stride"),
        ({"size": 8, "kernel_size": 3, "padding": -1}, "padding"),
        ({"size": 8, "kernel_size": 3, "dilation": 0}, "dilation"),
        ({"size": 0, "kernel_size": 3}, "size"),
        ({"size": 8, "kernel_size": 2.5}, "kernel_size"),
        ({"size": 8, "kernel_size": True}, "kernel_size"),
        ({"size": (8, 8, 8), "kernel_size": 3}, "size"),
        ({"size": (8, 8), "kernel_size": (3, 0)}, "kernel_size"),
        ({"size": 2, "kernel_size": 5}, "too small for this kernel"),
        ({"size": (9, 2), "kernel_size": 3}, r"too small for this kernel: size\[1\]"),
        ({"size": 4, "kernel_size": 3, "dilation": 2}, "too small for this kernel"),
    ],
)
def test_output_size_bad_arguments_raise_config_error(kwargs: dict, name: str) -> None:
    for fn in (conv_output_size, pool_output_size):
        with pytest.raises(ConfigError, match=name) as info:
            fn(**kwargs)
        message = str(info.value)
        assert "\n" not in message
        assert "got" in message or "too small" in message


def test_pool_output_size_bad_ceil_mode() -> None:
    with pytest.raises(ConfigError, match="ceil_mode"):
        pool_output_size(8, 2, ceil_mode="yes")


# ----------------------------------------------------------------------------------------------------------
# ConvBNAct
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_conv_bn_act_same_padding_shapes(stride: int, kernel_size: int) -> None:
    block = ConvBNAct(3, 8, kernel_size, stride=stride)
    x = torch.randn(2, 3, 17, 12)
    y = block(x)
    # "same" padding: H' = ceil(H / stride)
    assert y.shape == (2, 8, -(-17 // stride), -(-12 // stride))
    assert tuple(y.shape[2:]) == conv_output_size((17, 12), kernel_size, stride, kernel_size // 2)
    assert (y >= 0).all()  # ReLU by default


def test_conv_bn_act_layout_and_parameter_counts() -> None:
    block = ConvBNAct(3, 16, 3)
    assert isinstance(block.conv, nn.Conv2d) and block.conv.bias is None
    assert isinstance(block.bn, nn.BatchNorm2d) and isinstance(block.act, nn.ReLU)
    assert sorted(block.state_dict()) == [
        "bn.bias",
        "bn.num_batches_tracked",
        "bn.running_mean",
        "bn.running_var",
        "bn.weight",
        "conv.weight",
    ]
    assert n_params(block) == 3 * 16 * 9 + 2 * 16 == 464
    no_bn = ConvBNAct(3, 16, 3, bn=False, act=None)
    assert n_params(no_bn) == 3 * 16 * 9 + 16 == 448  # conv bias instead of BN's affine
    assert isinstance(no_bn.bn, nn.Identity) and isinstance(no_bn.act, nn.Identity)
    grouped = ConvBNAct(16, 32, 3, groups=4)
    assert n_params(grouped) == (16 // 4) * 32 * 9 + 2 * 32 == 1216
    assert ConvBNAct(4, 4, (3, 5)).conv.padding == (1, 2)
    assert ConvBNAct(4, 4, 4, padding=1)(torch.randn(1, 4, 8, 8)).shape == (1, 4, 7, 7)


def test_conv_bn_act_activations() -> None:
    x = torch.randn(2, 3, 6, 6)
    for act, cls in [
        (True, nn.ReLU),
        ("relu", nn.ReLU),
        ("GELU", nn.GELU),
        ("silu", nn.SiLU),
        (False, nn.Identity),
    ]:
        assert isinstance(ConvBNAct(3, 4, 3, act=act).act, cls)
    custom = nn.Tanh()
    block = ConvBNAct(3, 4, 3, act=custom)
    assert block.act is custom
    assert block(x).abs().max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"in_channels": 0, "out_channels": 4, "kernel_size": 3}, "in_channels"),
        ({"in_channels": 3, "out_channels": -1, "kernel_size": 3}, "out_channels"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 0}, "kernel_size"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 0}, "stride"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": -1}, "padding"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 4}, "padding=None"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}, "groups"),
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 3, "groups": 0}, "groups"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "act": "swishy"}, "act"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "act": 3}, "act"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "bn": "yes"}, "bn"),
    ],
)
def test_conv_bn_act_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=f"ConvBNAct: {name}") as info:
        ConvBNAct(**kwargs)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------------
# ResNet blocks: shapes, parameter counts, torchvision layout
# ----------------------------------------------------------------------------------------------------------


def basic_block_params(inplanes: int, planes: int, shortcut: bool) -> int:
    """Closed form: two 3x3 convs without bias, two BNs (weight+bias), optional 1x1 projection + BN."""
    n = 9 * inplanes * planes + 9 * planes * planes + 4 * planes
    return n + (inplanes * planes + 2 * planes if shortcut else 0)


def bottleneck_params(inplanes: int, planes: int, shortcut: bool, groups: int = 1, base_width: int = 64) -> int:
    """Closed form: 1x1 reduce, grouped 3x3, 1x1 expand (x4), three BNs, optional projection + BN."""
    width = int(planes * base_width / 64) * groups
    out = 4 * planes
    n = inplanes * width + 9 * width * width // groups + width * out + 2 * (2 * width + out)
    return n + (inplanes * out + 2 * out if shortcut else 0)


def test_block_parameter_counts_by_hand() -> None:
    assert n_params(BasicBlock(64, 64)) == 2 * (64 * 64 * 9) + 4 * 64 == 73_984
    # ResNet-18 layer2.0: 64 -> 128, stride 2, projection shortcut
    block = BasicBlock(64, 128, 2, make_downsample(64, 128, 2))
    assert n_params(block) == 64 * 128 * 9 + 128 * 128 * 9 + 4 * 128 + (64 * 128 + 2 * 128) == 230_144
    # ResNet-50 layer1.0: 64 -> 256 with a stride-1 projection (channels change)
    block = Bottleneck(64, 64, 1, make_downsample(64, 256, 1))
    by_hand = 64 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * (64 + 64 + 256) + (64 * 256 + 2 * 256)
    assert n_params(block) == by_hand == 75_008
    assert n_params(Bottleneck(256, 64)) == 256 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * (64 + 64 + 256) == 70_400


@pytest.mark.parametrize(
    ("inplanes", "planes", "stride"),
    [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2), (32, 48, 1), (16, 16, 3)],
)
def test_basic_block_closed_form_count(inplanes: int, planes: int, stride: int) -> None:
    downsample = make_downsample(inplanes, planes, stride)
    block = BasicBlock(inplanes, planes, stride, downsample)
    assert n_params(block) == basic_block_params(inplanes, planes, downsample is not None)


@pytest.mark.parametrize(
    ("inplanes", "planes", "stride", "groups", "base_width"),
    [
        (64, 64, 1, 1, 64),
        (256, 64, 1, 1, 64),
        (256, 128, 2, 1, 64),
        (1024, 512, 2, 1, 64),
        (256, 128, 2, 32, 4),  # ResNeXt-50 32x4d layer2.0
        (256, 64, 1, 1, 128),  # Wide ResNet-50-2 layer1.1
    ],
)
def test_bottleneck_closed_form_count(inplanes, planes, stride, groups, base_width) -> None:
    downsample = make_downsample(inplanes, planes * Bottleneck.expansion, stride)
    block = Bottleneck(inplanes, planes, stride, downsample, groups=groups, base_width=base_width)
    expected = bottleneck_params(inplanes, planes, downsample is not None, groups, base_width)
    assert n_params(block) == expected
    assert block.width == int(planes * base_width / 64) * groups


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [7, 8])
def test_residual_block_shapes(stride: int, size: int) -> None:
    x = torch.randn(2, 16, size, size + 3)
    h, w = conv_output_size((size, size + 3), 3, stride, 1)
    basic = BasicBlock(16, 24, stride, make_downsample(16, 24, stride))
    assert basic(x).shape == (2, 24, h, w)
    bottleneck = Bottleneck(16, 8, stride, make_downsample(16, 32, stride))
    assert bottleneck(x).shape == (2, 32, h, w)
    if stride == 1:
        assert BasicBlock(16, 16)(x).shape == x.shape
        assert Bottleneck(16, 4)(x).shape == x.shape


def test_bottleneck_stride_is_on_the_3x3_conv() -> None:
    block = Bottleneck(64, 32, 2, make_downsample(64, 128, 2))
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2) and block.conv3.stride == (1, 1)
    assert block.downsample[0].stride == (2, 2)


def test_make_downsample() -> None:
    assert make_downsample(64, 64, 1) is None
    ds = make_downsample(64, 256, 1)
    assert isinstance(ds, nn.Sequential) and len(ds) == 2
    assert ds[0].weight.shape == (256, 64, 1, 1) and ds[0].bias is None
    assert sorted(ds.state_dict()) == [
        "0.weight",
        "1.bias",
        "1.num_batches_tracked",
        "1.running_mean",
        "1.running_var",
        "1.weight",
    ]
    assert make_downsample(64, 64, 2)[0].stride == (2, 2)
    with pytest.raises(ConfigError, match="make_downsample: stride"):
        make_downsample(64, 64, 0)


def test_residual_block_state_dict_keys() -> None:
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight", *(f"bn1.{k}" for k in bn), "conv2.weight", *(f"bn2.{k}" for k in bn)]
    ds = ["downsample.0.weight", *(f"downsample.1.{k}" for k in bn)]
    assert list(BasicBlock(8, 8).state_dict()) == keys
    assert list(BasicBlock(8, 16, 2, make_downsample(8, 16, 2)).state_dict()) == keys + ds
    keys3 = keys + ["conv3.weight", *(f"bn3.{k}" for k in bn)]
    assert list(Bottleneck(16, 4).state_dict()) == keys3
    assert list(Bottleneck(8, 4, 2, make_downsample(8, 16, 2)).state_dict()) == keys3 + ds
    assert BasicBlock.expansion == 1 and Bottleneck.expansion == 4


class TorchvisionBasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, written out from raw layers (torchvision is not installed)."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TorchvisionBottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck (v1.5), written out from raw layers."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def _randomize_bn(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so that eval mode is a real test."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=generator))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))


def _compare_with_twin(ours: nn.Module, twin: nn.Module, in_channels: int, train: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    _randomize_bn(twin, generator)
    ours.load_state_dict(twin.state_dict(), strict=True)
    ours.train(train)
    twin.train(train)
    x = torch.randn(3, in_channels, 9, 10, generator=generator)
    x_ours = x.clone().requires_grad_(True)
    x_twin = x.clone().requires_grad_(True)
    y_ours, y_twin = ours(x_ours), twin(x_twin)
    torch.testing.assert_close(y_ours, y_twin, rtol=0, atol=1e-6)
    weight = torch.randn(y_twin.shape, generator=generator)
    (y_ours * weight).sum().backward()
    (y_twin * weight).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_twin.grad, rtol=0, atol=1e-5)
    twin_params = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, twin_params[name].grad, rtol=0, atol=1e-4, msg=name)
    twin_state = twin.state_dict()
    for name, value in ours.state_dict().items():  # running statistics update identically in train mode
        torch.testing.assert_close(value, twin_state[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("inplanes", "planes", "stride"), [(8, 8, 1), (8, 16, 2), (8, 12, 1)])
def test_basic_block_matches_torchvision_twin(inplanes: int, planes: int, stride: int, train: bool) -> None:
    torch.manual_seed(1)
    twin = TorchvisionBasicBlock(inplanes, planes, stride)
    ours = BasicBlock(inplanes, planes, stride, make_downsample(inplanes, planes, stride))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}
    _compare_with_twin(ours, twin, inplanes, train)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("inplanes", "planes", "stride"), [(16, 4, 1), (8, 4, 2)])
def test_bottleneck_matches_torchvision_twin(inplanes: int, planes: int, stride: int, train: bool) -> None:
    torch.manual_seed(2)
    twin = TorchvisionBottleneck(inplanes, planes, stride)
    ours = Bottleneck(inplanes, planes, stride, make_downsample(inplanes, planes * 4, stride))
    _compare_with_twin(ours, twin, inplanes, train)


def _resnet_parameter_count(block: type[nn.Module], layers: list[int]) -> int:
    """Assemble torchvision's ResNet from our blocks (as torchvision's _make_layer does) and count."""
    modules: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)]
    inplanes = 64
    for i, (planes, n_blocks) in enumerate(zip([64, 128, 256, 512], layers, strict=True)):
        stride = 1 if i == 0 else 2
        modules.append(block(inplanes, planes, stride, make_downsample(inplanes, planes * block.expansion, stride)))
        inplanes = planes * block.expansion
        modules.extend(block(inplanes, planes) for _ in range(1, n_blocks))
    modules.append(nn.Linear(512 * block.expansion, 1000))
    return n_params(nn.ModuleList(modules))


def test_resnets_assembled_from_blocks_hit_published_counts() -> None:
    assert _resnet_parameter_count(BasicBlock, [2, 2, 2, 2]) == 11_689_512  # ResNet-18
    assert _resnet_parameter_count(BasicBlock, [3, 4, 6, 3]) == 21_797_672  # ResNet-34
    assert _resnet_parameter_count(Bottleneck, [3, 4, 6, 3]) == 25_557_032  # ResNet-50


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (BasicBlock, {"inplanes": 0, "planes": 4}, "inplanes"),
        (BasicBlock, {"inplanes": 4, "planes": 0}, "planes"),
        (BasicBlock, {"inplanes": 4, "planes": 4, "stride": 0}, "stride"),
        (BasicBlock, {"inplanes": 4, "planes": 8}, "downsample"),
        (BasicBlock, {"inplanes": 4, "planes": 4, "stride": 2}, "downsample"),
        (BasicBlock, {"inplanes": 4, "planes": 4, "downsample": "yes"}, "downsample"),
        (Bottleneck, {"inplanes": 16, "planes": 4, "groups": 0}, "groups"),
        (Bottleneck, {"inplanes": 16, "planes": 4, "base_width": 0}, "base_width"),
        (Bottleneck, {"inplanes": 16, "planes": 4, "base_width": 8}, "base_width"),
        (Bottleneck, {"inplanes": 16, "planes": 8}, "downsample"),
        (Bottleneck, {"inplanes": 16, "planes": 4.0}, "planes"),
    ],
)
def test_residual_block_bad_arguments(cls: type, kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=f"{cls.__name__}: {name}") as info:
        cls(**kwargs)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------------
# Inception
# ----------------------------------------------------------------------------------------------------------


def basic_conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout


def inception_params(cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) -> int:
    """Closed form with torchvision's 3x3 (not 5x5) conv in branch3."""
    return (
        basic_conv_params(cin, ch1x1, 1)
        + basic_conv_params(cin, ch3x3red, 1)
        + basic_conv_params(ch3x3red, ch3x3, 3)
        + basic_conv_params(cin, ch5x5red, 1)
        + basic_conv_params(ch5x5red, ch5x5, 3)
        + basic_conv_params(cin, pool_proj, 1)
    )


GOOGLENET_INCEPTIONS = [
    (192, 64, 96, 128, 16, 32, 32),  # 3a
    (256, 128, 128, 192, 32, 96, 64),  # 3b
    (480, 192, 96, 208, 16, 48, 64),  # 4a
    (512, 160, 112, 224, 24, 64, 64),  # 4b
    (512, 128, 128, 256, 24, 64, 64),  # 4c
    (512, 112, 144, 288, 32, 64, 64),  # 4d
    (528, 256, 160, 320, 32, 128, 128),  # 4e
    (832, 256, 160, 320, 32, 128, 128),  # 5a
    (832, 384, 192, 384, 48, 128, 128),  # 5b
]


def test_inception_3a_parameter_count_by_hand() -> None:
    block = Inception(192, 64, 96, 128, 16, 32, 32)
    branch1 = 192 * 64 + 2 * 64
    branch2 = (192 * 96 + 2 * 96) + (96 * 128 * 9 + 2 * 128)
    branch3 = (192 * 16 + 2 * 16) + (16 * 32 * 9 + 2 * 32)  # 3x3, as torchvision
    branch4 = 192 * 32 + 2 * 32
    assert n_params(block) == branch1 + branch2 + branch3 + branch4 == 155_872
    assert block.branch3[1].conv.weight.shape == (32, 16, 3, 3)  # the torchvision quirk
    assert block.out_channels == 64 + 128 + 32 + 32 == 256


@pytest.mark.parametrize("config", GOOGLENET_INCEPTIONS)
def test_inception_closed_form_count_and_shape(config: tuple[int, ...]) -> None:
    block = Inception(*config)
    assert n_params(block) == inception_params(*config)
    cin, ch1x1, _, ch3x3, _, ch5x5, pool_proj = config
    assert block.out_channels == ch1x1 + ch3x3 + ch5x5 + pool_proj
    if cin <= 256:  # keep the forward passes cheap
        for size in (7, 6, 1):
            assert block.eval()(torch.randn(1, cin, size, size + 1)).shape == (
                1,
                block.out_channels,
                size,
                size + 1,
            )


def test_inception_branches_concatenate_in_order() -> None:
    torch.manual_seed(3)
    block = Inception(8, 2, 3, 4, 2, 5, 6).eval()
    x = torch.randn(2, 8, 5, 5)
    y = block(x)
    assert y.shape == (2, 17, 5, 5)
    torch.testing.assert_close(y[:, :2], block.branch1(x))
    torch.testing.assert_close(y[:, 2:6], block.branch2(x))
    torch.testing.assert_close(y[:, 6:11], block.branch3(x))
    torch.testing.assert_close(y[:, 11:], block.branch4(x))


def test_inception_state_dict_keys_and_basic_conv2d_layout() -> None:
    keys = list(Inception(8, 2, 3, 4, 2, 5, 6).state_dict())
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]

    def unit(prefix: str) -> list[str]:
        return [f"{prefix}.conv.weight", *(f"{prefix}.bn.{k}" for k in bn)]

    expected = unit("branch1") + unit("branch2.0") + unit("branch2.1") + unit("branch3.0") + unit("branch3.1")
    assert keys == expected + unit("branch4.1")  # branch4.0 is the parameter-free max pool
    unit_module = BasicConv2d(3, 4, kernel_size=3, stride=2, padding=1)
    assert unit_module.conv.bias is None and unit_module.bn.eps == 0.001
    assert unit_module(torch.randn(1, 3, 9, 9)).shape == (1, 4, 5, 5)


def test_googlenet_assembled_from_inceptions_hits_published_count() -> None:
    stem = [
        BasicConv2d(3, 64, 7, stride=2, padding=3),
        BasicConv2d(64, 64, 1),
        BasicConv2d(64, 192, 3, padding=1),
    ]
    body = [Inception(*config) for config in GOOGLENET_INCEPTIONS]
    fc = nn.Linear(1024, 1000)
    assert n_params(nn.ModuleList([*stem, *body, fc])) == 6_624_904


@pytest.mark.parametrize("name", ["in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"])
def test_inception_bad_arguments(name: str) -> None:
    kwargs = dict(
        zip(
            ["in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"],
            [8] * 7,
            strict=True,
        )
    )
    kwargs[name] = 0
    with pytest.raises(ConfigError, match=f"Inception: {name} must be a positive int, got 0"):
        Inception(**kwargs)
