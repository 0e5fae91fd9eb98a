"""Image captioning with visual attention (Show, Attend and Tell, Xu et al. 2015): a CNN encoder whose
feature-map positions are the keys, and an RNN decoder that attends over them at every word.

Encoder (dnn's conv blocks; each stage is two 3×3 ConvBNAct and a 2×2 max-pool)::

    F = CNN(x)                                   (B, C, h, w)      h = H_img / 2^stages, w = W_img / 2^stages
    F = [F; X; Y]                                (B, C + 2, h, w)  with coordinates: each position's x, y in [−1, 1]
    a = ReLU(BN(W_a * F))                        (B, D, h, w)      a 1×1 ConvBNAct: the annotation vectors
    a_1 … a_S                                    (B, S, D)         S = h·w positions, row by row

The coordinates (CoordConv, Liu et al. 2018) give every annotation where it is, so "the next digit to the right"
can be found by content and place; the paper's VGG features carried place in their large receptive fields.

Decoder, one word t (the paper's equations; dnn's Attention scores the positions)::

    h_0, c_0 = tanh(W_h ā), tanh(W_c ā)           ā = (1/S) Σ_s a_s; one W per layer (c: LSTM only)
    α_t = softmax_s(score(h_{t−1}, a_s))          (B, S)   h_{t−1}: the top layer's state; Σ_s α_{t,s} = 1
    β_t = σ(W_β h_{t−1} + b_β)                    (B, 1)   the gating scalar (``gate``); 1 without it
    z_t = β_t Σ_s α_{t,s} a_s                     (B, D)   the context
    h_t, s_t = RNN([E y_{t−1}; z_t], s_{t−1})     LSTM or GRU; y_0 = <sos> = 2
    logits_t = L_o dropout(E y_{t−1} + L_h h_t + L_z z_t)     the deep output layer, (B, V)

Training minimises the cross-entropy of the real words, plus the doubly stochastic attention penalty
λ Σ_s (1 − Σ_t α_{t,s})² per image (``doubly_stochastic`` = λ, 0 by default: it asks every position to be looked
at once over the caption, which suits photographs, not digits on a mostly blank canvas).

:meth:`CaptionModel.encode` / :meth:`CaptionModel.decode_step` are the interface of :mod:`dnn.decoding`, so
greedy and beam search caption images as they translate sentences; the model keeps no state between calls.

Shapes: B batch, C channels, (H_img, W_img) image, (h, w) feature map, S = h·w positions, D annotation size,
E embedding, H hidden, T words, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from dnn.checks import choice, positive_int
from dnn.errors import ConfigError
from dnn.io import PAD_ID
from dnn.layers.attention import SCORES, Attention
from dnn.layers.conv import ConvBNAct
from dnn.models.recurrent_stack import RecurrentFields, make_rnn
from dnn.models.registry import register_model
from dnn.models.token_ids import check_tokens, token_cross_entropy

__all__ = ["CaptionConfig", "CaptionEncoder", "CaptionModel", "CaptionState", "coordinate_channels"]


@dataclass(kw_only=True)
class CaptionConfig(RecurrentFields):
    """CNN encoder + attention RNN decoder. ``channels``: the conv stages (each halves the feature map).

    The recurrent stack's keys (:class:`RecurrentFields`), with this model's defaults: an LSTM or a GRU, 1 layer
    of 256.
    """

    vocab_size: int
    in_channels: int = 1
    channels: tuple[int, ...] = (32, 64)
    feature_size: int = 128  # D, the size of an annotation vector a_s
    coordinates: bool = True  # append each position's (x, y) before the 1×1 projection
    embedding_size: int = 64
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 256
    attention: Literal["dot", "general", "concat"] = "concat"
    attention_hidden_size: int | None = None
    gate: bool = True  # β_t
    doubly_stochastic: float = 0.0  # λ of the attention penalty

    def __post_init__(self):
        where = "caption_attention"
        for name in ("vocab_size", "in_channels", "feature_size", "embedding_size"):
            positive_int(f"{where}: {name}", getattr(self, name))
        self._check_recurrent(where, cells=("lstm", "gru"))
        if self.vocab_size < 5:
            raise ConfigError(f"{where}: vocab_size must be at least 5 (4 special tokens and a word), got "
                              f"{self.vocab_size}")  # fmt: skip
        if not self.channels:
            raise ConfigError(f"{where}: channels must list at least one conv stage, got {self.channels!r}")
        for c in self.channels:
            positive_int(f"{where}: channels[i]", c)
        choice(f"{where}: attention", self.attention, SCORES)
        if self.attention == "dot" and self.feature_size != self.hidden_size:
            raise ConfigError(
                f"{where}: attention='dot' needs feature_size ({self.feature_size}) == hidden_size "
                f"({self.hidden_size}); use 'general' or 'concat', or make them equal"
            )
        if self.attention_hidden_size is not None and self.attention != "concat":
            raise ConfigError(f"{where}: attention_hidden_size is only used by attention='concat'")
        if not self.doubly_stochastic >= 0:
            raise ConfigError(f"{where}: doubly_stochastic (λ) must be ≥ 0, got {self.doubly_stochastic!r}")


def coordinate_channels(h: int, w: int, like: Tensor) -> Tensor:
    """Each position's x and y, evenly spaced in [−1, 1]: ``(2, h, w)`` (x first)."""
    ys = torch.linspace(-1.0, 1.0, h, dtype=like.dtype, device=like.device) if h > 1 else like.new_zeros(1)
    xs = torch.linspace(-1.0, 1.0, w, dtype=like.dtype, device=like.device) if w > 1 else like.new_zeros(1)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    return torch.stack([grid_x, grid_y])  # (2, h, w)


