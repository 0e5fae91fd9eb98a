"""Video classification: a CNN applied to every frame, then an RNN over the frame features (many-to-one), as in
Donahue et al. 2015 (LRCN).

    f_t = W_f flatten(CNN(x_t)) + b_f            (B, T, F)   the same CNN and W_f for every frame t
    o_1 … o_T, h_n = RNN(ReLU(f_1) … ReLU(f_T))  dnn's LSTM / GRU / RNN, with each clip's own length
    logits = W_o dropout(h_n) + b_o               (B, K)      h_n: the top layer's state at the clip's last frame

The frame features keep *where* things are (the feature map is flattened, not pooled), since the motion between
frames is what the RNN reads; a clip padded with blank frames after its end gives the same logits as the clip
alone (``lengths``).

Shapes: B batch, T frames, (C, H_img, W_img) a frame, F frame features, H hidden, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dnn.checks import positive_int
from dnn.errors import ConfigError
from dnn.layers.conv import ConvBNAct
from dnn.models.recurrent_stack import RecurrentFields, make_rnn
from dnn.models.registry import register_model

__all__ = ["VideoCNNLSTM", "VideoConfig"]


@dataclass(kw_only=True)
class VideoConfig(RecurrentFields):
    """Frame CNN (``channels``: conv stages, each a 3×3 ConvBNAct and a 2×2 max-pool) → RNN → K classes.

    The recurrent stack's keys (cell, hidden_size 64, num_layers 1, dropout, forget_bias): :class:`RecurrentFields`.
    """

    num_classes: int
    in_channels: int = 1
    image_size: int = 20  # the side of a frame
    channels: tuple[int, ...] = (16, 32)
    frame_features: int = 64  # F
    hidden_size: int = 64

    def __post_init__(self):
        where = "video_cnn_lstm"
        for name in ("num_classes", "in_channels", "image_size", "frame_features"):
            positive_int(f"{where}: {name}", getattr(self, name))
        self._check_recurrent(where)
        if not self.channels:
            raise ConfigError(f"{where}: channels must list at least one conv stage, got {self.channels!r}")
        for c in self.channels:
            positive_int(f"{where}: channels[i]", c)
        if self.image_size >> len(self.channels) < 1:
            raise ConfigError(f"{where}: {len(self.channels)} stages halve a frame of {self.image_size} below one "
                              f"pixel; use fewer channels entries or a larger image_size")  # fmt: skip


class VideoCNNLSTM(nn.Module):
    """CNN per frame → RNN over time → classes (equations in the module docstring)."""

    def __init__(self, config: VideoConfig):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        previous = c.in_channels
        for ch in c.channels:
            layers += [ConvBNAct(previous, ch, 3), nn.MaxPool2d(2)]
            previous = ch
        self.cnn = nn.Sequential(*layers)
        side = c.image_size >> len(c.channels)
        self.frame = nn.Linear(previous * side * side, c.frame_features)  # W_f, b_f
        self.rnn = make_rnn(c.frame_features, c.stack())
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, c.num_classes)  # W_o, b_o

    def frame_features(self, clips: Tensor) -> Tensor:
        """``clips (B, T, C, H_img, W_img)`` → ``f (B, T, F)``: the CNN on all B·T frames at once."""
        c = self.config
        if clips.dim() != 5 or clips.shape[2] != c.in_channels or clips.shape[3:] != (c.image_size, c.image_size):
            raise ConfigError(f"clips must have shape (B, T, {c.in_channels}, {c.image_size}, {c.image_size}), got "
                              f"{tuple(clips.shape)}")  # fmt: skip
        B, T = clips.shape[:2]
        maps = self.cnn(clips.flatten(0, 1))  # (B·T, C', h, w)
        return self.frame(maps.flatten(1)).view(B, T, -1)  # (B, T, F)

    def forward(self, clips: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits ``(B, K)`` of ``clips (B, T, C, H_img, W_img)``; ``lengths (B,)``: real frames of each clip."""
        f = torch.relu(self.frame_features(clips))  # (B, T, F)
        _, h_n = self.rnn(f, lengths=lengths)
        h = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h_n, c_n); (L, B, H)
        return self.head(self.dropout(h[-1]))  # (B, K)


@register_model("video_cnn_lstm", VideoConfig)
def video_cnn_lstm(config: VideoConfig) -> VideoCNNLSTM:
    """Video classifier: a small CNN on every frame, then an LSTM/GRU over the frame features (many-to-one)."""
    return VideoCNNLSTM(config)
