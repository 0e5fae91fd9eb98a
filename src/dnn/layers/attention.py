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


ADDITIVE_CHUNK = 1 << 20  # numbers of the (B, T, S, H) intermediate made at a time: 4 MB in fp32, within a CPU's cache


class _AdditiveScores(torch.autograd.Function):
    """The concat score of every (query, key) pair, its (B, T, S, H) intermediate made a few batch rows at a time.

    With p_t = W_q q_t and k_s = W_k k_s + b already projected, and tanh(x) = 2σ(2x) − 1::

        σ_{t,s} = σ(2p_t + 2k_s)                                        (B, T, S, H), a chunk of rows at a time
        score_{t,s} = vᵀ tanh(p_t + k_s) = (2v)ᵀ σ_{t,s} − Σ_h v_h                          (B, T, S)

    Backward, with g = ∂L/∂score and tanh'(x) = 1 − tanh² = 4σ(1 − σ), where v factors out of both sums::

        ∂L/∂v = Σ_{t,s} g_{t,s} (2σ_{t,s} − 1)
        w_{t,s} = σ_{t,s}(1 − σ_{t,s}) g_{t,s}                          written over σ
        ∂L/∂p_t = 4v ⊙ Σ_s w_{t,s}        ∂L/∂k_s = 4v ⊙ Σ_t w_{t,s}

    The (B, T, S, H) tensor is the largest of a seq2seq training step (64 × 30 × 30 × 256 numbers, 59 MB), and
    every pass over it is a trip to main memory. Autograd through ``torch.tanh(p + k)`` and a Linear keeps it and
    makes eight passes; here it is never whole: :data:`ADDITIVE_CHUNK` numbers at a time stay in the CPU's cache
    through all their passes, and the backward pass makes σ again instead of keeping it (one add and one sigmoid,
    cheaper than the trip to memory). torch's CPU tanh costs ten times its sigmoid (2.1 against 0.2 ns a number
    here, AVX-512), hence σ. Measured at 64 × 28 × 27 × 256 on this 2-core CPU: 17 ms forward and backward at two
    threads, 23 ms at one, against 36 and 56 ms keeping the whole tensor, equal within float rounding.
    """

    @staticmethod
    def _chunks(p: Tensor, k: Tensor):
        """``(rows, σ(2p + 2k))`` for each chunk of batch rows, in one reused buffer."""
        B, T, H = p.shape
        S = k.shape[1]
        dtype = torch.result_type(p, k)
        step = max(1, ADDITIVE_CHUNK // max(1, T * S * H))
        p2, k1 = (2 * p).to(dtype).unsqueeze(2), k.to(dtype).unsqueeze(1)  # 2p (B, T, 1, H), k (B, 1, S, H)
        buffer = p.new_empty((min(step, B), T, S, H), dtype=dtype)
        for start in range(0, B, step):
            rows = slice(start, min(B, start + step))
            sigma = buffer[: rows.stop - start]
            yield rows, torch.add(p2[rows], k1[rows], alpha=2, out=sigma).sigmoid_()  # σ(2p + 2k)

    @staticmethod
    def forward(ctx, p: Tensor, k: Tensor, v: Tensor) -> Tensor:
        dtype = torch.result_type(p, k)
        ctx.v_dtype = v.dtype
        v = v.reshape(-1).to(dtype)
        scores = p.new_empty((p.shape[0], p.shape[1], k.shape[1]), dtype=dtype)  # (B, T, S)
        for rows, sigma in _AdditiveScores._chunks(p, k):
            torch.matmul(sigma, 2 * v, out=scores[rows])
        ctx.save_for_backward(p, k, v)
        return scores.sub_(v.sum())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p, k, v = ctx.saved_tensors  # v: (H,) in the scores' precision
        H = p.shape[-1]
        g = g.to(v.dtype)
        dp = p.new_empty(p.shape, dtype=v.dtype)  # Σ_s w, then 4v ⊙ it
        dk = k.new_empty(k.shape, dtype=v.dtype)  # Σ_t w, then 4v ⊙ it
        low = v.dtype in (torch.float16, torch.bfloat16)
        g_sigma = torch.zeros(H, dtype=torch.float32 if low else v.dtype, device=v.device)  # Σ g σ, summed in fp32
        for rows, sigma in _AdditiveScores._chunks(p, k):
            g_rows = g[rows]  # (b, T, S)
            g_sigma += g_rows.reshape(1, -1).mm(sigma.reshape(-1, H)).reshape(-1).to(g_sigma.dtype)  # Σ g σ
            w = torch.addcmul(sigma, sigma, sigma, value=-1, out=sigma).mul_(g_rows.unsqueeze(-1))  # σ(1 − σ) g
            torch.sum(w, dim=2, out=dp[rows])
            torch.sum(w, dim=1, out=dk[rows])
        dv = g_sigma.mul_(2).sub_(g.sum().to(g_sigma.dtype))  # Σ g (2σ − 1)
        dp, dk = dp.mul_(4 * v), dk.mul_(4 * v)
        return dp.to(p.dtype), dk.to(k.dtype), dv.reshape(1, H).to(ctx.v_dtype)


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
