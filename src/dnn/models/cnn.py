"""The CNN zoo of the lecture's "named CNNs": LeNet-5, AlexNet, VGG, GoogLeNet, ResNet.

Importing this module registers every CNN (the registry imports it on first use)::

    name        config            published parameters (input, classes)
    lenet5      LeNet5Config      61,706       (1×32×32, 10)
    alexnet     AlexNetConfig     61,100,840   (3×224×224, 1000)
    vgg11       VGGConfig         132,863,336
    vgg16       VGGConfig         138,357,544
    vgg16_bn    VGGConfig         138,365,992
    googlenet   GoogLeNetConfig   6,624,904    (without auxiliary heads)
    resnet18    ResNetConfig      11,689,512
    resnet34    ResNetConfig      21,797,672
    resnet50    ResNetConfig      25,557,032

    model = create_model("resnet18", num_classes=10, in_channels=1, image_size=8)   # small-input stem
    logits = model(x)                        # = model.forward_head(model.forward_features(x))
    model.stages()                           # {"stem": [...], "layer1": [...], …, "head": [fc]}
    model.reset_classifier(5)                # new, freshly initialised output layer

Every model is an :class:`~dnn.models.cnn_base.ImageClassifier` (shared interface, small-input rule, BatchNorm
that stays in eval mode while frozen); AlexNet, VGG, GoogLeNet and ResNet use torchvision's parameter names, so a
torchvision checkpoint loads with ``strict=True`` (see :func:`dnn.transfer.load_pretrained`).
"""

from __future__ import annotations

from dnn.models.alexnet import AlexNet, AlexNetConfig, alexnet
from dnn.models.cnn_base import HEAD_STAGE, SMALL_INPUT_BELOW, ImageClassifier, ImageClassifierConfig
from dnn.models.googlenet import GoogLeNet, GoogLeNetConfig, googlenet
from dnn.models.lenet import LeNet5, LeNet5Config, lenet5
from dnn.models.resnet import ResNet, ResNetConfig, resnet18, resnet34, resnet50
from dnn.models.vgg import VGG, VGGConfig, vgg11, vgg16, vgg16_bn

__all__ = [
    "CNN_NAMES",
    "HEAD_STAGE",
    "SMALL_INPUT_BELOW",
    "VGG",
    "AlexNet",
    "AlexNetConfig",
    "GoogLeNet",
    "GoogLeNetConfig",
    "ImageClassifier",
    "ImageClassifierConfig",
    "LeNet5",
    "LeNet5Config",
    "ResNet",
    "ResNetConfig",
    "VGGConfig",
    "alexnet",
    "googlenet",
    "lenet5",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg11",
    "vgg16",
    "vgg16_bn",
]

CNN_NAMES = ("lenet5", "alexnet", "vgg11", "vgg16", "vgg16_bn", "googlenet", "resnet18", "resnet34", "resnet50")
