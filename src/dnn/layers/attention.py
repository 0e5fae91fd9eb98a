"""Attention written from the lecture's equations: dot, general (Luong) and concat (Bahdanau) scores.

A query ``q`` (the decoder's state at one target step) scores every key ``k_s`` (the encoder's states), a
softmax over the source steps turns the scores into weights, and the context is the weighted sum of the values
(the keys themselves unless given)::

    score(q, k) = qᵀ k                          "dot"      (query_size == key_size)
    score(q, k) = qᵀ W k                        "general"  (Luong: the learnable weighted dot-product)
    score(q, k) = vᵀ tanh(W [q; k])             "concat"   (Bahdanau: additive)
               = vᵀ tanh(W_q q + W_k k + b)     W split in two: the keys are projected once, not once a step

    a_s = softmax_s(score(q, k_s))              masked (padded) keys get a_s = 0
    context = Σ_s a_s v_s

Shapes: B batch, T target steps, S source steps, Hq/Hk/Hv the query, key and value sizes, H the hidden size of
the concat score. The module keeps no state between calls: a decoder that wants the keys projected once per
source sentence calls :meth:`Attention.project_keys` itself and passes the result to every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dnn.checks import choice, positive_int
from dnn.errors import ConfigError

__all__ = ["SCORES", "Attention", "additive_scores"]

SCORES = ("dot", "general", "concat")


class Attention(nn.Module):
    """Attention of a query over keys and values with a ``"dot"``, ``"general"`` or ``"concat"`` score.

    score(q, k) = qᵀ k                          dot:     no parameters
    score(q, k) = qᵀ (W k)                      general: W = ``key_proj``, Linear(Hk → Hq, no bias)
    score(q, k) = vᵀ tanh(W_q q + W_k k + b)    concat:  W_q = ``query_proj``, Linear(Hq → H, no bias),
                                                         W_k, b = ``key_proj``, Linear(Hk → H),
                                                         v = ``v``, Linear(H → 1, no bias)

    ``W k`` (general) and ``W_k k + b`` (concat) depend on the keys only: :meth:`project_keys` computes them
    once per source sentence and ``forward(..., projected_keys=...)`` reuses them at every target step.

    Args:
        query_size: Hq, the size of a query vector.
        key_size: Hk, the size of a key vector.
        score: ``"dot"``, ``"general"`` or ``"concat"``.
        hidden_size: H of the concat score (default ``key_size``); must be None for dot and general.
    """

    def __init__(self, query_size: int, key_size: int, score: str = "dot", hidden_size: int | None = None):
        super().__init__()
        choice("Attention: score", score, SCORES)
        positive_int("Attention: query_size", query_size)
        positive_int("Attention: key_size", key_size)
        if score == "dot" and query_size != key_size:
            raise ConfigError(
                f"Attention: score='dot' needs key_size == query_size ({query_size}); got key_size={key_size}"
            )
        if score != "concat" and hidden_size is not None:
            raise ConfigError(f"Attention: hidden_size must be None for score={score!r}; got {hidden_size!r}")
        if score == "concat":
            hidden_size = key_size if hidden_size is None else hidden_size
            positive_int("Attention: hidden_size", hidden_size, expected="a positive integer or None")

        self.score = score
        self.query_size = query_size
        self.key_size = key_size
        self.hidden_size = hidden_size
        if score == "general":
            self.key_proj = nn.Linear(key_size, query_size, bias=False)  # W
        elif score == "concat":
            self.query_proj = nn.Linear(query_size, hidden_size, bias=False)  # W_q
            self.key_proj = nn.Linear(key_size, hidden_size, bias=True)  # W_k, b
            self.v = nn.Linear(hidden_size, 1, bias=False)  # v

    @property
    def projected_size(self) -> int:
        """The last size of :meth:`project_keys`' result: Hk (dot), Hq (general) or H (concat)."""
        return {"dot": self.key_size, "general": self.query_size, "concat": self.hidden_size}[self.score]

    def extra_repr(self) -> str:
        text = f"query_size={self.query_size}, key_size={self.key_size}, score={self.score!r}"
        return text + (f", hidden_size={self.hidden_size}" if self.score == "concat" else "")

    def project_keys(self, keys: Tensor) -> Tensor:
        """The part of the score that depends on the keys only, ``(B, S, Hk)`` → ``(B, S, projected_size)``.

        dot: k itself; general: W k; concat: W_k k + b. Compute it once per source sentence and pass it to
        every target step as ``forward(..., projected_keys=...)``.
        """
        _check_shape("keys", keys, (("B", None), ("S", None), ("Hk", self.key_size)))
        if self.score == "dot":
            return keys  # (B, S, Hk)
        return self.key_proj(keys)  # (B, S, Hq) general, (B, S, H) concat

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        projected_keys: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``query`` over ``keys``; return ``(context, weights)``.

        Args:
            query: ``(B, T, Hq)``, or ``(B, Hq)`` for one target step.
            keys: ``(B, S, Hk)``.
            values: ``(B, S, Hv)``; the keys if None.
            mask: ``(B, S)`` bool, True for a real key, False for padding. A masked key gets weight exactly 0;
                a row whose keys are all masked gets weights 0 and context 0.
            projected_keys: :meth:`project_keys` ``(keys)``, to skip projecting the keys again.

        Returns:
            context ``(B, T, Hv)`` / ``(B, Hv)`` and weights ``(B, T, S)`` / ``(B, S)``, as the query's rank.
        """
        if query.dim() not in (2, 3) or query.shape[-1] != self.query_size:
            raise ConfigError(
                f"Attention: query must have shape (B, T, Hq) or (B, Hq) with Hq = {self.query_size}; "
                f"got {tuple(query.shape)}"
            )
        one_step = query.dim() == 2
        q = query.unsqueeze(1) if one_step else query  # (B, T, Hq)
        B = q.shape[0]
        _check_shape("keys", keys, (("B", B), ("S", None), ("Hk", self.key_size)))
        S = keys.shape[1]
        values = keys if values is None else values
        _check_shape("values", values, (("B", B), ("S", S), ("Hv", None)))
        if mask is not None:
            _check_shape("mask", mask, (("B", B), ("S", S)))
            if mask.dtype != torch.bool:
                raise ConfigError(f"Attention: mask must be a bool tensor (True = real key); got {mask.dtype}")
        if projected_keys is None:
            k = self.project_keys(keys)  # (B, S, Hk | Hq | H)
        else:
            _check_shape("projected_keys", projected_keys, (("B", B), ("S", S), ("P", self.projected_size)))
            k = projected_keys

        if self.score in ("dot", "general"):
            scores = torch.bmm(q, k.transpose(1, 2))  # qᵀ k or qᵀ (W k): (B, T, S)
        else:
            qp = self.query_proj(q)  # W_q q: (B, T, H)
            scores = additive_scores(qp, k, self.v.weight)  # vᵀ tanh(W_q q + W_k k + b): (B, T, S)

        if mask is None:
            weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        else:
            pad = ~mask.unsqueeze(1)  # (B, 1, S), True = padding
            empty = pad.all(dim=-1, keepdim=True)  # (B, 1, 1), True = a row with no real key
            scores = scores.masked_fill(pad, float("-inf"))  # exp(-inf) = 0: masked keys get weight 0
            scores = scores.masked_fill(empty, 0.0)  # all -inf would give NaN; the row is zeroed below
            weights = torch.softmax(scores, dim=-1).masked_fill(pad, 0.0)  # (B, T, S)
        context = torch.bmm(weights, values)  # Σ_s a_s v_s: (B, T, Hv)

        if one_step:
            return context.squeeze(1), weights.squeeze(1)  # (B, Hv), (B, S)
        return context, weights


class _AdditiveScores(torch.autograd.Function):
    """The concat score of every (query, key) pair, its (B, T, S, H) intermediate made and differentiated in place.

    Forward, with p_t = W_q q_t and k_s = W_k k_s + b already projected, and tanh(x) = 2σ(2x) − 1::

        u_{t,s} = σ(2p_t + 2k_s) − ½                  (B, T, S, H), kept for the backward; tanh(p_t + k_s) = 2u_{t,s}
        score_{t,s} = vᵀ tanh(p_t + k_s) = (2v)ᵀ u_{t,s}                                       (B, T, S)

    Backward, with g = ∂L/∂score and tanh' = 1 − tanh² = 1 − 4u²::

        ∂L/∂v = Σ_{t,s} g_{t,s} 2u_{t,s}
        δ_{t,s} = (1 − 4u_{t,s}²) ⊙ g_{t,s} v         written over u: no second (B, T, S, H) buffer
        ∂L/∂p_t = Σ_s δ_{t,s}        ∂L/∂k_s = Σ_t δ_{t,s}

    The (B, T, S, H) tensor is the largest of a seq2seq training step. Autograd through ``torch.tanh(p + k)`` and
    a Linear makes three more passes over it, and torch's CPU tanh costs ten times its sigmoid (2.1 against 0.2
    ns a number here, AVX-512): this runs the attention about three times as fast, equal within float rounding.
    A second backward through a retained graph recomputes u, since the first one wrote over it.
    """

    @staticmethod
    def _halved_tanh(p: Tensor, k: Tensor) -> Tensor:
        dtype = torch.result_type(p, k)
        u = torch.add((2 * p).unsqueeze(2), k.unsqueeze(1), alpha=2).to(dtype)  # 2p_t + 2k_s: (B, T, S, H)
        return u.sigmoid_().sub_(0.5)  # u = σ(2(p + k)) − ½ = tanh(p + k) / 2

    @staticmethod
    def forward(ctx, p: Tensor, k: Tensor, v: Tensor) -> Tensor:
        u = _AdditiveScores._halved_tanh(p, k)  # (B, T, S, H)
        ctx.save_for_backward(p, k, v)
        ctx.u, ctx.u_intact = u, True  # an intermediate: kept on ctx (save_for_backward is for inputs and outputs)
        return torch.matmul(u, 2 * v.reshape(-1).to(u.dtype))  # (2v)ᵀ u: (B, T, S)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p, k, v = ctx.saved_tensors
        u = ctx.u if ctx.u_intact else _AdditiveScores._halved_tanh(p, k)  # a retained graph's second backward
        ctx.u_intact = False
        H = u.shape[-1]
        g = g.to(u.dtype)
        dv = g.reshape(1, -1).mm(u.reshape(-1, H)).mul_(2).view_as(v)  # Σ g 2u: (1, H)
        delta = u.mul_(u).mul_(-4).add_(1).mul_(g.unsqueeze(-1)).mul_(v.reshape(-1).to(u.dtype))  # (B, T, S, H)
        return delta.sum(2).to(p.dtype), delta.sum(1).to(k.dtype), dv.to(v.dtype)


def additive_scores(p: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """score_{t,s} = vᵀ tanh(p_t + k_s) for ``p (B, T, H)``, ``k (B, S, H)``, ``v (1, H)`` → ``(B, T, S)``."""
    return _AdditiveScores.apply(p, k, v)


def _check_shape(name: str, tensor: Tensor, dims: tuple[tuple[str, int | None], ...]) -> None:
    """Raise a one-line ConfigError unless ``tensor`` has one dimension per ``(letter, size)`` (None: any)."""
    shape = tuple(tensor.shape)
    if len(shape) == len(dims) and all(size in (None, got) for (_, size), got in zip(dims, shape, strict=True)):
        return
    letters = ", ".join(letter for letter, _ in dims)
    sizes = ", ".join("*" if size is None else str(size) for _, size in dims)
    raise ConfigError(f"Attention: {name} must have shape ({letters}) = ({sizes}); got {shape}")