class CaptionEncoder(nn.Module):
    """Images ``(B, C, H_img, W_img)`` → annotation vectors ``(B, S, D)`` and the feature map's ``(h, w)``."""

    def __init__(self, config: CaptionConfig):
        super().__init__()
        layers: list[nn.Module] = []
        previous = config.in_channels
        for c in config.channels:
            layers += [ConvBNAct(previous, c, 3), ConvBNAct(c, c, 3), nn.MaxPool2d(2)]
            previous = c
        self.body = nn.Sequential(*layers)
        self.coordinates = config.coordinates
        self.project = ConvBNAct(previous + (2 if config.coordinates else 0), config.feature_size, 1)  # W_a

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        features = self.body(images)  # (B, C, h, w)
        B, _, h, w = features.shape
        if self.coordinates:
            coords = coordinate_channels(h, w, features).expand(B, -1, -1, -1)  # (B, 2, h, w)
            features = torch.cat([features, coords], dim=1)  # (B, C + 2, h, w)
        a = self.project(features)  # (B, D, h, w)
        return a.flatten(2).transpose(1, 2), (h, w)  # (B, S, D), positions row by row


@dataclass(frozen=True, eq=False)
class CaptionState:
    """What :meth:`CaptionModel.decode_step` needs; batch along dim 0 except ``hidden`` (torch's ``(L, B, H)``)."""

    hidden: Tensor | tuple[Tensor, Tensor]  # s_{t−1}: (L, B, H); LSTM: (h, c)
    annotations: Tensor  # a: (B, S, D)
    projected: Tensor  # the attention's key projection of a, computed once: (B, S, P)
    grid: tuple[int, int]  # (h, w) of the feature map, S = h·w

    def index_select(self, indices: Tensor) -> CaptionState:
        """The state of the batch rows ``indices (B',)`` (repeats allowed): beam search's reordering."""
        if isinstance(self.hidden, tuple):
            hidden = tuple(h.index_select(1, indices) for h in self.hidden)
        else:
            hidden = self.hidden.index_select(1, indices)
        return CaptionState(
            hidden, self.annotations.index_select(0, indices), self.projected.index_select(0, indices), self.grid
        )

    @property
    def top(self) -> Tensor:
        """h_{t−1} of the top layer ``(B, H)``: the attention's query."""
        h = self.hidden[0] if isinstance(self.hidden, tuple) else self.hidden
        return h[-1]


