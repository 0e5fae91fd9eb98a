"""dnn's multi-head attention, Transformer layers and Transformer seq2seq against torch's own modules.

Weights are copied from ours into torch's with ``load_state_dict(strict=True)`` (the parameter names are torch's),
the same inputs run through both, and outputs and every gradient must agree. Where torch has no twin: decoding one
step at a time equals the teacher-forced pass, padding never changes a sentence's result, beam 1 equals greedy, and
a tiny reversal task is learnt in a few seconds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnn.data.text_tasks import make_task
from dnn.decoding import beam_search, greedy
from dnn.errors import ConfigError
from dnn.layers.transformer import (
    MultiHeadAttention,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    causal_mask,
    sinusoidal_positions,
)
from dnn.models import create_model, model_config

E, NH, FF, B, S, T = 8, 2, 16, 3, 5, 4
SRC_LENGTHS = torch.tensor([5, 2, 4])
F64 = torch.float64


def padding_mask(lengths, size):
    return torch.arange(size) < lengths.unsqueeze(1)  # (B, S) True = real


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def param_grads(module):
    return {n: p.grad for n, p in module.named_parameters()}


def assert_same_grads(ours, theirs):
    g_ours, g_theirs = param_grads(ours), param_grads(theirs)
    assert set(g_ours) == set(g_theirs)
    for name in g_ours:
        torch.testing.assert_close(g_ours[name], g_theirs[name], msg=name)


def weights(n):
    return torch.linspace(0.5, 1.5, n, dtype=F64)


@pytest.mark.parametrize("kind", ["self", "cross", "causal"])
def test_multi_head_attention_matches_torch_with_key_padding(kind):
    torch.manual_seed(0)
    ours = MultiHeadAttention(E, NH).double()
    theirs = nn.MultiheadAttention(E, NH, batch_first=True).double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    q = randn(B, T if kind == "cross" else S, E, seed=1)
    kv = randn(B, S, E, seed=2) if kind == "cross" else q
    v = randn(B, S, E, seed=3) if kind == "cross" else q
    mask = padding_mask(SRC_LENGTHS, S)
    out, w = ours(q, kv, v, mask=mask, causal=kind == "causal")
    loss = (out * weights(out.numel()).view_as(out)).sum()
    grads = torch.autograd.grad(loss, [q, kv, v] if kind == "cross" else [q], retain_graph=True)
    loss.backward()
    attn_mask = ~causal_mask(S) if kind == "causal" else None  # torch: True = may NOT attend
    out_t, w_t = theirs(q, kv, v, key_padding_mask=~mask, attn_mask=attn_mask, average_attn_weights=False)
    loss_t = (out_t * weights(out_t.numel()).view_as(out_t)).sum()
    grads_t = torch.autograd.grad(loss_t, [q, kv, v] if kind == "cross" else [q], retain_graph=True)
    loss_t.backward()
    torch.testing.assert_close(out, out_t)
    torch.testing.assert_close(w, w_t)
    for g, g_t in zip(grads, grads_t):
        torch.testing.assert_close(g, g_t)
    assert_same_grads(ours, theirs)
    assert (w.masked_select(~mask[:, None, None, :].expand_as(w)) == 0).all()  # padded keys: weight exactly 0
    theirs_to_ours = MultiHeadAttention(E, NH).double()
    theirs_to_ours.load_state_dict(theirs.state_dict(), strict=True)  # and back


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ours = TransformerEncoderLayer(E, NH, FF, dropout=0.0, norm_first=norm_first).double()
    theirs = nn.TransformerEncoderLayer(E, NH, FF, dropout=0.0, batch_first=True, norm_first=norm_first).double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = randn(B, S, E, seed=1)
    mask = padding_mask(SRC_LENGTHS, S)
    out = ours(x, mask)
    (out * weights(out.numel()).view_as(out)).sum().backward()
    gx = x.grad.clone()
    x.grad = None
    out_t = theirs(x, src_key_padding_mask=~mask)
    (out_t * weights(out_t.numel()).view_as(out_t)).sum().backward()
    torch.testing.assert_close(out, out_t)
    torch.testing.assert_close(gx, x.grad)
    assert_same_grads(ours, theirs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ours = TransformerDecoderLayer(E, NH, FF, dropout=0.0, norm_first=norm_first).double()
    theirs = nn.TransformerDecoderLayer(E, NH, FF, dropout=0.0, batch_first=True, norm_first=norm_first).double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    y, memory = randn(B, T, E, seed=1), randn(B, S, E, seed=2)
    mask = padding_mask(SRC_LENGTHS, S)
    out, cross = ours(y, memory, mask)
    (out * weights(out.numel()).view_as(out)).sum().backward()
    gy, gm = y.grad.clone(), memory.grad.clone()
    y.grad = memory.grad = None
    out_t = theirs(y, memory, tgt_mask=~causal_mask(T), memory_key_padding_mask=~mask)
    (out_t * weights(out_t.numel()).view_as(out_t)).sum().backward()
    torch.testing.assert_close(out, out_t)
    torch.testing.assert_close(gy, y.grad)
    torch.testing.assert_close(gm, memory.grad)
    assert_same_grads(ours, theirs)
    assert cross.shape == (B, NH, T, S)
    torch.testing.assert_close(cross.sum(-1), torch.ones(B, NH, T, dtype=F64))


def small_model(norm_first=True, dropout=0.0, seed=0, **kw):
    torch.manual_seed(seed)
    config = dict(src_vocab_size=12, tgt_vocab_size=10, d_model=E, num_heads=NH, num_encoder_layers=2,
                  num_decoder_layers=2, feedforward_size=FF, dropout=dropout, norm_first=norm_first)  # fmt: skip
    return create_model("transformer_seq2seq", model_config("transformer_seq2seq", **{**config, **kw})).double()


def tokens(shape, high, seed):
    return torch.randint(4, high, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_the_whole_model_matches_torch_nn_transformer():
    model = small_model(norm_first=True)
    theirs = nn.Transformer(E, NH, 2, 2, FF, dropout=0.0, batch_first=True, norm_first=True).double()
    mapping = {"encoder_layers.": "encoder.layers.", "decoder_layers.": "decoder.layers.",
               "encoder_norm.": "encoder.norm.", "decoder_norm.": "decoder.norm."}  # fmt: skip
    state = {}
    for name, value in model.state_dict().items():
        for ours_prefix, torch_prefix in mapping.items():
            if name.startswith(ours_prefix):
                state[torch_prefix + name[len(ours_prefix) :]] = value
    theirs.load_state_dict(state, strict=True)
    src, tgt = tokens((B, S), 12, 1), tokens((B, T), 10, 2)
    logits, _ = model(src, SRC_LENGTHS, tgt)
    x = model.src_embedding(src) * E**0.5 + sinusoidal_positions(S, E, dtype=F64)
    y = model.tgt_embedding(tgt) * E**0.5 + sinusoidal_positions(T, E, dtype=F64)
    pad = ~padding_mask(SRC_LENGTHS, S)
    z = theirs(x, y, tgt_mask=~causal_mask(T), src_key_padding_mask=pad, memory_key_padding_mask=pad)
    torch.testing.assert_close(logits, model.output(z))


def test_sinusoidal_positions_are_the_papers():
    pe = sinusoidal_positions(50, 16, dtype=F64)
    pos, i = 37, 3
    assert pe[pos, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(pos / 10000 ** (2 * i / 16))).item())
    assert pe[pos, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(pos / 10000 ** (2 * i / 16))).item())
    torch.testing.assert_close(sinusoidal_positions(5, 16, offset=37, dtype=F64)[0], pe[37])


@pytest.mark.parametrize("norm_first", [False, True])
def test_one_step_at_a_time_equals_the_teacher_forced_pass(norm_first):
    model = small_model(norm_first).eval()
    src, tgt = tokens((B, S), 12, 1), tokens((B, T), 10, 2)
    logits, attention = model(src, SRC_LENGTHS, tgt)
    state = model.encode(src, SRC_LENGTHS)
    for t in range(T):
        step_logits, state, weights = model.decode_step(tgt[:, t], state)
        torch.testing.assert_close(step_logits, logits[:, t])
        torch.testing.assert_close(weights, attention[:, t])
    assert state.past_keys[0].shape == (B, NH, T, E // NH)


def test_padding_never_changes_a_sentence():
    model = small_model(norm_first=False).eval()
    src, tgt = tokens((B, S), 12, 1), tokens((B, T), 10, 2)
    tgt_lengths = [4, 3, 2]
    logits, attention = model(src, SRC_LENGTHS, tgt)
    for b, (n, m) in enumerate(zip(SRC_LENGTHS.tolist(), tgt_lengths)):
        alone, alone_attention = model(src[b : b + 1, :n], None, tgt[b : b + 1, :m])
        torch.testing.assert_close(logits[b, :m], alone[0])
        torch.testing.assert_close(attention[b, :m, :n], alone_attention[0])
        assert (attention[b, :, n:] == 0).all()  # padded source steps: weight exactly 0


def test_beam_one_equals_greedy_and_beams_reorder_the_cached_steps():
    model = small_model(seed=3).eval()
    src = tokens((B, S), 12, 1)
    g = greedy(model, src, SRC_LENGTHS, max_len=6)
    hyps = beam_search(model, src, SRC_LENGTHS, beam_size=1, max_len=6)
    for b in range(B):
        row, best = g.tokens[b], hyps[b][0].tokens
        assert best.tolist() == row[: len(best)].tolist() and not row[len(best) :].any()
        torch.testing.assert_close(hyps[b][0].score, float(g.scores[b]), rtol=1e-6, atol=1e-6)
    wide = beam_search(model, src, SRC_LENGTHS, beam_size=3, max_len=6, n_best=3)
    assert all(h[0].score >= h[-1].score for h in wide)
    assert wide[1][0].attention.shape[1] == 2  # sentence 1's own two source tokens


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="d_model .8. must be divisible by num_heads .3."):
        create_model(
            "transformer_seq2seq",
            model_config("transformer_seq2seq", src_vocab_size=10, tgt_vocab_size=10, d_model=8, num_heads=3),
        )
    with pytest.raises(ConfigError, match="dropout must be a number in"):
        create_model(
            "transformer_seq2seq",
            model_config("transformer_seq2seq", src_vocab_size=10, tgt_vocab_size=10, dropout=1.0),
        )
    with pytest.raises(ConfigError, match="teacher-forced only"):
        small_model()(tokens((1, 3), 12, 0), None, tokens((1, 2), 10, 0), teacher_forcing=0.5)


def test_overfits_a_tiny_reversal_task_in_seconds():
    """64 digit strings of 3–6 digits, reversed: learnt (greedy exact match ≥ 0.9 on them) in a few seconds."""
    pairs = make_task("reverse", 64, seed=0, min_len=3, max_len=6)
    ids = {c: i + 4 for i, c in enumerate("0123456789")}
    src = [[ids[c] for c in s] for s, _ in pairs]
    tgt = [[ids[c] for c in t] for _, t in pairs]
    lengths = torch.tensor([len(s) for s in src])
    pad = lambda rows, extra=0: torch.tensor([r + [0] * (max(map(len, rows)) + extra - len(r)) for r in rows])  # noqa: E731
    src_t = pad(src)
    tgt_in = pad([[2] + t for t in tgt])  # <sos> y
    tgt_out = pad([t + [3] for t in tgt]).masked_fill(pad([[1] * (len(t) + 1) for t in tgt]) == 0, -100)  # y <eos>
    torch.manual_seed(0)
    model = create_model(
        "transformer_seq2seq",
        model_config(
            "transformer_seq2seq",
            src_vocab_size=14,
            tgt_vocab_size=14,
            d_model=32,
            num_heads=4,
            num_encoder_layers=1,
            num_decoder_layers=1,
            feedforward_size=64,
            dropout=0.0,
        ),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits, _ = model(src_t, lengths, tgt_in)
        loss = model.loss(logits, tgt_out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    out = greedy(model, src_t, lengths, max_len=8).tokens.tolist()
    exact = sum(row[: len(t) + 1] == t + [3] for row, t in zip(out, tgt)) / len(tgt)
    assert exact >= 0.9, (exact, float(loss))
