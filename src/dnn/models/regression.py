"""Many-to-one regression over real-valued sequences (the adding problem's model)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from dnn.checks import positive_int
from dnn.errors import ConfigError
from dnn.models.recurrent_stack import RecurrentFields, check_connections, make_rnn
from dnn.models.registry import register_model

__all__ = ["SequenceRegressor", "SequenceRegressorConfig"]


@dataclass(kw_only=True)
class SequenceRegressorConfig(RecurrentFields):
    """A recurrent regressor: ``input_size`` real features per step → one number from the last hidden state.

    ``residual`` / ``dense``: skip or dense connections between the stacked layers (:mod:`dnn.layers.recurrent`).
    The recurrent stack's keys (cell, hidden_size 128, num_layers 1, dropout, forget_bias): :class:`RecurrentFields`.
    """

    input_size: int = 2
    residual: bool = False
    dense: bool = False

    def __post_init__(self):
        positive_int("sequence_regressor: input_size", self.input_size)
        self._check_recurrent("sequence_regressor")
        check_connections("sequence_regressor", self.residual, self.dense, self.num_layers)


class SequenceRegressor(nn.Module):
    """Many-to-one regression over real-valued sequences.

    h_1 … h_T = RNN(x_1 … x_T)             dnn's RNN / LSTM / GRU stack, zero initial state
    ŷ = w · h_T + b                        one number per sequence, from the top layer's last state
    """

    def __init__(self, config: SequenceRegressorConfig):
        super().__init__()
        self.config = c = config
        self.rnn = make_rnn(c.input_size, c.stack(residual=c.residual, dense=c.dense))
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