class CaptionModel(nn.Module):
    """Show, Attend and Tell (equations in the module docstring).

    ``encode(images, positions=None) -> CaptionState``; ``decode_step(prev_token, state) -> (logits, state,
    α)``; ``forward(images, tgt_in) -> (logits (B, T, V), α (B, T, S))``.
    """

    def __init__(self, config: CaptionConfig):
        super().__init__()
        self.config = c = config
        self.encoder = CaptionEncoder(c)
        self.init_h = nn.ModuleList(nn.Linear(c.feature_size, c.hidden_size) for _ in range(c.num_layers))
        self.init_c = (
            nn.ModuleList(nn.Linear(c.feature_size, c.hidden_size) for _ in range(c.num_layers))
            if c.cell == "lstm" else None
        )  # fmt: skip
        self.attention = Attention(c.hidden_size, c.feature_size, c.attention, c.attention_hidden_size)
        self.gate = nn.Linear(c.hidden_size, 1) if c.gate else None  # W_β, b_β
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=PAD_ID)  # E
        self.rnn = make_rnn(c.embedding_size + c.feature_size, c.stack())
        self.out_h = nn.Linear(c.hidden_size, c.embedding_size)  # L_h
        self.out_z = nn.Linear(c.feature_size, c.embedding_size, bias=False)  # L_z
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.embedding_size, c.vocab_size)  # L_o

    def _check_images(self, images: Tensor) -> None:
        C = self.config.in_channels
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != C:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ConfigError(f"images must have shape (B, {C}, H_img, W_img), got {got}")

    def encode(self, images: Tensor, positions: Tensor | None = None) -> CaptionState:
        """Annotate ``images (B, C, H_img, W_img)`` and return the decoder's initial state.

        ``positions (B,)``, if given, must be S for every image (every position is real): it is accepted so that
        :func:`dnn.decoding.beam_search`, which reads the source lengths, keeps all S weights of each word.
        """
        self._check_images(images)
        a, grid = self.encoder(images)  # (B, S, D)
        S = a.shape[1]
        if positions is not None and not bool((torch.as_tensor(positions) == S).all()):
            raise ConfigError(f"positions must be the number of feature-map positions ({S}) for every image")
        mean = a.mean(dim=1)  # ā: (B, D)
        h0 = torch.stack([torch.tanh(layer(mean)) for layer in self.init_h])  # (L, B, H)
        hidden = h0 if self.init_c is None else (h0, torch.stack([torch.tanh(layer(mean)) for layer in self.init_c]))
        return CaptionState(hidden, a, self.attention.project_keys(a), grid)

    def decode_step(self, prev_token: Tensor, state: CaptionState) -> tuple[Tensor, CaptionState, Tensor]:
        """``prev_token (B,)`` → logits ``(B, V)``, the next state, the attention α_t ``(B, S)``."""
        check_tokens("prev_token", prev_token, self.config.vocab_size, dim=1)
        query = state.top  # h_{t−1}: (B, H)
        z, alpha = self.attention(query, state.annotations, projected_keys=state.projected)  # (B, D), (B, S)
        if self.gate is not None:
            z = torch.sigmoid(self.gate(query)) * z  # β_t z_t
        e = self.embedding(prev_token)  # E y_{t−1}: (B, E)
        out, hidden = self.rnn(torch.cat([e, z], dim=-1).unsqueeze(1), state.hidden)  # (B, 1, H)
        h = out.squeeze(1)  # (B, H)
        logits = self.output(self.dropout(e + self.out_h(h) + self.out_z(z)))  # (B, V)
        return logits, CaptionState(hidden, state.annotations, state.projected, state.grid), alpha

    def forward(self, images: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced decoding of ``tgt_in (B, T)`` (``<sos> y_1 … y_{T−1}``, <pad> at the end): logits
        ``(B, T, V)`` and attention ``(B, T, S)``. Padding at the end cannot change earlier steps."""
        check_tokens("tgt_in", tgt_in, self.config.vocab_size)
        state = self.encode(images)
        logits, alphas = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, alpha = self.decode_step(tgt_in[:, t], state)  # (B, V), ..., (B, S)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)

    def loss(self, logits: Tensor, targets: Tensor, attention: Tensor | None = None) -> Tensor:
        """Mean cross-entropy per real word (``targets (B, T)`` = ``y_1 … y_n <eos>``, −100 after), plus
        λ · mean_b Σ_s (1 − Σ_t α_{t,s})² over the real steps when ``doubly_stochastic`` = λ > 0."""
        loss = token_cross_entropy(logits, targets)
        lam = self.config.doubly_stochastic
        if lam > 0 and attention is not None:
            real = (targets >= 0).unsqueeze(-1).to(attention.dtype)  # (B, T, 1)
            coverage = (attention * real).sum(dim=1)  # Σ_t α_{t,s}: (B, S)
            loss = loss + lam * ((1.0 - coverage) ** 2).sum(dim=1).mean()
        return loss


@register_model("caption_attention", CaptionConfig)
def caption_attention(config: CaptionConfig) -> CaptionModel:
    """Show, Attend and Tell: CNN feature-map positions as keys, an LSTM/GRU decoder with attention over them."""
    return CaptionModel(config)
