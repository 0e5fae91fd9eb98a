"""The CNN zoo: every registered CNN builds, runs forward and backward on small inputs, has its published parameter
count, names its stages, swaps its head, and rejects bad configs and inputs with a ConfigError naming the field.

VGG and AlexNet are built with ``hidden_size=64`` (narrow fc6/fc7) wherever the test is not about the published
head: their 100M-weight classifiers take seconds to initialise and add nothing to what is tested. Parameter counts
at the published configuration are taken on the ``meta`` device (shapes only, no memory, no forward pass).
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from dnn.errors import ConfigError
from dnn.models import create_model, list_models, model_config
from dnn.models.cnn import CNN_NAMES

MODELS = [n for n in list_models() if n in CNN_NAMES]

PUBLISHED = {  # torchvision's counts at 3×224×224 / 1000 classes; LeNet-5 at 1×32×32 / 10 classes
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
}

STAGES = {
    "lenet5": ["conv1", "conv2", "fc1", "fc2", "head"],
    "alexnet": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head"],
    "vgg11": ["block1", "block2", "block3", "block4", "block5", "fc6", "fc7", "head"],
    "vgg16": ["block1", "block2", "block3", "block4", "block5", "fc6", "fc7", "head"],
    "vgg16_bn": ["block1", "block2", "block3", "block4", "block5", "fc6", "fc7", "head"],
    "googlenet": ["stem", "inception3", "inception4", "inception5", "head"],
    "resnet18": ["stem", "layer1", "layer2", "layer3", "layer4", "head"],
    "resnet34": ["stem", "layer1", "layer2", "layer3", "layer4", "head"],
    "resnet50": ["stem", "layer1", "layer2", "layer3", "layer4", "head"],
}


def narrow(name: str) -> dict:
    return {"hidden_size": 64} if name.startswith(("vgg", "alexnet")) else {}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(name: str, **config) -> nn.Module:
    """The model built on the meta device: shapes and structure only, no memory, no initialisation."""
    with torch.device("meta"):
        return create_model(name, model_config(name, **config))


@functools.cache
def _built(name: str, small: bool) -> nn.Module:
    torch.manual_seed(0)
    size = {"image_size": 8} if small else {"small_input": False}
    return create_model(name, model_config(name, num_classes=10, in_channels=1, **size, **narrow(name)))


def digits_model(name: str, small: bool = True) -> nn.Module:
    """A fresh copy of ``name`` for 1-channel images and 10 classes (built once per test session: copying is
    much faster than initialising); ``small=True`` means ``image_size=8``, else the published stem."""
    return copy.deepcopy(_built(name, small))


@pytest.fixture(scope="module", autouse=True)
def _free_cached_models():
    yield
    _built.cache_clear()


def test_every_cnn_is_registered():
    assert sorted(MODELS) == sorted(CNN_NAMES)
    assert list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]


# ----------------------------------------------------------------------------------------------------------
# forward / backward
# ----------------------------------------------------------------------------------------------------------


HEAVY = ("resnet34", "resnet50", "vgg16", "vgg16_bn")  # their 32×32 run adds seconds and no new code path


FORWARD_CASES = [pytest.param(name, 1, 8, id=f"{name}-digits8x8") for name in MODELS] + [
    pytest.param(name, 3, 32, id=f"{name}-rgb32x32", marks=[pytest.mark.slow] if name in HEAVY else [])
    for name in MODELS
]


@pytest.mark.parametrize("name,channels,size", FORWARD_CASES)
def test_forward_backward_on_small_inputs(name, channels, size):
    if size == 8:
        model = digits_model(name)
    else:
        torch.manual_seed(0)
        model = create_model(
            name, model_config(name, num_classes=10, in_channels=channels, image_size=size, **narrow(name))
        )
    assert model.config.small_input is (name != "lenet5" or size < 32)  # resolved from image_size, saved
    x = torch.randn(4 if size == 8 else 2, channels, size, size)
    logits = model.train()(x)
    assert logits.shape == (len(x), 10)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 3, 5, 9])[: len(x)]).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"

    model.eval()
    with torch.no_grad():
        full = model(x)
        features = model.forward_features(x)
        assert features.shape[:2] == (len(x), model.num_features)
        torch.testing.assert_close(model.forward_head(features), full)
        # in eval mode every image is classified on its own: batching does not change its logits
        torch.testing.assert_close(model(x[1:2]), full[1:2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name,config,side,expected",
    [
        ("resnet18", {"image_size": 32}, 32, (512, 4, 4)),  # small stem: /8
        ("resnet18", {"image_size": 224}, 64, (512, 2, 2)),  # ImageNet stem: /32
        ("vgg11", {"image_size": 32}, 32, (512, 1, 1)),
        ("vgg16", {"image_size": 28}, 28, (512, 1, 1)),  # ceil-mode pools: 28 → 14 → 7 → 4 → 2 → 1
        ("vgg16", {"image_size": 8}, 8, (512, 1, 1)),  # 8 → 4 → 2 → 1 → 1 → 1
        ("alexnet", {"image_size": 32}, 32, (256, 4, 4)),  # 3×3/1 stem, padded pools: 32 → 16 → 8 → 4
        ("alexnet", {"image_size": 224}, 63, (256, 1, 1)),  # 63 → 14 → 6 → 2 → 1: the smallest input
        ("googlenet", {"image_size": 32}, 32, (1024, 4, 4)),
        ("googlenet", {"image_size": 224}, 64, (1024, 2, 2)),
        ("lenet5", {"image_size": 8}, 8, (16, 5, 5)),  # C1 pads by 12: 32 → 28 → 14 → 10 → 5
        ("lenet5", {"image_size": 28}, 28, (16, 5, 5)),  # C1 pads by 2 (the MNIST LeNet)
        ("lenet5", {}, 32, (16, 5, 5)),
    ],
)
def test_feature_map_sizes_follow_the_documented_arithmetic(name, config, side, expected):
    model = create_model(name, model_config(name, in_channels=1, num_classes=3, **config, **narrow(name))).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 1, side, side))
        assert features.shape == (1, *expected)
        assert model.forward_head(features).shape == (1, 3)


FAMILIES = ["lenet5", "alexnet", "vgg16", "googlenet", "resnet18"]  # one per class: the stems are per family


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("name", FAMILIES)
def test_min_input_size_is_exactly_what_torch_accepts(name, small):
    model = digits_model(name, small).eval()
    m = model.min_input_size
    with torch.no_grad():
        assert model(torch.zeros(1, 1, m, m)).shape == (1, 10)
        if m > 1:
            with pytest.raises(ConfigError, match=f"at least {m}×{m}"):
                model(torch.zeros(1, 1, m - 1, m + 5))
            model.min_input_size = 1  # bypass dnn's check: torch itself must refuse one pixel less
            with pytest.raises(RuntimeError):
                model(torch.zeros(1, 1, m - 1, m - 1))


def test_small_input_switches_the_stem():
    small = on_meta("resnet18", image_size=32)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    for config in ({"image_size": 64}, {"image_size": 32, "small_input": False}):
        big = on_meta("resnet18", **config)
        assert big.conv1.kernel_size == (7, 7) and big.conv1.stride == (2, 2)
        assert isinstance(big.maxpool, nn.MaxPool2d)
        assert big.config.small_input is False
    assert on_meta("resnet18", image_size=224, small_input=True).conv1.kernel_size == (3, 3)
    assert on_meta("lenet5", image_size=8).features[0].padding == (12, 12)
    assert on_meta("lenet5", image_size=28).features[0].padding == (2, 2)
    assert on_meta("lenet5").features[0].padding == (0, 0)


@pytest.mark.parametrize("side", [8, 28])
def test_lenet_small_input_equals_lenet_on_the_image_centred_in_32x32(side):
    """LeCun centred the digits in a 32×32 field: the padded C1 computes exactly that."""
    torch.manual_seed(0)
    small = create_model("lenet5", model_config("lenet5", image_size=side)).eval()
    big = create_model("lenet5", model_config("lenet5", image_size=32)).eval()
    big.load_state_dict(small.state_dict())
    x = torch.randn(3, 1, side, side)
    pad = (32 - side) // 2
    with torch.no_grad():
        torch.testing.assert_close(small(x), big(F.pad(x, (pad, pad, pad, pad))))


def test_googlenet_transform_input_is_torchvision_renormalisation():
    torch.manual_seed(0)
    model = create_model("googlenet", model_config("googlenet", image_size=32, transform_input=True)).eval()
    plain = create_model("googlenet", model_config("googlenet", image_size=32)).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    moved = torch.stack([x[:, c] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(moved))


def test_zero_init_residual_starts_every_block_as_identity_plus_shortcut():
    model = create_model("resnet50", model_config("resnet50", image_size=32, zero_init_residual=True))
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
    assert len(blocks) == 16
    assert all(b.bn3.weight.abs().sum() == 0 and b.bn1.weight.abs().sum() > 0 for b in blocks)
    assert create_model("resnet18", model_config("resnet18", image_size=32)).layer1[0].bn2.weight.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------
# published parameter counts (shapes only, on the meta device: no memory, no forward)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_published_parameter_count(name):
    model = on_meta(name)
    assert n_params(model) == PUBLISHED[name]
    head = model.get_classifier()
    # another number of classes changes the output layer only: (1000 − K)·(in_features + 1) fewer parameters
    assert n_params(on_meta(name, num_classes=7)) == PUBLISHED[name] - (head.out_features - 7) * (head.in_features + 1)


@pytest.mark.parametrize("name", ["lenet5", "googlenet", "resnet18"])
def test_published_parameter_count_of_a_real_model(name):
    assert n_params(create_model(name, model_config(name))) == PUBLISHED[name]


def test_lenet5_count_is_the_layer_formula():
    # C1 1·6·25+6, C3 6·16·25+16, C5 400·120+120, F6 120·84+84, output 84·10+10
    assert 156 + 2416 + 48120 + 10164 + 850 == PUBLISHED["lenet5"]
    assert [
        n_params(m)
        for m in create_model("lenet5", model_config("lenet5")).modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ] == [
        156,
        2416,
        48120,
        10164,
        850,
    ]


# ----------------------------------------------------------------------------------------------------------
# stages and the head
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_stages_partition_the_parameters_and_end_with_the_head(name):
    model = on_meta(name)
    stages = model.stages()
    assert list(stages) == STAGES[name]
    ids = [id(p) for modules in stages.values() for m in modules for p in m.parameters()]
    assert len(ids) == len(set(ids)), "a parameter is in two stages"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter is in no stage"
    assert stages["head"] == [model.get_classifier()]
    assert all(any(True for m in modules for _ in m.parameters()) for modules in stages.values())


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_changes_the_output_size_and_leaves_the_body(name):
    model = digits_model(name).eval()
    head = model.head_path + "."
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(head)}
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        features = model.forward_features(x)
    in_features = model.get_classifier().in_features
    new = model.reset_classifier(7)
    assert new is model.get_classifier() and (new.in_features, new.out_features) == (in_features, 7)
    assert model.num_classes == 7 and model.config.num_classes == 7
    state = model.state_dict()
    assert state[head + "weight"].shape == (7, new.in_features)
    for k, v in body.items():
        assert torch.equal(state[k], v), k
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), features)
        assert model(x).shape == (3, 7)
    again = model.reset_classifier(7)
    assert not torch.equal(again.weight, new.weight), "a reset head must be freshly (randomly) initialised"
    with pytest.raises(ConfigError, match="num_classes"):
        model.reset_classifier(0)


# ----------------------------------------------------------------------------------------------------------
# bad configs and inputs
# ----------------------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 2.5}, "num_classes"),
    ({"in_channels": 0}, "in_channels"),
    ({"image_size": -1}, "image_size"),
    ({"dropout": 1.0}, "dropout"),
    ({"small_input": "yes"}, "small_input"),
    ({"num_clases": 10}, "num_clases"),
]


@pytest.mark.parametrize("kwargs,field", BAD_CONFIGS, ids=[f for _, f in BAD_CONFIGS])
@pytest.mark.parametrize("name", MODELS)
def test_bad_config_raises_config_error_naming_the_field(name, kwargs, field):
    with pytest.raises(ConfigError, match=field) as info:
        create_model(name, model_config(name, **kwargs))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name,kwargs,field",
    [
        ("vgg16", {"hidden_size": 0}, "hidden_size"),
        ("alexnet", {"hidden_size": -3}, "hidden_size"),
        ("googlenet", {"transform_input": True, "in_channels": 1}, "transform_input"),
        ("lenet5", {"activation": "sigmoid"}, "activation"),
        ("resnet18", {"zero_init_residual": 1}, "zero_init_residual"),
        ("vgg16", {"image_size": 8, "small_input": False, "hidden_size": 8}, "image_size=8 is below the 32×32"),
        ("alexnet", {"image_size": 32, "small_input": False, "hidden_size": 8}, "image_size=32 is below the 63×63"),
    ],
)
def test_model_specific_fields_are_checked(name, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        create_model(name, model_config(name, **kwargs))


def test_wrong_input_tensor_is_a_config_error():
    model = create_model("resnet18", model_config("resnet18", image_size=32))
    with pytest.raises(ConfigError, match=r"in_channels=3.*\(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="shape"):
        model(torch.randn(3, 32, 32))
    vgg = create_model("vgg16", model_config("vgg16", image_size=224, hidden_size=8))
    assert vgg.min_input_size == 32
    with pytest.raises(ConfigError, match="small_input=True"):
        vgg(torch.randn(1, 3, 16, 16))


# ----------------------------------------------------------------------------------------------------------
# smoke: LeNet-5 overfits 32 of scikit-learn's 8×8 digits
# ----------------------------------------------------------------------------------------------------------


def test_lenet5_overfits_32_digits():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images[:32], dtype=torch.float32).unsqueeze(1) / 16.0  # (32, 1, 8, 8) in [0, 1]
    y = torch.tensor(digits.target[:32])
    model = create_model("lenet5", model_config("lenet5", image_size=8))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = F.cross_entropy(model(x), y).item()
    assert abs(first - math.log(10)) < 0.3  # an untrained 10-way classifier is near uniform
    for _ in range(300):  # ~40 steps suffice (seeds 0-2); 300 leave a wide margin
        loss = F.cross_entropy(model(x), y)
        if loss.item() < 0.05:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    with torch.no_grad():
        assert (model.eval()(x).argmax(1) == y).all()


def test_cnns_run_in_channels_last_on_the_cpu_in_bf16_and_when_asked():
    from dnn.models import create_model, model_config
    from dnn.models.cnn_base import in_memory_layout

    cpu = torch.device("cpu")
    lenet = in_memory_layout(create_model("lenet5", model_config("lenet5", num_classes=10)), cpu, precision="bf16")
    c3 = lenet.features[3].weight  # (16, 6, 5, 5)
    assert c3.is_contiguous(memory_format=torch.channels_last) and not c3.is_contiguous()
    plain = in_memory_layout(
        create_model("lenet5", model_config("lenet5", num_classes=10)), cpu
    )  # fp32: NCHW unless asked
    assert plain.features[3].weight.is_contiguous()
    asked = in_memory_layout(create_model("lenet5", model_config("lenet5", num_classes=10)), cpu, channels_last=True)
    assert asked.features[3].weight.is_contiguous(memory_format=torch.channels_last)
    refused = in_memory_layout(
        create_model("lenet5", model_config("lenet5", num_classes=10)), cpu, channels_last=False, precision="bf16"
    )
    assert refused.features[3].weight.is_contiguous()
    torch.manual_seed(0)
    x = torch.randn(4, 1, 32, 32)
    plain.load_state_dict(lenet.state_dict())
    torch.testing.assert_close(lenet(x), plain(x), rtol=1e-5, atol=1e-6)  # the same function in either layout
