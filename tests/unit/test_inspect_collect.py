"""The data behind the CNN pictures: the first convolution's kernels and each stage's feature maps, in order and
shrinking, with the model's own prediction and its mode left as it was."""

import numpy as np
import torch
from torch.testing import assert_close

from dnn.inspect import first_conv_weights, stage_feature_maps
from dnn.models.registry import create_model, model_config


def test_first_conv_weights_are_the_first_convolutions_kernels():
    model = create_model("resnet18", model_config("resnet18", num_classes=10, in_channels=3, image_size=32))
    weights = first_conv_weights(model)
    assert weights.shape == tuple(model.conv1.weight.shape) and weights.shape[:2] == (64, 3)
    assert np.array_equal(weights, model.conv1.weight.detach().numpy())
    assert first_conv_weights(torch.nn.Linear(2, 2)) is None


def test_feature_maps_of_every_stage_for_one_image():
    torch.manual_seed(0)
    model = create_model("resnet18", model_config("resnet18", num_classes=10, in_channels=3, image_size=32))
    model.train()
    image = torch.randn(3, 32, 32)
    maps, probs = stage_feature_maps(model, image)
    assert list(maps) == ["stem", "layer1", "layer2", "layer3", "layer4"]  # the head is not a map
    channels = [m.shape[0] for m in maps.values()]
    sides = [m.shape[1] for m in maps.values()]
    assert channels == [64, 64, 128, 256, 512] and sides == sorted(sides, reverse=True) and sides[-1] < sides[0]
    assert model.training  # given back as it was
    model.eval()
    with torch.no_grad():
        assert_close(probs, torch.softmax(model(image[None]), dim=-1)[0])
        assert_close(torch.from_numpy(maps["stem"]), model.maxpool(model.relu(model.bn1(model.conv1(image[None]))))[0])


def test_lenet_stages_that_are_maps():
    model = create_model("lenet5", model_config("lenet5", num_classes=10, in_channels=1, image_size=8))
    maps, probs = stage_feature_maps(model, torch.rand(1, 8, 8))
    assert list(maps) == ["conv1", "conv2"] and maps["conv1"].shape[0] == 6 and maps["conv2"].shape[0] == 16
    assert probs.shape == (10,) and abs(float(probs.sum()) - 1.0) < 1e-6
