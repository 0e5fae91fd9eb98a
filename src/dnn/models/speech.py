"""Speech recognition with CTC: log-mel frames in, one distribution over characters + blank per frame out.

    z_t   = ReLU(Conv1d_{k, stride 2}(x)_t)          optional front end: halves the frame rate, T' = ⌊(T−1)/2⌋ + 1
    o_t   = BiLSTM/BiGRU(z_1 … z_T')_t               dnn's recurrent runner, stopping at each utterance's length
    y_t   = W dropout(o_t) + b                        logits over V = 1 + characters; index 0 is the CTC blank

Training maximises the CTC likelihood (Graves et al. 2006) of the transcript ``c_1 … c_U``: the sum over every
frame-level path π that collapses to it (merge repeats, then drop blanks)::

    L = −log Σ_{π ∈ B⁻¹(c)} Π_t p(π_t | x)          (torch's nn.CTCLoss, blank = 0, exact input/target lengths)

A transcript needs at least ``U + r`` output frames (r = its adjacent repeated characters, which need a blank
between them); a shorter output has no path and an infinite loss. Such losses are zeroed (``zero_infinity``) and
counted by :func:`ctc_loss`, so a front end that subsamples too much shows up in the log instead of as NaN.

Shapes: B batch, T frames, F mel bands, H hidden, D = 2 directions, V = characters + blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import choice, int_in, positive_int
from dnn.errors import ConfigError
from dnn.models.recurrent_stack import RecurrentFields, make_rnn
from dnn.models.registry import register_model

__all__ = ["BLANK", "SpeechCTC", "SpeechCTCConfig", "ctc_loss", "min_ctc_frames"]

BLANK = 0


@dataclass(kw_only=True)
class SpeechCTCConfig(RecurrentFields):
    """Conv front end (optional) → multi-layer bidirectional LSTM/GRU → characters + blank.

    ``num_classes`` (characters + 1) and ``n_mels`` come from the data. ``conv_channels = 0`` drops the front end
    (the recurrent stack then reads the mel frames at the full frame rate). The recurrent stack's keys
    (:class:`RecurrentFields`), with this model's defaults: an LSTM or a GRU, 2 layers of 160, dropout 0.1.
    """

    num_classes: int
    n_mels: int = 80
    conv_channels: int = 256
    conv_kernel: int = 5
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 160
    num_layers: int = 2
    dropout: float = 0.1
    bidirectional: bool = True
    # the recurrent runner's implementation: our cells with hand-written BPTT ("reference") train ~2× faster here
    # than torch's packed kernel ("fused"), whose backward over variable lengths is slow on CPU
    implementation: Literal["auto", "reference", "fused"] = "reference"

    def __post_init__(self):
        for name in ("num_classes", "n_mels", "conv_kernel"):
            positive_int(f"speech_ctc: {name}", getattr(self, name))
        self._check_recurrent("speech_ctc", cells=("lstm", "gru"))
        if self.num_classes < 2:
            raise ConfigError(
                f"speech_ctc: num_classes must be at least 2 (blank + a character), got {self.num_classes}"
            )
        int_in("speech_ctc: conv_channels", self.conv_channels, 0, expected="0 (no front end) or more")
        if self.conv_kernel % 2 == 0:
            raise ConfigError(f"speech_ctc: conv_kernel must be odd (centred on its frame), got {self.conv_kernel}")
        choice("speech_ctc: implementation", self.implementation, ("auto", "reference", "fused"))


class SpeechCTC(nn.Module):
    """Acoustic model for CTC: ``forward(features (B, T, F), lengths (B,))`` → ``(logits (B, T', V), lengths' (B,))``.

    The output lengths are part of the result because the front end changes the frame rate; positions past an
    utterance's output length carry no meaning (the loss and the decoders never read them).
    """

    def __init__(self, config: SpeechCTCConfig):
        super().__init__()
        self.config = c = config
        self.stride = 2 if c.conv_channels else 1
        if c.conv_channels:
            self.conv = nn.Conv1d(c.n_mels, c.conv_channels, c.conv_kernel, stride=2, padding=c.conv_kernel // 2)
        rnn_input = c.conv_channels or c.n_mels
        self.rnn = make_rnn(rnn_input, c.stack(bidirectional=c.bidirectional))
        self.rnn.implementation = c.implementation
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size * (2 if c.bidirectional else 1), c.num_classes)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames after the front end: ``⌊(T + 2p − k) / 2⌋ + 1 = ⌊(T − 1) / 2⌋ + 1`` for odd k, p = k // 2."""
        return lengths if self.stride == 1 else torch.div(lengths - 1, 2, rounding_mode="floor") + 1

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if features.dim() != 3 or features.shape[-1] != self.config.n_mels:
            raise ConfigError(
                f"features must have shape (B, T, n_mels={self.config.n_mels}), got {tuple(features.shape)}"
            )
        B, T, _ = features.shape
        lengths = torch.full((B,), T, dtype=torch.int64) if lengths is None else torch.as_tensor(lengths).cpu()
        x = features
        if self.stride == 2:
            mask = (torch.arange(T) < lengths.unsqueeze(1)).to(x.device)  # (B, T)
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding reads as the conv's own zero padding
            x = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, F, T) → (B, C, T') → (B, T', C)
        out_lengths = self.output_lengths(lengths)
        outputs, _ = self.rnn(x, lengths=out_lengths)  # (B, T', D·H)
        return self.head(self.dropout(outputs)), out_lengths  # (B, T', V), (B,)


def min_ctc_frames(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """The fewest output frames with a CTC path for each target ``(B,)``: U + adjacent repeats."""
    U = targets.shape[1]
    real = torch.arange(U, device=targets.device) < target_lengths.unsqueeze(1)  # (B, U)
    repeats = (targets[:, 1:] == targets[:, :-1]) & real[:, 1:]  # (B, U−1)
    return target_lengths + repeats.sum(dim=1)


def ctc_loss(logits: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor,
             reduction: Literal["mean", "sum"] = "mean") -> tuple[Tensor, int]:  # fmt: skip
    """CTC loss of ``logits (B, T, V)`` with output ``lengths (B,)`` against padded ``targets (B, U)``.

    Returns (loss, number of utterances whose loss was infinite and zeroed). ``"mean"``: the mean over the batch
    of each utterance's loss divided by its target length (torch's "mean"); ``"sum"``: the summed losses.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    losses = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=BLANK, reduction="none",
                        zero_infinity=True)  # fmt: skip  # (B,)
    infinite = int((min_ctc_frames(targets, target_lengths) > lengths.to(targets.device)).sum())
    if reduction == "sum":
        return losses.sum(), infinite
    return (losses / target_lengths.clamp(min=1).to(losses.dtype)).mean(), infinite


@register_model("speech_ctc", SpeechCTCConfig)
def speech_ctc(config: SpeechCTCConfig) -> SpeechCTC:
    """Speech recognition: log-mel frames → strided conv → BiLSTM/BiGRU → characters + blank (CTC)."""
    return SpeechCTC(config)
