"""Many-to-one regression over real-valued sequences (the adding problem's model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from dnn.checks import choice, number_in, positive_int
from dnn.errors import ConfigError
from dnn.models.registry import register_model
from dnn.models.sequence import CELLS, check_connections, make_rnn, stack_of

__all__ = ["SequenceRegressor", "SequenceRegressorConfig"]


@dataclass
class SequenceRegressorConfig:
    """A recurrent regressor: ``input_size`` real features per step → one number from the last hidden state.

    ``residual`` / ``dense``: skip or dense connections between the stacked layers (:mod:`dnn.layers.recurrent`).
    """

    input_size: int = 2
    hidden_size: int = 128
    num_layers: int = 1
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    residual: bool = False
    dense: bool = False
    dropout: float = 0.0
    forget_bias: float | None = 1.0

    def __post_init__(self):
        for name in ("input_size", "hidden_size", "num_layers"):
            positive_int(f"sequence_regressor: {name}", getattr(self, name))
        choice("sequence_regressor: cell", self.cell, CELLS)
        number_in("sequence_regressor: dropout", self.dropout, 0, 1, high_open=True)
        check_connections("sequence_regressor", self.residual, self.dense, self.num_layers)


class SequenceRegressor(nn.Module):
    """Many-to-one regression over real-valued sequences.

    h_1 … h_T = RNN(x_1 … x_T)             dnn's RNN / LSTM / GRU stack, zero initial state
    ŷ = w · h_T + b                        one number per sequence, from the top layer's last state
    """

    def __init__(self, config: SequenceRegressorConfig):
        super().__init__()
        self.config = c = config
        self.rnn = make_rnn(c.input_size, stack_of(c))
        self.head = nn.Linear(c.hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, I)`` float → predictions ``(B,)``."""
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.config.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(f"x must have shape (B, T, {self.config.input_size}), got {got}")
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1]).squeeze(-1)  # (B,)


@register_model("sequence_regressor", SequenceRegressorConfig)
def sequence_regressor(config: SequenceRegressorConfig) -> SequenceRegressor:
    """Sequence regressor: RNN/LSTM/GRU over real-valued steps → one number (the adding problem)."""
    return SequenceRegressor(config)
