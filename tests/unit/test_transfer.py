"""Transfer learning: freeze / unfreeze by stage, frozen BatchNorm statistics, parameter groups, new heads, and
loading pretrained weights (skipping a head of another size, strict errors, safe file reading)."""

from __future__ import annotations

import copy
import functools
import importlib.util
import pickle
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnn.errors import CheckpointError, ConfigError
from dnn.models import create_model, model_config
from dnn.transfer import (
    freeze,
    frozen_stages,
    load_pretrained,
    param_groups,
    read_state_dict,
    replace_head,
    stage_names,
    unfreeze,
)

FROZEN_TO_LAYER3 = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")


@functools.cache
def _resnet(num_classes: int, small: bool) -> nn.Module:
    torch.manual_seed(num_classes)
    return create_model(
        "resnet18", model_config("resnet18", num_classes=num_classes, in_channels=1, image_size=8 if small else 224)
    )


def resnet(num_classes: int = 5, small: bool = True) -> nn.Module:
    """A fresh copy of a 1-channel ResNet-18 (built once; copying is faster than initialising)."""
    return copy.deepcopy(_resnet(num_classes, small))


@pytest.fixture(scope="module", autouse=True)
def _free_cached_models():
    yield
    _resnet.cache_clear()


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def batchnorms(model: nn.Module, prefixes: tuple[str, ...]) -> list[nn.BatchNorm2d]:
    """The BatchNorm layers whose dotted name starts with one of ``prefixes`` (``"bn1."`` matches ``bn1``)."""
    return [m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and f"{n}.".startswith(prefixes)]


# ----------------------------------------------------------------------------------------------------------
# freeze / unfreeze
# ----------------------------------------------------------------------------------------------------------


def test_freeze_up_to_a_stage_freezes_exactly_the_stages_before_and_including_it():
    model = resnet()
    assert stage_names(model) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert freeze(model, up_to="layer3") == ["stem", "layer1", "layer2", "layer3"]
    for name, p in model.named_parameters():
        assert p.requires_grad is not name.startswith(FROZEN_TO_LAYER3), name
    assert frozen_stages(model) == ["stem", "layer1", "layer2", "layer3"]
    assert freeze(model) == ["stem", "layer1", "layer2", "layer3", "layer4"]  # None: the whole body
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_wrong_stage_name_is_a_config_error_listing_the_valid_ones():
    model = resnet()
    with pytest.raises(ConfigError, match="layer9.*valid stages: stem, layer1, layer2, layer3, layer4$"):
        freeze(model, up_to="layer9")
    with pytest.raises(ConfigError, match="head"):
        freeze(model, up_to="head")
    with pytest.raises(ConfigError, match="from_stage"):
        unfreeze(model, from_stage="fc")
    with pytest.raises(ConfigError, match="Sequential"):
        freeze(nn.Sequential(nn.Linear(2, 2)))
    assert all(p.requires_grad for p in model.parameters())  # nothing changed on error


def test_frozen_batchnorm_keeps_its_statistics_in_train_mode():
    model = resnet()
    freeze(model, up_to="layer3")
    model.train()
    assert model.training
    frozen, trainable = batchnorms(model, FROZEN_TO_LAYER3), batchnorms(model, ("layer4.",))
    assert len(frozen) == 1 + 4 + 5 + 5 and len(trainable) == 5  # bn1; 2 per block, 1 per downsample
    assert not any(bn.training for bn in frozen) and all(bn.training for bn in trainable)

    before = snapshot(model)
    model(images())  # a train-mode forward pass
    after = model.state_dict()
    for k, v in before.items():
        if k.startswith(FROZEN_TO_LAYER3):
            assert torch.equal(after[k], v), f"{k} moved although its stage is frozen"
    assert not torch.equal(after["layer4.0.bn1.running_mean"], before["layer4.0.bn1.running_mean"])
    assert after["layer4.0.bn1.num_batches_tracked"] == before["layer4.0.bn1.num_batches_tracked"] + 1

    model.eval()
    model.train()  # the rule holds at every switch, not only right after freeze()
    assert not any(bn.training for bn in frozen) and all(bn.training for bn in trainable)
    wrapper = nn.Sequential(model).train()  # and when a wrapper switches the mode
    assert not any(bn.training for bn in frozen)
    assert wrapper.training


def test_fully_frozen_body_computes_in_train_mode_what_it_computes_in_eval_mode():
    model = resnet()
    x = images()
    model.train()
    model(x)  # move the running statistics away from their initial values
    freeze(model)
    with torch.no_grad():
        train_features = model.train().forward_features(x)
        eval_features = model.eval().forward_features(x)
    torch.testing.assert_close(train_features, eval_features)


