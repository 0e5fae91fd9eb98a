"""Self-attention and the Transformer's layers (Vaswani et al. 2017), written from the paper's equations.

Scaled dot-product attention of T queries over S keys, and h heads of it over learned projections::

    Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V            M_{t,s} = 0 where query t may look at key s, −∞ where
                                                             not (a padded key; a later target step)
    head_i = Attention(X_q W_i^Q, X_kv W_i^K, X_kv W_i^V)    d = E / h per head
    MultiHead(X_q, X_kv) = [head_1; …; head_h] W^O

A Transformer layer wraps each sublayer in a residual connection and a layer normalisation; ``norm_first`` picks
where the normalisation goes::

    post-norm (the paper's; torch's default):  x = LN(x + Dropout(Sublayer(x)))
    pre-norm  (norm_first; Xiong et al. 2020): x = x + Dropout(Sublayer(LN(x)))   a clean residual path: trains
                                                                                 without a learning-rate warm-up
    FFN(x) = W_2 Dropout(ReLU(W_1 x + b_1)) + b_2

An encoder layer is self-attention then FFN; a decoder layer is self-attention under the causal mask (step t sees
steps ≤ t only), then attention over the encoder's output (the memory), then FFN.

Positions enter once, added to the embeddings (the model does that; see :func:`sinusoidal_positions`)::

    PE(pos, 2i) = sin(pos / 10000^(2i/E)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/E))

Parameters are named and shaped as torch's (``in_proj_weight`` = [W^Q; W^K; W^V] of shape (3E, E),
``in_proj_bias``, ``out_proj``; ``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``), so
``torch.nn.MultiheadAttention``, ``TransformerEncoderLayer`` and ``TransformerDecoderLayer`` load our state dicts
with ``strict=True`` and back, and are the test oracles.

Masks follow :class:`dnn.layers.attention.Attention`: a bool tensor, True where a key is real (may be looked at).
That module scores one query per row against a ``(B, S)`` key mask; a decoder's causal mask differs per query
``(T, S)``, so the softmax here takes any mask that broadcasts to ``(B, h, T, S)``. As there, a masked key gets
weight exactly 0, and a query with no key to look at gets weights 0 and output 0.

Shapes: B batch, T query (target) steps, S key (source) steps, E model size, h heads, d = E / h.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import number_in, positive_int
from dnn.errors import ConfigError

__all__ = [
    "MultiHeadAttention",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "causal_mask",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
]


def sinusoidal_positions(length: int, size: int, offset: int = 0, device=None, dtype=None) -> Tensor:
    """PE for positions ``offset … offset + length − 1``: ``(length, size)`` (``size`` even)."""
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    i2 = torch.arange(0, size, 2, device=device, dtype=torch.float64)  # 2i: (E/2,)
    angle = pos / 10000.0 ** (i2 / size)  # pos / 10000^(2i/E): (T, E/2)
    pe = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(length, size)  # sin, cos interleaved: (T, E)
    return pe.to(dtype or torch.get_default_dtype())


def causal_mask(length: int, device=None) -> Tensor:
    """``(T, T)`` bool, True on and below the diagonal: step t may look at steps s ≤ t."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0, training: bool = False
) -> tuple[Tensor, Tensor]:
    """softmax(Q Kᵀ / √d, masked) V for ``q (…, T, d)``, ``k, v (…, S, d)``; ``mask`` broadcasts to ``(…, T, S)``.

    Returns the output ``(…, T, d)`` and the weights ``(…, T, S)`` (before attention dropout).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # Q Kᵀ / √d: (…, T, S)
    if mask is None:
        weights = torch.softmax(scores, dim=-1)
    else:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(−∞) = 0: a masked key gets weight 0
        empty = ~mask.any(dim=-1, keepdim=True)  # (…, T, 1): a query with no key to look at
        weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(~mask | empty, 0.0)
    attended = F.dropout(weights, dropout, training) if dropout > 0 else weights
    return attended @ v, weights  # (…, T, d), (…, T, S)


class MultiHeadAttention(nn.Module):
    """MultiHead(X_q, X_kv) = [head_1; …; head_h] W^O, head_i = Attention(X_q W_i^Q, X_kv W_i^K, X_kv W_i^V).

    ``in_proj_weight`` (3E, E) stacks W^Q, W^K, W^V (each the h heads' (d, E) blocks one under the other) and
    ``out_proj`` is W^O, as in ``torch.nn.MultiheadAttention``. The steps are public so that a decoder can project
    a memory's keys and values once per sentence (:meth:`project_keys_values`) and attend from one new query at a
    time (:meth:`project_queries`, :meth:`attend`); :meth:`forward` is the three in a row.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        positive_int("MultiHeadAttention: embed_dim", embed_dim)
        positive_int("MultiHeadAttention: num_heads", num_heads)
        if embed_dim % num_heads:
            raise ConfigError(
                f"MultiHeadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout = number_in("MultiHeadAttention: dropout", dropout, 0, 1, high_open=True)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))  # [W^Q; W^K; W^V]
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: Xavier-uniform W^Q, W^K, W^V; zero biases."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, T, d)

    def _project(self, x: Tensor, part: slice) -> Tensor:
        bias = None if self.in_proj_bias is None else self.in_proj_bias[part]
        return F.linear(x, self.in_proj_weight[part], bias)

    def project_queries(self, x: Tensor) -> Tensor:
        """Q = X W^Q: ``(B, T, E)`` → ``(B, h, T, d)``."""
        return self._split_heads(self._project(x, slice(0, self.embed_dim)))

    def project_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """K = X W^K, V = X W^V in one product: ``(B, S, E)`` → two ``(B, h, S, d)``."""
        k, v = self._project(x, slice(self.embed_dim, None)).chunk(2, dim=-1)  # (B, S, E) each
        return self._split_heads(k), self._split_heads(v)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The heads' attention and W^O: ``q (B, h, T, d)``, ``k, v (B, h, S, d)``, ``mask`` broadcasting to
        ``(B, h, T, S)`` → output ``(B, T, E)`` and weights ``(B, h, T, S)``."""
        heads, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout, self.training)  # (B, h, T, d)
        B, _, T, _ = heads.shape
        concat = heads.transpose(1, 2).reshape(B, T, self.embed_dim)  # [head_1; …; head_h]: (B, T, E)
        return self.out_proj(concat), weights

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor | None = None, mask: Tensor | None = None, causal: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``query (B, T, E)`` attends over ``key`` / ``value (B, S, E)`` (value = key if None).

        Args:
            mask: ``(B, S)`` bool, True for a real key (False: padding, weight exactly 0).
            causal: query t may only look at keys s ≤ t (self-attention of a decoder; needs T = S).

        Returns:
            output ``(B, T, E)`` and weights ``(B, h, T, S)``.
        """
        if query.dim() != 3 or query.shape[-1] != self.embed_dim or key.dim() != 3 or key.shape[-1] != self.embed_dim:
            raise ConfigError(
                f"MultiHeadAttention: query and key must have shape (B, *, {self.embed_dim}); got "
                f"{tuple(query.shape)} and {tuple(key.shape)}"
            )
        if value is None or value is key:
            k, v = self.project_keys_values(key)  # (B, h, S, d) each
        else:
            E = self.embed_dim
            k = self._split_heads(self._project(key, slice(E, 2 * E)))  # (B, h, S, d)
            v = self._split_heads(self._project(value, slice(2 * E, None)))
        allowed = None
        if mask is not None:
            if mask.shape != key.shape[:2] or mask.dtype != torch.bool:
                raise ConfigError(
                    f"MultiHeadAttention: mask must be a bool tensor (B, S) = {tuple(key.shape[:2])}, True = real "
                    f"key; got {tuple(mask.shape)} {mask.dtype}"
                )
            allowed = mask[:, None, None, :]  # (B, 1, 1, S)
        if causal:
            if query.shape[1] != key.shape[1]:
                raise ConfigError("MultiHeadAttention: causal needs as many queries as keys (self-attention)")
            future = causal_mask(query.shape[1], query.device)  # (T, T)
            allowed = future if allowed is None else allowed & future  # (B, 1, T, T)
        return self.attend(self.project_queries(query), k, v, allowed)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"


class _Sublayers(nn.Module):
    """What both layers share: the FFN, and a sublayer wrapped in its residual connection and normalisation."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, norm_first: bool):
        super().__init__()
        self.norm_first = bool(norm_first)
        self.linear1 = nn.Linear(d_model, dim_feedforward)  # W_1, b_1
        self.linear2 = nn.Linear(dim_feedforward, d_model)  # W_2, b_2
        self.dropout = nn.Dropout(dropout)  # inside the FFN

    def feedforward(self, x: Tensor) -> Tensor:
        """FFN(x) = W_2 Dropout(ReLU(W_1 x + b_1)) + b_2, position by position."""
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def wrap(self, x: Tensor, sublayer, norm: nn.LayerNorm, dropout: nn.Dropout):
        """x + Dropout(Sublayer(LN(x))) (pre-norm) or LN(x + Dropout(Sublayer(x))) (post-norm).

        ``sublayer(x) -> (y, extra)``; returns ``(new x, extra)``.
        """
        if self.norm_first:
            y, extra = sublayer(norm(x))
            return x + dropout(y), extra
        y, extra = sublayer(x)
        return norm(x + dropout(y)), extra


def _check_layer_args(where: str, d_model: int, nhead: int, dim_feedforward: int) -> None:
    for name, value in (("d_model", d_model), ("nhead", nhead), ("dim_feedforward", dim_feedforward)):
        positive_int(f"{where}: {name}", value)


class TransformerEncoderLayer(_Sublayers):
    """x = x + SelfAttn(x) then x = x + FFN(x), each with dropout and a LayerNorm (pre- or post-norm).

    torch's ``TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first)``
    with ReLU: the same parameters under the same names.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 norm_first: bool = False, layer_norm_eps: float = 1e-5):  # fmt: skip
        _check_layer_args("TransformerEncoderLayer", d_model, nhead, dim_feedforward)
        super().__init__(d_model, dim_feedforward, dropout, norm_first)
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x (B, S, E)``, ``mask (B, S)`` True = real token → ``(B, S, E)``."""
        x, _ = self.wrap(x, lambda y: self.self_attn(y, y, mask=mask), self.norm1, self.dropout1)
        x, _ = self.wrap(x, lambda y: (self.feedforward(y), None), self.norm2, self.dropout2)
        return x


class TransformerDecoderLayer(_Sublayers):
    """y = y + SelfAttn(y) (causal), y = y + CrossAttn(y, memory), y = y + FFN(y); pre- or post-norm.

    torch's ``TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first)``
    with ReLU: the same parameters under the same names. :meth:`forward` runs all target steps at once (training);
    :meth:`step` runs one new step against the keys and values of the earlier ones (decoding).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 norm_first: bool = False, layer_norm_eps: float = 1e-5):  # fmt: skip
        _check_layer_args("TransformerDecoderLayer", d_model, nhead, dim_feedforward)
        super().__init__(d_model, dim_feedforward, dropout, norm_first)
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout)
        self.multihead_attn = MultiHeadAttention(d_model, nhead, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _rest(self, y: Tensor, memory_kv: tuple[Tensor, Tensor], memory_mask: Tensor | None):
        """Cross-attention over the memory's keys and values, then the FFN → ``(y, weights (B, h, T, S))``."""
        allowed = None if memory_mask is None else memory_mask[:, None, None, :]  # (B, 1, 1, S)
        cross = lambda z: self.multihead_attn.attend(self.multihead_attn.project_queries(z), *memory_kv, allowed)  # noqa: E731
        y, weights = self.wrap(y, cross, self.norm2, self.dropout2)
        y, _ = self.wrap(y, lambda z: (self.feedforward(z), None), self.norm3, self.dropout3)
        return y, weights

    def forward(self, y: Tensor, memory: Tensor, memory_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``y (B, T, E)`` (all target steps), ``memory (B, S, E)``, ``memory_mask (B, S)`` True = real → ``(B, T,
        E)`` and the cross-attention weights ``(B, h, T, S)``."""
        y, _ = self.wrap(y, lambda z: self.self_attn(z, z, causal=True), self.norm1, self.dropout1)
        return self._rest(y, self.multihead_attn.project_keys_values(memory), memory_mask)

    def step(self, y: Tensor, past: tuple[Tensor, Tensor], memory_kv: tuple[Tensor, Tensor],
             memory_mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:  # fmt: skip
        """One new target step ``y (B, 1, E)``; ``past`` = the self-attention's keys and values of the earlier
        steps ``(B, h, t, d)`` each; ``memory_kv`` = :meth:`MultiHeadAttention.project_keys_values` of the memory.

        Step t attends over steps ≤ t, as :meth:`forward` does under the causal mask, so the outputs agree.
        Returns the output ``(B, 1, E)``, the keys and values with this step's appended ``(B, h, t + 1, d)``, and
        the cross-attention weights ``(B, h, 1, S)``.
        """

        def attend_past(z: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            k, v = self.self_attn.project_keys_values(z)  # (B, h, 1, d)
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, h, t + 1, d)
            out, _ = self.self_attn.attend(self.self_attn.project_queries(z), k, v)  # every step ≤ t: no mask
            return out, (k, v)

        y, keys_values = self.wrap(y, attend_past, self.norm1, self.dropout1)
        y, weights = self._rest(y, memory_kv, memory_mask)
        return y, keys_values, weights
