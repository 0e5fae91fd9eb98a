"""A fully connected network on images: what a CNN is measured against.

::

    x = flatten(image)                          (B, C·H_img·W_img)
    h_1 = act(W_1 x + b_1) … h_L = act(W_L h_{L−1} + b_L)        ``hidden_sizes`` = (H_1, …, H_L)
    logits = W_o h_L + b_o                      (B, K)

Every input pixel has its own weight into every first-layer unit, so the first layer alone holds
C·H_img·W_img·H_1 weights — the count grows with the image area, and a digit moved by one pixel meets different
weights — while a convolution shares one small kernel over all positions (the lecture's locality and weight
sharing; ``cnn-vs-fc`` in :mod:`dnn.experiments`). With ``hidden_sizes=()`` it is multinomial logistic regression.

It follows the CNN interface (:class:`~dnn.models.cnn_base.ImageClassifier`): ``forward_features`` is the hidden
layers, ``forward_head`` the output layer, stages ``fc1 … fcL, head``, so the transfer-learning tools apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from dnn.checks import is_int
from dnn.errors import ConfigError
from dnn.models.cnn_base import HEAD_STAGE, ImageClassifier, ImageClassifierConfig
from dnn.models.registry import register_model

__all__ = ["MLP", "MLPConfig", "mlp"]


@dataclass
class MLPConfig(ImageClassifierConfig):
    """A fully connected net for ``in_channels``×``image_size``×``image_size`` images (8×8 digits by default):
    ``hidden_sizes`` the widths of the hidden layers, ``activation`` ReLU or tanh, ``dropout`` after each hidden
    layer. ``small_input`` has no meaning here and is ignored."""

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 8
    hidden_sizes: tuple[int, ...] = (64,)
    activation: Literal["relu", "tanh"] = "relu"

    def __post_init__(self):
        super().__post_init__()
        if not all(is_int(h) and h >= 1 for h in self.hidden_sizes):
            raise ConfigError(f"MLPConfig: hidden_sizes must be positive integers, got {list(self.hidden_sizes)}")
        if self.activation not in ("relu", "tanh"):
            raise ConfigError(f"MLPConfig: activation must be 'relu' or 'tanh', got {self.activation!r}")


class MLP(ImageClassifier):
    """Flatten → (Linear → act → dropout) per hidden layer → Linear; see the module docstring."""

    head_path = "head"

    def __init__(self, config: MLPConfig, name: str = "mlp"):
        super().__init__(name, config, small_input=False)
        act = nn.ReLU if config.activation == "relu" else nn.Tanh
        width = config.in_channels * config.image_size * config.image_size  # C·H_img·W_img
        self.hidden = nn.ModuleList()
        for size in config.hidden_sizes:
            self.hidden.append(nn.Sequential(nn.Linear(width, size), act(), nn.Dropout(config.dropout)))
            width = size
        self.head = nn.Linear(width, config.num_classes)
        self.num_features = width
        self.min_input_size = config.image_size

    def check_input(self, x: Tensor) -> None:
        """A fully connected net takes exactly the image size it was built for."""
        super().check_input(x)
        size = self.config.image_size
        if x.shape[2] != size or x.shape[3] != size:
            raise ConfigError(f"{self.name}: input images must be {size}×{size} pixels, got {x.shape[2]}×{x.shape[3]}")

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H_img, W_img)`` → the last hidden layer ``(B, H_L)`` (the flattened image without hidden layers)."""
        self.check_input(x)
        h = x.flatten(1)  # (B, C·H_img·W_img)
        for layer in self.hidden:
            h = layer(h)  # (B, H_l)
        return h

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, H_L)`` → logits ``(B, K)``."""
        return self.head(features)

    def stages(self) -> dict[str, list[nn.Module]]:
        """``fc1`` … ``fcL`` (the hidden layers), ``head`` (the output layer)."""
        stages = {f"fc{i + 1}": [layer] for i, layer in enumerate(self.hidden)}
        stages[HEAD_STAGE] = [self.head]
        return stages


@register_model("mlp", MLPConfig)
def mlp(config: MLPConfig) -> MLP:
    """Fully connected net on flattened images (hidden_sizes=[] is logistic regression); 4,810 parameters at 8×8."""
    return MLP(config, name="mlp")