def test_a_training_step_on_a_frozen_body_changes_only_the_head():
    model = resnet().train()
    x, y = images(), torch.tensor([0, 1, 2, 3, 4, 0])
    F.cross_entropy(model(x), y).backward()  # stale gradients that freeze() must drop
    freeze(model)
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("fc."))
    optimizer = torch.optim.SGD(param_groups(model, body_lr=0.1, head_lr=0.1, weight_decay=0.01), momentum=0.9)
    before = snapshot(model)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]


def test_unfreeze_gives_parameters_and_statistics_back():
    model = resnet().train()
    freeze(model, up_to="layer3")
    assert unfreeze(model) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert all(p.requires_grad for p in model.parameters()) and frozen_stages(model) == []
    assert all(bn.training for bn in batchnorms(model, ("",)))  # switched back at once: the model is training
    before = model.layer1[0].bn1.running_mean.clone()
    model(images())
    assert not torch.equal(model.layer1[0].bn1.running_mean, before)


def test_gradual_unfreezing_from_a_stage():
    model = resnet().eval()
    freeze(model)
    assert unfreeze(model, from_stage="layer4") == ["layer4"]
    assert frozen_stages(model) == ["stem", "layer1", "layer2", "layer3"]
    assert unfreeze(model, from_stage="layer2") == ["layer2", "layer3", "layer4"]
    assert frozen_stages(model) == ["stem", "layer1"]
    assert not any(bn.training for bn in batchnorms(model, ("",)))  # an eval-mode model stays in eval mode


# ----------------------------------------------------------------------------------------------------------
# parameter groups
# ----------------------------------------------------------------------------------------------------------


def test_param_groups_split_body_and_head_and_leave_out_frozen_parameters():
    model = resnet()
    freeze(model, up_to="layer2")
    groups = param_groups(model, body_lr=1e-3, head_lr=1e-2, weight_decay=5e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [("body", 1e-3, 5e-4), ("head", 1e-2, 5e-4)]
    names = {id(p): n for n, p in model.named_parameters()}
    body = [names[id(p)] for p in groups[0]["params"]]
    head = [names[id(p)] for p in groups[1]["params"]]
    assert head == ["fc.weight", "fc.bias"]
    assert body == [n for n, p in model.named_parameters() if n.startswith(("layer3.", "layer4."))]
    freeze(model)
    assert [g["name"] for g in param_groups(model, 1e-3, 1e-2)] == ["head"]


def test_param_groups_apply_their_own_learning_rates():
    model = resnet().eval()
    groups = param_groups(model, body_lr=0.01, head_lr=0.5)
    optimizer = torch.optim.SGD(groups)  # plain SGD: Δθ = −lr · ∇θ
    F.cross_entropy(model(images()), torch.tensor([0, 1, 2, 3, 4, 0])).backward()
    before = snapshot(model)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    for n, p in model.named_parameters():
        lr = 0.5 if n.startswith("fc.") else 0.01
        torch.testing.assert_close(p.detach(), before[n] - lr * grads[n])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"body_lr": -1.0, "head_lr": 0.1}, "body_lr"),
        ({"body_lr": 0.1, "head_lr": float("nan")}, "head_lr"),
        ({"body_lr": 0.1, "head_lr": 0.1, "weight_decay": "1e-4"}, "weight_decay"),
    ],
)
def test_param_groups_check_their_arguments(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        param_groups(resnet(), **kwargs)


def test_param_groups_of_a_fully_frozen_model_is_an_error():
    model = resnet()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="frozen"):
        param_groups(model, 0.1, 0.1)


def test_replace_head():
    model = resnet(num_classes=5).eval()
    body = {k: v for k, v in snapshot(model).items() if not k.startswith("fc.")}
    head = replace_head(model, 3)
    assert isinstance(head, nn.Linear) and head is model.fc and (head.in_features, head.out_features) == (512, 3)
    assert model(images()).shape == (6, 3)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in body.items())
    with pytest.raises(ConfigError, match="num_classes"):
        replace_head(model, -2)


# ----------------------------------------------------------------------------------------------------------
# load_pretrained
# ----------------------------------------------------------------------------------------------------------


def test_load_pretrained_skips_a_head_of_another_size():
    source = resnet(num_classes=10)
    target = resnet(num_classes=5)
    own_head = target.fc.weight.detach().clone()
    result = load_pretrained(target, source.state_dict())
    assert result.skipped == ("fc.weight", "fc.bias") and result.missing == ("fc.weight", "fc.bias")
    assert result.unexpected == ()
    assert len(result.loaded) == len(source.state_dict()) - 2
    for k, v in source.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(target.state_dict()[k], v), k
    assert torch.equal(target.fc.weight, own_head)
    with torch.no_grad():
        torch.testing.assert_close(target.eval().forward_features(images()), source.eval().forward_features(images()))


