"""The seq2seq training fast path against its twins: stepping decode_step, and a torch.nn model of the same shape.

Teacher-forced training runs the decoder RNN over all target steps in one call and the concat attention's
(B, T, S, H) intermediate through a hand-written backward (:func:`dnn.layers.attention.additive_scores`). Both
must give the numbers of the slow paths: logits against step-by-step ``decode_step``, and logits and every
gradient against the plain torch.nn script a user would write (packed ``nn.GRU`` encoder, ``nn.GRU`` decoder,
the concat score through autograd), weights copied.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.testing import assert_close

import dnn.layers.attention as attention_module
from dnn.layers.attention import Attention, additive_scores
from dnn.models import create_model, model_config

SV, TV, SOS = 23, 19, 2
RECIPE = dict(cell="gru", bidirectional=True, attention="concat")  # the translate-tsv recipe's shape


def make(seed=0, **overrides):
    config = dict(src_vocab_size=SV, tgt_vocab_size=TV, embedding_size=12, hidden_size=10, attention_hidden_size=9,
                  **RECIPE)  # fmt: skip
    config.update(overrides)
    torch.manual_seed(seed)
    return create_model("seq2seq", model_config("seq2seq", **config))


def batch(lengths, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, SV, (len(lengths), max(lengths)), generator=g)
    src[torch.arange(src.shape[1]) >= torch.tensor(lengths).unsqueeze(1)] = 0
    tgt_in = torch.randint(4, TV, (len(lengths), T), generator=g)
    tgt_in[:, 0] = SOS
    tgt_out = torch.randint(3, TV, (len(lengths), T), generator=g)
    tgt_out[1, T - 2 :] = -100  # a shorter target
    return src, torch.tensor(lengths), tgt_in, tgt_out


def test_teacher_forced_forward_equals_stepping_decode_step():
    model = make(hidden_size=16, embedding_size=8, attention_hidden_size=16).eval()
    src, lengths, tgt_in, _ = batch([7, 3, 9, 5], T=8)
    with torch.no_grad():
        logits, attention = model(src, lengths, tgt_in)  # (B, T, V), (B, T, S)
        state = model.encode(src, lengths)
        for t in range(tgt_in.shape[1]):
            step_logits, state, weights = model.decode_step(tgt_in[:, t], state)
            assert_close(logits[:, t], step_logits, atol=1e-5, rtol=0)
            assert_close(attention[:, t], weights, atol=1e-5, rtol=0)


class PlainTwin(nn.Module):
    """The same model written the usual way with torch.nn (as benchmarks/peers/seq2seq_plain.py)."""

    def __init__(self, model):
        super().__init__()
        c = model.config
        self.model = model  # embeddings and Linears are the model's own: their gradients land on it
        self.encoder = nn.GRU(c.embedding_size, c.encoder_hidden_size, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(c.embedding_size, c.hidden_size, batch_first=True)
        self.encoder.load_state_dict(model.encoder.rnn.state_dict())
        self.decoder.load_state_dict(model.decoder.rnn.state_dict())

    def forward(self, src, lengths, tgt_in):
        m, S = self.model, src.shape[1]
        packed = pack_padded_sequence(m.encoder.embedding(src), lengths, batch_first=True, enforce_sorted=False)
        memory, h_n = self.encoder(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=S)  # (B, S, 2He)
        s0 = torch.tanh(m.bridge.hidden[0](torch.cat([h_n[0], h_n[1]], dim=-1))).unsqueeze(0)  # (1, B, H)
        h, _ = self.decoder(m.decoder.embedding(tgt_in), s0)  # (B, T, H)
        att = m.decoder.attention
        e = torch.tanh(att.query_proj(h).unsqueeze(2) + att.key_proj(memory).unsqueeze(1))  # (B, T, S, A)
        scores = att.v(e).squeeze(-1)  # (B, T, S)
        mask = torch.arange(S) < lengths.unsqueeze(1)  # (B, S)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
        context = torch.bmm(weights, memory)  # (B, T, 2He)
        return m.decoder.output(torch.tanh(m.decoder.combine(torch.cat([context, h], dim=-1))))  # (B, T, V)


def test_training_step_equals_the_plain_torch_nn_twin():
    model = make(seed=3).train()  # dropout 0: train mode changes nothing but the path's bookkeeping
    twin = PlainTwin(model)
    src, lengths, tgt_in, tgt_out = batch([6, 2, 8, 5, 8], T=7, seed=4)

    logits, _ = model(src, lengths, tgt_in)
    loss = model.forward_loss(src, lengths, tgt_in, tgt_out)  # the training step's path: no (B, T, V) logits
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    twin_logits = twin(src, lengths, tgt_in)
    twin_loss = F.cross_entropy(twin_logits.reshape(-1, TV), tgt_out.reshape(-1), ignore_index=-100)
    twin_loss.backward()
    assert_close(logits, twin_logits, atol=1e-5, rtol=1e-5)
    assert_close(loss, twin_loss, atol=1e-6, rtol=1e-6)
    rnn_twins = {"encoder.rnn.": twin.encoder, "decoder.rnn.": twin.decoder}
    for name, grad in grads.items():
        prefix = next((p for p in rnn_twins if name.startswith(p)), None)
        expected = getattr(rnn_twins[prefix], name[len(prefix) :]).grad if prefix else model.get_parameter(name).grad
        assert_close(grad, expected, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize(
    "name, options",
    [
        ("seq2seq", dict(dropout=0.3, label_smoothing=0.1)),  # the translate-tsv recipe's shape
        ("seq2seq", dict(cell="lstm", attention="general", num_layers=2, dropout=0.2)),
        ("seq2seq", dict(input_feeding=True, dropout=0.2)),  # stepped: forward_loss is the two calls
        ("seq2seq", dict(teacher_forcing=0.5)),
        ("transformer_seq2seq", dict()),
    ],
)
def test_forward_loss_equals_forward_then_loss_with_the_same_random_draws(name, options):
    """Training calls forward_loss; it must give what forward + loss give, dropout and label smoothing included."""
    if name == "seq2seq":
        model = make(seed=5, **options)
    else:
        torch.manual_seed(5)
        config = model_config(name, src_vocab_size=SV, tgt_vocab_size=TV, d_model=16, num_heads=2,
                              feedforward_size=24, num_encoder_layers=1, num_decoder_layers=1)  # fmt: skip
        model = create_model(name, config)
    src, lengths, tgt_in, tgt_out = batch([6, 2, 8, 5, 8], T=7, seed=6)
    for train in (True, False):
        model.train(train)
        results = []
        for fused in (False, True):
            torch.manual_seed(7)  # dropout and teacher-forcing draws
            model.zero_grad()
            if fused:
                loss = model.forward_loss(src, lengths, tgt_in, tgt_out)
            else:
                loss = model.loss(model(src, lengths, tgt_in)[0], tgt_out)
            loss.backward()
            results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        (loss, grads), (fused_loss, fused_grads) = results
        assert_close(fused_loss, loss, atol=1e-6, rtol=1e-6)
        for n, grad in grads.items():
            assert_close(fused_grads[n], grad, atol=1e-6, rtol=1e-5, msg=n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [1 << 20, 40, 1])  # all rows at once; 2 of 3 rows, then the last; one at a time
def test_additive_scores_and_their_gradients_equal_autograd_through_tanh(dtype, chunk, monkeypatch):
    monkeypatch.setattr(attention_module, "ADDITIVE_CHUNK", chunk)
    g = torch.Generator().manual_seed(5)
    p, k, v = (torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True) for shape in
               [(3, 4, 6), (3, 5, 6), (1, 6)])  # fmt: skip
    upstream = torch.randn(3, 4, 5, generator=g, dtype=dtype)
    expected = F.linear(torch.tanh(p.unsqueeze(2) + k.unsqueeze(1)), v).squeeze(-1)  # (B, T, S)
    expected_grads = torch.autograd.grad(expected, (p, k, v), upstream)
    scores = additive_scores(p, k, v)
    assert_close(scores, expected)
    grads = torch.autograd.grad(scores, (p, k, v), upstream, retain_graph=True)
    assert_close(grads, expected_grads)
    again = torch.autograd.grad(scores, (p, k, v), upstream)  # a kept graph's second backward makes σ again
    assert_close(again, expected_grads)


def test_concat_attention_under_bf16_autocast_follows_fp32():
    torch.manual_seed(6)
    att = Attention(8, 10, "concat", 12)
    q, keys = torch.randn(2, 3, 8), torch.randn(2, 5, 10)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    reference, _ = att(q, keys, mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        context, weights = att(q, keys, mask=mask)
    context.float().sum().backward()
    assert_close(context.float(), reference, atol=0.05, rtol=0.05)
    assert (weights[1, :, 3:] == 0).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in att.parameters())
