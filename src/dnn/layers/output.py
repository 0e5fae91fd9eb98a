"""The output layer and its loss in one: softmax cross-entropy over a vocabulary, without the log-probabilities.

A decoder's last step maps each position's state x ``(H)`` to a distribution over V words and is trained with the
cross-entropy of the gold word y (``label_smoothing`` ε: against (1 − ε)·one-hot + ε/V)::

    logits = W x + b                     (N, V)
    p = softmax(logits)                  (N, V)
    loss = mean over real rows of −(1 − ε) log p_y − (ε / V) Σ_v log p_v
    ∂loss/∂logits = (p − (1 − ε)·one-hot(y) − ε/V) / N

Written as ``F.cross_entropy(F.linear(x, W, b), y)`` autograd keeps the logits, the log-probabilities (another
N × V buffer), and in the backward pass fills an N × V gradient with zeros, scatters into it and multiplies it
through log-softmax's backward: four more passes over the largest tensors of a translation step (N = 2,000 target
words and V = 8,000 make 64 MB each). :func:`linear_cross_entropy` computes the same numbers with

- the rows whose target is ``ignore_index`` (padding) left out before the product, not after it;
- one N × V buffer: the logits, turned into p in place; the backward pass subtracts the one-hot entries from it
  (N numbers) and feeds it straight to the two products, whose small results (N × H, V × H) take the scale 1/N
  and the smoothing term (ε/V times a column sum) instead of the N × V matrix.

Under autocast the products run in the autocast precision and the softmax in fp32, as torch's cross-entropy does.
Checked against ``F.cross_entropy(F.linear(...))`` to 1e-12 in float64, outputs and gradients, with and without
smoothing and padding (tests/unit/test_output_layer.py).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["linear_cross_entropy"]


class _LinearCrossEntropy(torch.autograd.Function):
    """x ``(N, H)`` real rows only, y ``(N,)``; returns the mean loss. See the module docstring."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, y: Tensor, eps: float) -> Tensor:
        device_type = x.device.type
        low = torch.is_autocast_enabled(device_type)
        ctx.autocast = (device_type, torch.get_autocast_dtype(device_type)) if low else None
        logits = torch.nn.functional.linear(x, weight, bias)  # (N, V), in the autocast precision if on
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the softmax and the loss in fp32, as autocast runs torch's cross-entropy
        N, V = logits.shape
        target = y.unsqueeze(1)  # (N, 1)
        picked = logits.gather(1, target).squeeze(1)  # logit of the gold word (N,)
        row_sum = logits.sum(1) if eps > 0 else None  # Σ_v logits_v, for the smoothing term
        top = logits.amax(1)  # the largest logit of each row (N,)
        if logits.device.type == "cpu":
            p = torch.softmax(logits, 1, out=logits)  # in place: row by row, each read before it is written
        else:
            p = torch.softmax(logits, 1)
        del logits
        # log-sum-exp from the largest probability, which is at least 1/V and so never underflows:
        # p_top = exp(logit_top − lse)  ⇒  lse = logit_top − log p_top
        lse = top - p.amax(1).log()  # (N,)
        nll = lse - picked  # −log p_y, exact however small p_y is
        if eps > 0:
            uniform = lse - row_sum / V  # −(1/V) Σ_v log p_v = lse − mean_v logits_v
            per_row = nll.mul(1 - eps).add_(uniform, alpha=eps)
        else:
            per_row = nll
        ctx.save_for_backward(x, weight, y)
        ctx.p, ctx.eps, ctx.has_bias = p, eps, bias is not None
        return per_row.mean()  # fp32 under autocast, as torch's cross-entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, y = ctx.saved_tensors
        p, eps = ctx.p, ctx.eps
        if p is None:
            raise RuntimeError("linear_cross_entropy: the backward pass ran once already and used up its buffer; "
                               "compute the loss again to differentiate it again")  # fmt: skip
        ctx.p = None  # the backward pass writes its gradient over p
        N, V = p.shape
        # p − (1 − ε)·one-hot(y): the one-hot part is N numbers
        p.scatter_add_(1, y.unsqueeze(1), p.new_full((N, 1), -(1.0 - eps)))
        autocast = torch.autocast(*ctx.autocast) if ctx.autocast else torch.autocast(x.device.type, enabled=False)
        with autocast:  # the two products in the precision the forward one ran in
            dx, dw = p.mm(weight), p.t().mm(x)  # (N, H), (V, H)
        dx, dw = dx.to(p.dtype), dw.to(p.dtype)
        db = p.sum(0) if ctx.has_bias else None  # (V,)
        if eps > 0:  # the −ε/V in every entry, applied to the small results: column sums of W and x
            dx.sub_(weight.sum(0).to(p.dtype), alpha=eps / V)
            dw.sub_(x.sum(0).to(p.dtype), alpha=eps / V)
            if db is not None:
                db.sub_(N * eps / V)
        scale = grad.to(p.dtype) / N
        dx, dw = dx.mul_(scale).to(x.dtype), dw.mul_(scale).to(weight.dtype)
        if db is not None:
            db = db.mul_(scale).to(weight.dtype)
        return dx, dw, db, None, None


def linear_cross_entropy(x: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, *,
                         ignore_index: int = -100, label_smoothing: float = 0.0) -> Tensor:  # fmt: skip
    """``F.cross_entropy(F.linear(x, weight, bias), targets, ignore_index=…, label_smoothing=…)`` (mean over the
    real targets), computed without the log-probabilities and only at the rows whose target is real.

    ``x (..., H)``, ``weight (V, H)``, ``bias (V,)`` or None, ``targets (...)`` of word ids, ``ignore_index`` where
    there is no word. Like torch's, the mean of no rows is NaN.
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    rows = x.reshape(-1, x.shape[-1])  # (N', H)
    flat = targets.reshape(-1)  # (N',)
    if flat.shape[0] != rows.shape[0]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match x {tuple(x.shape)} without its last dimension")
    real = flat != ignore_index
    if not bool(real.all()):
        rows, flat = rows[real], flat[real]  # the padded rows never reach the product
    return _LinearCrossEntropy.apply(rows, weight, bias, flat, float(label_smoothing))
