"""The CNN zoo against torchvision's layout: a torchvision checkpoint must load with ``strict=True`` and compute the
same logits.

torchvision is not installed, so its architectures are written out below as *twins* from its published source
(``torchvision/models/resnet.py``, ``vgg.py``, ``alexnet.py``, ``googlenet.py``): raw ``nn.Conv2d`` /
``nn.BatchNorm2d`` / ``nn.Linear`` under torchvision's attribute names, nothing imported from dnn. Their state
dicts play the part of downloaded checkpoints. Shapes and counts at the published size are compared on the
``meta`` device (no memory); logits are compared on real tensors at small inputs (never 224×224 for VGG/AlexNet).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnn.models import create_model, model_config
from dnn.transfer import load_pretrained

# ----------------------------------------------------------------------------------------------------------
# twins, written from torchvision's source
# ----------------------------------------------------------------------------------------------------------


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: the stride sits on the 3×3
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


VGG_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class TVVGG(nn.Module):
    def __init__(self, cfg, batch_norm, num_classes=1000, width=4096):  # width: 4096 in torchvision
        super().__init__()
        layers, in_channels = [], 3
        for v in VGG_CFGS[cfg]:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                conv = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
                layers += [conv, nn.BatchNorm2d(v), nn.ReLU(True)] if batch_norm else [conv, nn.ReLU(True)]
                in_channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, width),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(width, width),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(width, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TVAlexNet(nn.Module):
    def __init__(self, num_classes=1000, width=4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Linear(256 * 6 * 6, width),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TVBasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class TVInception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = TVBasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            TVBasicConv2d(in_channels, ch3x3red, kernel_size=1),
            TVBasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(  # torchvision's known quirk: 3×3 where the paper has 5×5
            TVBasicConv2d(in_channels, ch5x5red, kernel_size=1),
            TVBasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            TVBasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TVInceptionAux(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = TVBasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)


class TVGoogLeNet(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=False):
        super().__init__()
        self.conv1 = TVBasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = TVBasicConv2d(64, 64, kernel_size=1)
        self.conv3 = TVBasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = TVInception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = TVInception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = TVInception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = TVInception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = TVInception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = TVInception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = TVInception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = TVInception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = TVInception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = TVInceptionAux(512, num_classes)
            self.aux2 = TVInceptionAux(528, num_classes)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):  # eval mode, no auxiliary outputs
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


TWINS = {
    "resnet18": lambda **kw: TVResNet(TVBasicBlock, [2, 2, 2, 2], **kw),
    "resnet34": lambda **kw: TVResNet(TVBasicBlock, [3, 4, 6, 3], **kw),
    "resnet50": lambda **kw: TVResNet(TVBottleneck, [3, 4, 6, 3], **kw),
    "vgg11": lambda **kw: TVVGG("A", False, **kw),
    "vgg16": lambda **kw: TVVGG("D", False, **kw),
    "vgg16_bn": lambda **kw: TVVGG("D", True, **kw),
    "alexnet": lambda **kw: TVAlexNet(**kw),
    "googlenet": lambda **kw: TVGoogLeNet(**kw),
}


def on_meta(build, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build(*args, **kwargs)


def layout(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


# ----------------------------------------------------------------------------------------------------------
# the twins themselves: published counts and literal keys, so that a wrong twin cannot pass
# ----------------------------------------------------------------------------------------------------------

TORCHVISION_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "alexnet": 61_100_840,
    "googlenet": 6_624_904,
}

VGG16_LAYOUT = [  # torchvision vgg16().state_dict(), written out
    *[
        (f"features.{i}.{p}", shape)
        for i, cin, cout in [
            (0, 3, 64),
            (2, 64, 64),
            (5, 64, 128),
            (7, 128, 128),
            (10, 128, 256),
            (12, 256, 256),
            (14, 256, 256),
            (17, 256, 512),
            (19, 512, 512),
            (21, 512, 512),
            (24, 512, 512),
            (26, 512, 512),
            (28, 512, 512),
        ]
        for p, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,)))
    ],
    ("classifier.0.weight", (4096, 25088)),
    ("classifier.0.bias", (4096,)),
    ("classifier.3.weight", (4096, 4096)),
    ("classifier.3.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)),
    ("classifier.6.bias", (1000,)),
]

RESNET18_SAMPLE = {  # a few entries of torchvision resnet18().state_dict() (122 entries in all)
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_var": (64,),
    "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_mean": (128,),
    "layer4.1.bn2.weight": (512,),
    "fc.weight": (1000, 512),
    "fc.bias": (1000,),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_twin_has_torchvisions_published_count(name):
    twin = on_meta(TWINS[name])
    assert sum(p.numel() for p in twin.parameters()) == TORCHVISION_COUNTS[name]


def test_twins_match_literal_torchvision_keys():
    assert layout(on_meta(TWINS["vgg16"])) == VGG16_LAYOUT
    resnet18 = dict(layout(on_meta(TWINS["resnet18"])))
    assert len(resnet18) == 122
    assert {k: resnet18[k] for k in RESNET18_SAMPLE} == RESNET18_SAMPLE
    googlenet_aux = on_meta(TVGoogLeNet, aux_logits=True)
    assert sum(p.numel() for p in googlenet_aux.parameters()) == 13_004_888  # torchvision, with auxiliary heads


# ----------------------------------------------------------------------------------------------------------
# dnn against the twins
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TWINS))
def test_state_dict_keys_and_shapes_equal_torchvisions(name):
    ours = on_meta(create_model, name, model_config(name))
    twin = on_meta(TWINS[name])
    assert layout(ours) == layout(twin)  # same names, same shapes, same order
    ours.load_state_dict(twin.state_dict(), strict=True)
    assert load_pretrained(ours, twin.state_dict(), strict=True, skip_head=False).missing == ()


def test_torchvision_googlenet_checkpoint_with_auxiliary_heads_loads_strictly():
    ours = on_meta(create_model, "googlenet", model_config("googlenet"))
    result = load_pretrained(ours, on_meta(TVGoogLeNet, aux_logits=True).state_dict(), strict=True)
    assert result.missing == () and result.unexpected == ()
    assert result.skipped and all(k.startswith(("aux1.", "aux2.")) for k in result.skipped)


def randomise_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN parameters and running statistics, so that eval-mode logits depend on them."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(1 + 0.1 * torch.rand(n, generator=generator))


LOGIT_CASES = [  # (name, kwargs shared by twin and dnn, image side)
    pytest.param("resnet18", {}, 64, id="resnet18"),
    pytest.param("resnet50", {}, 64, id="resnet50"),
    pytest.param("googlenet", {}, 64, id="googlenet"),
    pytest.param("alexnet", {"width": 256}, 63, id="alexnet-narrow-fc"),
    pytest.param("vgg16_bn", {"width": 256}, 32, id="vgg16_bn-narrow-fc"),
    pytest.param("vgg16", {}, 32, id="vgg16-published"),
    pytest.param("alexnet", {}, 63, id="alexnet-published"),
]


@pytest.mark.parametrize("name,kwargs,side", LOGIT_CASES)
def test_a_torchvision_checkpoint_loads_strictly_and_gives_the_same_logits(name, kwargs, side):
    torch.manual_seed(0)
    twin = TWINS[name](**kwargs).eval()
    randomise_batchnorm(twin, torch.Generator().manual_seed(1))
    config = {"hidden_size": kwargs["width"]} if "width" in kwargs else {}
    ours = create_model(name, model_config(name, **config)).eval()  # image_size=224: the ImageNet stem, as torchvision
    ours.load_state_dict(twin.state_dict(), strict=True)
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = twin(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)
        assert expected.std() > 0