def test_load_pretrained_loads_a_head_of_the_same_size_and_a_headless_checkpoint():
    source, target = resnet(num_classes=5), resnet(num_classes=10)
    target.reset_classifier(5)
    result = load_pretrained(target, source.state_dict())
    assert result.skipped == () and result.missing == ()
    assert torch.equal(target.fc.weight, source.fc.weight)
    headless = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert load_pretrained(resnet(), headless).missing == ("fc.weight", "fc.bias")
    with pytest.raises(CheckpointError, match="fc.weight"):
        load_pretrained(resnet(), headless, skip_head=False)


def test_strict_errors_name_the_keys_and_leave_the_model_unchanged():
    source = resnet(num_classes=10).state_dict()
    target = resnet(num_classes=5)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match=r"fc.weight \(10, 512\) vs model \(5, 512\)") as info:
        load_pretrained(target, source, skip_head=False)
    assert "\n" not in str(info.value)
    damaged = {k: v for k, v in source.items() if k != "layer2.0.conv1.weight"}
    damaged["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"1 missing keys \(layer2.0.conv1.weight\); 1 unexpected keys"):
        load_pretrained(target, damaged)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())

    result = load_pretrained(target, damaged, strict=False)
    assert result.missing == ("layer2.0.conv1.weight", "fc.weight", "fc.bias")
    assert result.unexpected == ("extra.weight",)
    assert torch.equal(target.layer2[0].conv1.weight, before["layer2.0.conv1.weight"])
    assert torch.equal(target.layer3[0].conv1.weight, source["layer3.0.conv1.weight"])


def test_a_stem_of_another_shape_is_an_error_unless_not_strict():
    imagenet_stem = resnet(num_classes=5, small=False).state_dict()  # conv1 7×7
    target = resnet(num_classes=5, small=True)  # conv1 3×3
    with pytest.raises(CheckpointError, match=r"conv1.weight \(64, 1, 7, 7\) vs model \(64, 1, 3, 3\)"):
        load_pretrained(target, imagenet_stem)
    result = load_pretrained(target, imagenet_stem, strict=False)
    assert result.skipped == ("conv1.weight",) and result.missing == ("conv1.weight",)
    assert torch.equal(target.layer1[0].conv1.weight, imagenet_stem["layer1.0.conv1.weight"])


def test_older_checkpoints_without_num_batches_tracked_load_strictly():
    source = {k: v for k, v in resnet().state_dict().items() if not k.endswith("num_batches_tracked")}
    result = load_pretrained(resnet(), source)
    assert result.missing == () and result.unexpected == ()


def test_googlenet_ignores_torchvisions_auxiliary_heads():
    model = create_model("googlenet", model_config("googlenet", image_size=32, num_classes=10))
    state = dict(model.state_dict())
    state["aux1.conv.conv.weight"] = torch.zeros(128, 512, 1, 1)
    state["aux2.fc2.bias"] = torch.zeros(1000)
    result = load_pretrained(model, state)
    assert result.skipped == ("aux1.conv.conv.weight", "aux2.fc2.bias") and result.unexpected == ()


# ----------------------------------------------------------------------------------------------------------
# reading checkpoint files
# ----------------------------------------------------------------------------------------------------------


def test_load_from_a_torch_file_with_wrappers_and_prefix(tmp_path):
    source = resnet(num_classes=5)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pth"
    torch.save(source.state_dict(), plain)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, wrapped)
    for path in (plain, str(wrapped)):
        target = resnet(num_classes=5)
        target.fc.weight.data.zero_()
        result = load_pretrained(target, path)
        assert result.missing == () and torch.equal(target.fc.weight, source.fc.weight)


UNPICKLED: list[str] = []


def _record(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class _Payload:
    def __reduce__(self):
        return (_record, ("code ran",))


def test_checkpoints_are_read_without_running_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(path)
    assert UNPICKLED == []
    torch.save({"fc.weight": _Payload()}, tmp_path / "evil2.pt")
    UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="evil2.pt"):
        load_pretrained(resnet(), tmp_path / "evil2.pt")
    assert UNPICKLED == []


def test_unreadable_checkpoints_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        read_state_dict(tmp_path / "garbage.pt")
    torch.save({"fc.weight": [1, 2, 3]}, tmp_path / "lists.pt")
    with pytest.raises(CheckpointError, match="'fc.weight' holds list"):
        read_state_dict(tmp_path / "lists.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="got Tensor"):
        read_state_dict(tmp_path / "tensor.pt")


def test_safetensors_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"{}")
    with pytest.raises(CheckpointError, match="needs the safetensors package"):
        read_state_dict(path)


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is None, reason="safetensors is not installed")
def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    source = resnet(num_classes=5)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "w.safetensors")
    target = resnet(num_classes=5)
    target.fc.weight.data.zero_()
    assert load_pretrained(target, tmp_path / "w.safetensors").missing == ()
    assert torch.equal(target.fc.weight, source.fc.weight)
