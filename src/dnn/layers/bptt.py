"""Back-propagation through time, written out: one layer, one direction, forward loop and backward loop.

The reference path of :mod:`dnn.layers.recurrent` runs the cells' equations step by step: each forward step here
calls the cells' own update function (:func:`~dnn.layers.cells.rnn_update`, :func:`~dnn.layers.cells.lstm_update`,
:func:`~dnn.layers.cells.gru_update`, where the equations are written) on preallocated buffers, which keep the
activations the backward pass reads. Letting autograd differentiate that loop works, but it records ~15 tiny
operations per step and replays them one by one in the backward pass; on a CPU that bookkeeping, not the
arithmetic, is what costs (measured: the autograd loop ran at ~0.3× torch.nn.LSTM). Here the gradient of the
recurrence is derived by hand — the lecture's BPTT — so that each backward step is a handful of vectorised
operations and a single matmul, and every factor that does not depend on the incoming gradient is computed for
all steps at once, before the loop.

Each scan takes the input projection of every step ``gi = W_ih x_t (+ biases)`` ``(T, B, G·H)``, computed
outside by one matmul (autograd differentiates that part), the initial state and ``W_hh``; it returns the
hidden state of every step ``(T, B, H)`` and the final state. With ``mask`` ``(T, B, 1)`` (False where a step is
padding) the state is carried through padded steps unchanged.

Every formula below is checked against torch.nn's gradients to 1e-10 in float64 (tests/reference).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from dnn.layers.cells import gru_update, lstm_update, rnn_update

__all__ = ["gru_scan", "lstm_scan", "rnn_scan"]


def _keep(mask: Tensor | None, dtype: torch.dtype):
    """(m, 1 − m) as floats ``(T, B, 1)``, or (None, None) without a mask."""
    if mask is None:
        return None, None
    m = mask.to(dtype)
    return m, 1.0 - m


class _RNNScan(torch.autograd.Function):
    """pre_t = gi_t + W_hh h_{t−1}, then :func:`~dnn.layers.cells.rnn_update` in place: h_t = act(pre_t).

    Backward, with δh_t the total gradient reaching h_t (from the output at t and from step t+1):
        δpre_t = δh_t ⊙ act'(·)          tanh' = 1 − h_t²;  relu' = [h_t > 0]
        δh_{t−1} += W_hhᵀ δpre_t          (the factor repeated at every step: it vanishes or explodes)
        ∂L/∂W_hh = Σ_t δpre_t h_{t−1}ᵀ    ∂L/∂gi_t = δpre_t
    """

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, mask: Tensor | None, relu: bool):
        T, B, H = gi.shape
        w_t = w_hh.t()  # (H, H)
        hs = gi.new_empty(T + 1, B, H)  # h_0 … h_T
        hs[0] = h0
        h = hs.unbind(0)
        act = "relu" if relu else "tanh"
        for t in range(T):
            torch.addmm(gi[t], h[t], w_t, out=h[t + 1])  # the pre-activation (B, H)
            rnn_update(h[t + 1], act, inplace=True)
            if mask is not None:
                torch.where(mask[t], h[t + 1], h[t], out=h[t + 1])  # padding: carry h through
        ctx.save_for_backward(hs, w_hh, mask)
        ctx.relu = relu
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_hT: Tensor):
        hs, w_hh, mask = ctx.saved_tensors
        T = hs.shape[0] - 1
        m, skip = _keep(mask, hs.dtype)
        k = (hs[1:] > 0).to(hs.dtype) if ctx.relu else 1.0 - hs[1:] * hs[1:]  # act' for all steps (T, B, H)
        if m is not None:
            k = k * m
        d_pre = torch.empty_like(hs[1:])  # (T, B, H)
        dh = d_hT
        for t in range(T - 1, -1, -1):
            dh_t = dh + d_out[t]
            torch.mul(dh_t, k[t], out=d_pre[t])
            dh = d_pre[t].mm(w_hh)  # δh_{t−1} = W_hhᵀ δpre_t, as rows: (B, H)
            if skip is not None:
                dh.addcmul_(dh_t, skip[t])  # a padded step passes the gradient straight through
        d_w_hh = d_pre.flatten(0, 1).t().mm(hs[:-1].flatten(0, 1))  # Σ_t δpre_tᵀ h_{t−1}: (H, H)
        return d_pre, dh, d_w_hh, None, None


class _LSTMScan(torch.autograd.Function):
    """gates_t = gi_t + W_hh h_{t−1}, then :func:`~dnn.layers.cells.lstm_update` (its i, f, g, o, c_t and h_t).

    Backward, with δh_t, δc_t the total gradients reaching h_t and c_t:
        δc̃ = δc_t + δh_t ⊙ o ⊙ (1 − tanh²c_t)
        δi = δc̃ ⊙ g ⊙ i(1−i)      δf = δc̃ ⊙ c_{t−1} ⊙ f(1−f)
        δg = δc̃ ⊙ i ⊙ (1−g²)      δo = δh_t ⊙ tanh c_t ⊙ o(1−o)
        δc_{t−1} = δc̃ ⊙ f          the "highway": no matrix, no squashing derivative — only the forget gate
        δh_{t−1} = W_hhᵀ [δi; δf; δg; δo]
    """

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, mask: Tensor | None):
        T, B, G = gi.shape
        H = G // 4
        w_t = w_hh.t()  # (H, 4H)
        acts = gi.new_empty(T, B, G)  # i, f, g, o after their squashing functions
        hs, cs = gi.new_empty(T + 1, B, H), gi.new_empty(T + 1, B, H)
        tanh_c = gi.new_empty(T, B, H)
        hs[0], cs[0] = h0, c0
        a, h, c, tc = acts.unbind(0), hs.unbind(0), cs.unbind(0), tanh_c.unbind(0)
        for t in range(T):
            torch.addmm(gi[t], h[t], w_t, out=a[t])  # gates (B, 4H)
            lstm_update(a[t], c[t], out=(c[t + 1], tc[t], h[t + 1]))  # squashes a[t] into i, f, g, o in place
            if mask is not None:
                torch.where(mask[t], c[t + 1], c[t], out=c[t + 1])
                torch.where(mask[t], h[t + 1], h[t], out=h[t + 1])
        ctx.save_for_backward(acts, hs, cs, tanh_c, w_hh, mask)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_hT: Tensor, d_cT: Tensor):
        acts, hs, cs, tanh_c, w_hh, mask = ctx.saved_tensors
        T, B, G = acts.shape
        H = G // 4
        m, skip = _keep(mask, acts.dtype)
        i, f, g, o = acts.chunk(4, dim=2)  # (T, B, H) each
        # Every factor that does not depend on the incoming gradient, for all steps at once:
        k_c = o * (1.0 - tanh_c * tanh_c)  # ∂h_t/∂c_t
        k_o = tanh_c * o * (1.0 - o)  # ∂h_t/∂(o's pre-activation)
        k_ifg = torch.stack([g * i * (1.0 - i), cs[:-1] * f * (1.0 - f), i * (1.0 - g * g)], dim=2)  # (T, B, 3, H)
        if m is not None:
            k_c, k_o = k_c * m, k_o * m
        d_gates = acts.new_empty(T, B, 4, H)
        dh, dc = d_hT, d_cT
        for t in range(T - 1, -1, -1):
            dh_t = dh + d_out[t]
            dc_t = dc if m is None else dc * m[t]
            dc_tilde = torch.addcmul(dc_t, dh_t, k_c[t])  # δc̃
            torch.mul(dc_tilde.unsqueeze(1), k_ifg[t], out=d_gates[t, :, :3])  # δi, δf, δg
            torch.mul(dh_t, k_o[t], out=d_gates[t, :, 3])  # δo
            dh = d_gates[t].view(B, G).mm(w_hh)  # δh_{t−1} = W_hhᵀ δgates: (B, H)
            dc_prev = dc_tilde * f[t]  # δc_{t−1} = δc̃ ⊙ f
            if skip is not None:
                dh.addcmul_(dh_t, skip[t])
                dc_prev.addcmul_(dc, skip[t])
            dc = dc_prev
        d_gi = d_gates.view(T, B, G)
        d_w_hh = d_gi.flatten(0, 1).t().mm(hs[:-1].flatten(0, 1))  # Σ_t δgates_tᵀ h_{t−1}: (4H, H)
        return d_gi, dh, dc, d_w_hh, None


class _GRUScan(torch.autograd.Function):
    """gh_t = W_hh h_{t−1} + b_hh, then :func:`~dnn.layers.cells.gru_update` (its r, z, n and h_t).

    Backward, with δh_t the total gradient reaching h_t:
        δn = δh_t ⊙ (1−z) ⊙ (1−n²)        δz = δh_t ⊙ (h_{t−1} − n) ⊙ z(1−z)
        δr = δn ⊙ gh_n ⊙ r(1−r)            δgh = [δr; δz; δn ⊙ r]     δgi = [δr; δz; δn]
        δh_{t−1} = W_hhᵀ δgh + δh_t ⊙ z     z is the GRU's highway: the update gate passes h straight on
    """

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, mask: Tensor | None):
        T, B, G = gi.shape
        H = G // 3
        w_t = w_hh.t()  # (H, 3H)
        gh_all = gi.new_empty(T, B, G)  # W_hh h_{t−1} + b_hh
        rz_all = gi.new_empty(T, B, 2 * H)  # r, z
        n_all = gi.new_empty(T, B, H)
        hs = gi.new_empty(T + 1, B, H)
        hs[0] = h0
        h, gh, rz, n = hs.unbind(0), gh_all.unbind(0), rz_all.unbind(0), n_all.unbind(0)
        diff = gi.new_empty(B, H)  # scratch for h_{t−1} − n
        for t in range(T):
            if b_hh is None:
                torch.mm(h[t], w_t, out=gh[t])
            else:
                torch.addmm(b_hh, h[t], w_t, out=gh[t])  # (B, 3H)
            gru_update(gi[t], gh[t], h[t], out=(rz[t], n[t], h[t + 1], diff))  # r, z, n and h_t
            if mask is not None:
                torch.where(mask[t], h[t + 1], h[t], out=h[t + 1])
        ctx.save_for_backward(gh_all, rz_all, n_all, hs, w_hh, mask)
        ctx.has_bias = b_hh is not None
        return hs[1:], hs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_hT: Tensor):
        gh_all, rz_all, n_all, hs, w_hh, mask = ctx.saved_tensors
        T, B, G = gh_all.shape
        H = G // 3
        m, skip = _keep(mask, hs.dtype)
        r, z = rz_all.chunk(2, dim=2)  # (T, B, H) each
        n, h_prev = n_all, hs[:-1]
        k_n = (1.0 - z) * (1.0 - n * n)  # ∂h_t/∂(n's pre-activation)
        k_z = (h_prev - n) * z * (1.0 - z)  # ∂h_t/∂(z's pre-activation)
        k_r = gh_all[..., 2 * H :] * r * (1.0 - r)  # ∂(n's pre-activation)/∂(r's pre-activation)
        k_h = z  # ∂h_t/∂h_{t−1} outside W_hh
        if m is not None:
            k_n, k_z, k_h = k_n * m, k_z * m, z * m + skip
        d_gh = gh_all.new_empty(T, B, G)
        d_gi = gh_all.new_empty(T, B, G)
        d_r, d_z, d_ghn = d_gh.chunk(3, dim=2)
        d_n = d_gi[..., 2 * H :]
        dh = d_hT
        for t in range(T - 1, -1, -1):
            dh_t = dh + d_out[t]
            torch.mul(dh_t, k_n[t], out=d_n[t])
            torch.mul(dh_t, k_z[t], out=d_z[t])
            torch.mul(d_n[t], k_r[t], out=d_r[t])
            torch.mul(d_n[t], r[t], out=d_ghn[t])
            dh = torch.addmm(dh_t * k_h[t], d_gh[t], w_hh)  # δh_{t−1} = W_hhᵀ δgh + δh_t ⊙ z: (B, H)
        d_gi[..., : 2 * H] = d_gh[..., : 2 * H]
        d_w_hh = d_gh.flatten(0, 1).t().mm(h_prev.flatten(0, 1))  # (3H, H)
        d_b_hh = d_gh.sum(dim=(0, 1)) if ctx.has_bias else None
        return d_gi, dh, d_w_hh, d_b_hh, None


# torch.compile would unroll these loops step by step (a 200-step LSTM took over 6 minutes to compile here);
# under torch.compile the scans stay eager and the rest of the model is compiled around them.
@torch.compiler.disable
def rnn_scan(gi: Tensor, h0: Tensor, w_hh: Tensor, mask: Tensor | None = None, relu: bool = False):
    """Elman recurrence over ``gi (T, B, H)``: returns ``(outputs (T, B, H), h_T (B, H))``."""
    return _RNNScan.apply(gi, h0, w_hh, mask, relu)


@torch.compiler.disable
def lstm_scan(gi: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, mask: Tensor | None = None):
    """LSTM recurrence over ``gi (T, B, 4H)`` (both biases folded in): ``(outputs, h_T, c_T)``."""
    return _LSTMScan.apply(gi, h0, c0, w_hh, mask)


@torch.compiler.disable
def gru_scan(gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, mask: Tensor | None = None):
    """GRU recurrence over ``gi (T, B, 3H)`` (``b_ih`` folded in, ``b_hh`` kept apart): ``(outputs, h_T)``."""
    return _GRUScan.apply(gi, h0, w_hh, b_hh, mask)
