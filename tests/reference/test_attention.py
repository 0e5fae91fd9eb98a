"""Attention against the score equations written out independently, in float64.

The oracle below loops over batch, target step and source step, computes each score from the formula with
the module's weights, then the softmax and the weighted sum by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from dnn.errors import ConfigError
from dnn.layers.attention import Attention

B, T, S, HQ, HK, HV, H = 3, 4, 5, 6, 7, 2, 5
SIZES = {"dot": (HQ, HQ, None), "general": (HQ, HK, None), "concat": (HQ, HK, H)}


def make(score: str, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    query_size, key_size, hidden_size = SIZES[score]
    return Attention(query_size, key_size, score=score, hidden_size=hidden_size).double()


def inputs(att: Attention, b: int = B, t: int = T, s: int = S, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, att.query_size, generator=g, dtype=torch.float64)
    k = torch.randn(b, s, att.key_size, generator=g, dtype=torch.float64)
    v = torch.randn(b, s, HV, generator=g, dtype=torch.float64)
    return q, k, v


def oracle_score(att: Attention, q: torch.Tensor, k: torch.Tensor) -> float:
    """One score(q, k) for vectors q (Hq,) and k (Hk,), straight from the equation."""
    if att.score == "dot":
        return sum(q[i] * k[i] for i in range(len(q)))
    if att.score == "general":
        W = att.key_proj.weight  # (Hq, Hk)
        return torch.einsum("i,ij,j->", q, W, k)
    W = torch.cat([att.query_proj.weight, att.key_proj.weight], dim=1)  # W of vᵀ tanh(W [q; k] + b): (H, Hq + Hk)
    b = att.key_proj.bias
    v = att.v.weight[0]  # (H,)
    return torch.einsum("h,h->", v, torch.tanh(W @ torch.cat([q, k]) + b))


def oracle(att, q, k, v, mask=None):
    """Context (B, T, Hv) and weights (B, T, S) with explicit loops."""
    b_, t_, s_ = q.shape[0], q.shape[1], k.shape[1]
    weights = torch.zeros(b_, t_, s_, dtype=q.dtype)
    context = torch.zeros(b_, t_, v.shape[-1], dtype=q.dtype)
    with torch.no_grad():
        for b in range(b_):
            real = [s for s in range(s_) if mask is None or mask[b, s]]
            for t in range(t_):
                if not real:
                    continue
                e = {s: float(oracle_score(att, q[b, t], k[b, s])) for s in real}
                top = max(e.values())
                z = sum(math.exp(x - top) for x in e.values())
                for s in real:
                    weights[b, t, s] = math.exp(e[s] - top) / z
                    context[b, t] += weights[b, t, s] * v[b, s]
    return context, weights


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_matches_the_equations(score):
    att = make(score)
    q, k, v = inputs(att)
    context, weights = att(q, k, v)
    want_context, want_weights = oracle(att, q, k, v)
    assert context.shape == (B, T, HV) and weights.shape == (B, T, S)
    assert_close(weights, want_weights)
    assert_close(context, want_context)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_values_default_to_keys(score):
    att = make(score)
    q, k, _ = inputs(att)
    context, weights = att(q, k)
    want_context, want_weights = oracle(att, q, k, k)
    assert_close(weights, want_weights)
    assert_close(context, want_context)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_mask(score):
    att = make(score)
    q, k, v = inputs(att)
    mask = torch.tensor(
        [
            [True, True, True, False, False],
            [True, False, True, False, True],
            [False, False, True, False, False],
        ]
    )
    context, weights = att(q, k, v, mask)
    want_context, want_weights = oracle(att, q, k, v, mask)
    assert_close(weights, want_weights)
    assert_close(context, want_context)
    assert torch.all(weights.masked_select(~mask[:, None, :]) == 0.0)  # exactly 0, not tiny
    assert_close(weights.sum(-1), torch.ones(B, T, dtype=torch.float64))
    # Row 2 keeps one key only: weight exactly 1 on it, the context is exactly its value vector.
    assert torch.equal(weights[2, :, 2], torch.ones(T, dtype=torch.float64))
    assert torch.equal(context[2], v[2, 2].expand(T, HV))


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_all_masked_row_gives_zeros_not_nan(score):
    att = make(score)
    q, k, v = inputs(att)
    q, k, v = q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1] = False
    context, weights = att(q, k, v, mask)
    assert torch.equal(weights[1], torch.zeros(T, S, dtype=torch.float64))
    assert torch.equal(context[1], torch.zeros(T, HV, dtype=torch.float64))
    assert_close(weights[[0, 2]].sum(-1), torch.ones(2, T, dtype=torch.float64))
    (context.sum() + weights.sum()).backward()
    for x in (q, k, v, *att.parameters()):
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_padding_invariance(score):
    att = make(score)
    q, k, v = inputs(att, b=1, s=3)
    alone, alone_w = att(q, k, v)
    garbage_k, garbage_v = 100 * torch.randn(1, 4, k.shape[-1]).double(), 100 * torch.randn(1, 4, HV).double()
    mask = torch.tensor([[True] * 3 + [False] * 4])
    padded, padded_w = att(q, torch.cat([k, garbage_k], 1), torch.cat([v, garbage_v], 1), mask)
    assert_close(padded, alone)
    assert_close(padded_w[..., :3], alone_w)
    assert torch.all(padded_w[..., 3:] == 0.0)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_two_dim_query_is_one_step(score):
    att = make(score)
    q, k, v = inputs(att, t=1)
    mask = torch.tensor([[True] * S, [True, True, False, False, False], [False] * S])
    context3, weights3 = att(q, k, v, mask)
    context2, weights2 = att(q[:, 0], k, v, mask)
    assert context2.shape == (B, HV) and weights2.shape == (B, S)
    assert_close(context2, context3[:, 0])
    assert_close(weights2, weights3[:, 0])


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_projected_keys_path_equals_plain_path(score):
    att = make(score)
    q, k, v = inputs(att)
    mask = torch.tensor([[True] * S, [True, True, False, False, True], [True] + [False] * (S - 1)])
    projected = att.project_keys(k)
    assert projected.shape == (B, S, att.projected_size)
    plain = att(q, k, v, mask)
    for t in range(T):  # a decoder: one projection, one call per target step
        context, weights = att(q[:, t], k, v, mask, projected_keys=projected)
        assert_close(context, plain[0][:, t])
        assert_close(weights, plain[1][:, t])


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_gradcheck(score):
    torch.manual_seed(0)  # small sizes: gradcheck costs two calls per input element
    att = Attention(3, 3 if score == "dot" else 2, score=score, hidden_size=2 if score == "concat" else None)
    att = att.double()
    q, k, v = inputs(att, b=2, t=2, s=3)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    names = [name for name, _ in att.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in att.named_parameters()]

    def f(q, k, v, *params):
        return torch.func.functional_call(att, dict(zip(names, params, strict=True)), (q, k, v, mask))

    tensors = [x.requires_grad_() for x in (q, k, v)] + params
    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradcheck(lambda q, k, v: att(q, k, v), tensors[:3])  # no mask


def test_sizes_attributes_and_repr():
    att = Attention(4, 6, score="concat")
    assert (att.score, att.query_size, att.key_size, att.hidden_size) == ("concat", 4, 6, 6)
    assert "score='concat'" in repr(att) and "hidden_size=6" in repr(att)
    att = Attention(4, 6, score="general")
    assert att.hidden_size is None and "query_size=4, key_size=6" in repr(att)
    assert [p.shape for p in att.parameters()] == [(4, 6)]
    assert list(Attention(4, 4).parameters()) == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(query_size=4, key_size=5), ["key_size", "query_size", "4", "5"]),
        (
            dict(query_size=4, key_size=4, score="additive"),
            ["score", "'dot'", "'general'", "'concat'", "additive"],
        ),
        (dict(query_size=4, key_size=4, hidden_size=3), ["hidden_size", "None", "3"]),
        (dict(query_size=4, key_size=4, score="general", hidden_size=3), ["hidden_size"]),
        (dict(query_size=0, key_size=4), ["query_size"]),
        (dict(query_size=4, key_size=4, score="concat", hidden_size=0), ["hidden_size"]),
    ],
)
def test_bad_config(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Attention(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda a, q, k, v: a(q[..., :3], k, v), ["query", "(4, 5, 3)"]),
        (lambda a, q, k, v: a(q, k[:3], v), ["keys", "(3, 7, 6)"]),
        (lambda a, q, k, v: a(q, k[..., :2], v), ["keys", "(4, 7, 2)"]),
        (lambda a, q, k, v: a(q, k, v[:, :2]), ["values", "(4, 2, 2)"]),
        (
            lambda a, q, k, v: a(q, k, v, torch.ones(4, 6, dtype=torch.bool)),
            ["mask", "(B, S)", "(4, 7)", "(4, 6)"],
        ),
        (lambda a, q, k, v: a(q, k, v, torch.ones(4, 1, 7, dtype=torch.bool)), ["mask", "(4, 1, 7)"]),
        (lambda a, q, k, v: a(q, k, v, torch.ones(4, 7)), ["mask", "bool"]),
        (lambda a, q, k, v: a(q, k, v, projected_keys=a.project_keys(k)[:, :3]), ["projected_keys"]),
    ],
)
def test_bad_shapes(call, words):
    att = Attention(6, 6, score="concat", hidden_size=5)
    q, k, v = torch.randn(4, 5, 6), torch.randn(4, 7, 6), torch.randn(4, 7, 2)
    with pytest.raises(ConfigError) as info:
        call(att, q, k, v)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_no_state_between_calls(score):
    att = make(score)
    before = (set(vars(att)), dict(att.state_dict()), list(att.buffers()), list(att.named_modules()))
    before_state = {name: x.clone() for name, x in att.state_dict().items()}
    for s in (5, 2, 9):  # different source lengths, one after another
        q, k, v = inputs(att, s=s, seed=s)
        context, weights = att(q, k, v)
        assert context.shape == (B, T, HV) and weights.shape == (B, T, s)
        assert_close(context, oracle(att, q, k, v)[0])
    assert set(vars(att)) == before[0]
    assert set(att.state_dict()) == set(before[1])
    assert list(att.buffers()) == before[2] == []
    assert [name for name, _ in att.named_modules()] == [name for name, _ in before[3]]
    for name, x in att.state_dict().items():
        assert torch.equal(x, before_state[name])
