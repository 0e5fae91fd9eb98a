"""Sequence to sequence: the equations against torch modules, padding invariance, teacher forcing, the state.

The oracle of one decoder step is written with ``torch.nn.LSTMCell`` (weights copied) and the Luong equations
spelled out: a = softmax(hᵀ W m) over the real source steps, c = Σ a m, h̃ = tanh(W_c [c; h]), logits = W_o h̃ + b.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from dnn.decoding import greedy
from dnn.errors import ConfigError
from dnn.models import create_model, model_config
from dnn.models.seq2seq import DecoderState

SV, TV, E, H = 11, 9, 6, 5
SOS, EOS = 2, 3


def make(seed=0, **overrides):
    config = dict(src_vocab_size=SV, tgt_vocab_size=TV, embedding_size=E, hidden_size=H, encoder_hidden_size=4)
    config.update(overrides)
    torch.manual_seed(seed)
    return create_model("seq2seq", model_config("seq2seq", **config)).eval()


def source(lengths, seed=0):
    """Source ids (B, S) with non-pad garbage past each length, and the lengths."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, SV, (len(lengths), max(lengths)), generator=g), torch.tensor(lengths)


def target_in(B, T, seed=1):
    tgt = torch.randint(4, TV, (B, T), generator=torch.Generator().manual_seed(seed))
    tgt[:, 0] = SOS
    return tgt


VARIANTS = [
    dict(attention="none"),
    dict(attention="dot", encoder_hidden_size=H, bidirectional=False),
    dict(attention="general", num_layers=2),
    dict(attention="concat", attention_hidden_size=7, cell="gru"),
    dict(attention="general", input_feeding=True, cell="rnn", num_layers=2, residual=True),
]


def test_one_step_against_the_equations():
    model = make(attention="general", cell="lstm", bidirectional=True)
    src, lengths = source([5, 3], seed=2)
    enc = model.encoder
    # encoder twin: the finals of each sentence alone
    state = model.encode(src, lengths)
    for b, n in enumerate([5, 3]):
        _, (h_n, c_n) = enc.rnn(enc.embedding(src[b : b + 1, :n]))  # (2, 1, 4) each: forward, backward
        bridge = model.bridge
        assert_close(state.hidden[0][0, b], torch.tanh(bridge.hidden[0](torch.cat([h_n[0, 0], h_n[1, 0]]))))
        assert_close(state.hidden[1][0, b], torch.tanh(bridge.cell[0](torch.cat([c_n[0, 0], c_n[1, 0]]))))

    dec = model.decoder
    cell = nn.LSTMCell(E, H)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in dec.rnn.state_dict().items()})
    prev = torch.tensor([SOS, 5])
    logits, new_state, weights = model.decode_step(prev, state)
    h, c = cell(dec.embedding(prev), (state.hidden[0][0], state.hidden[1][0]))
    W_a, W_c = dec.attention.key_proj.weight, dec.combine.weight  # (H, M), (H, M + H)
    for b, n in enumerate([5, 3]):
        m = state.memory[b, :n]  # (n, M)
        a = torch.softmax(m @ W_a.T @ h[b], dim=0)  # softmax_s(hᵀ W m_s)
        context = a @ m
        attentional = torch.tanh(W_c @ torch.cat([context, h[b]]))
        assert_close(weights[b, :n], a)
        assert (weights[b, n:] == 0).all()
        assert_close(logits[b], dec.output(attentional))
    assert_close(new_state.hidden[0][0], h)
    assert_close(new_state.hidden[1][0], c)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_forward_equals_stepping_decode_step(variant):
    model = make(**variant)
    src, lengths = source([6, 2, 4])
    tgt = target_in(3, 5)
    logits, attention = model(src, lengths, tgt)
    state = model.encode(src, lengths)
    for t in range(tgt.shape[1]):
        step_logits, state, weights = model.decode_step(tgt[:, t], state)
        assert_close(logits[:, t], step_logits)
        if variant["attention"] == "none":
            assert attention is None and weights is None
        else:
            assert_close(attention[:, t], weights)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_padding_in_the_source_does_not_matter(variant):
    model = make(**variant)
    lens = [6, 2, 4]
    src, lengths = source(lens, seed=3)  # garbage past each length
    tgt = target_in(3, 5)
    logits, attention = model(src, lengths, tgt)
    for b, n in enumerate(lens):
        alone, alone_attention = model(src[b : b + 1, :n], None, tgt[b : b + 1])
        assert_close(logits[b : b + 1], alone)
        if attention is not None:
            assert_close(attention[b : b + 1, :, :n], alone_attention)
            assert (attention[b, :, n:] == 0).all()  # exactly zero on padded source steps
            assert_close(attention[b].sum(-1), torch.ones(5))


def test_teacher_forcing_zero_feeds_the_argmax_like_greedy():
    model = make(attention="concat")
    src, lengths = source([5, 3, 4], seed=4)
    result = greedy(model, src, lengths, max_len=6)
    tgt = torch.full((3, 6), SOS)  # only tgt[:, 0] is used with ratio 0
    logits, _ = model(src, lengths, tgt, teacher_forcing=0.0)
    predicted = logits.argmax(-1)
    for b in range(3):
        n = result.tokens.shape[1]
        ended = (result.tokens[b] == EOS).nonzero()
        n = int(ended[0]) + 1 if len(ended) else n
        assert torch.equal(predicted[b, :n], result.tokens[b, :n])


def test_teacher_forcing_ratio_draws_from_the_generator():
    """Ratio ρ: one draw of B uniforms per step after the first; gold where u < ρ, else the previous argmax."""
    model = make(attention="general", dropout=0.0).train()
    model.config.teacher_forcing = 0.5
    src, lengths = source([5, 3, 4], seed=5)
    tgt = target_in(3, 6)
    logits, _ = model(src, lengths, tgt, generator=torch.Generator().manual_seed(7))
    again, _ = model(src, lengths, tgt, generator=torch.Generator().manual_seed(7))
    assert torch.equal(logits, again)

    g = torch.Generator().manual_seed(7)
    state = model.encode(src, lengths)
    prev = tgt[:, 0]
    fed_model_token = False
    for t in range(6):
        step_logits, state, _ = model.decode_step(prev, state)
        assert_close(logits[:, t], step_logits)
        if t + 1 < 6:
            use_gold = torch.rand(3, generator=g) < 0.5
            fed_model_token |= bool((~use_gold).any())
            prev = torch.where(use_gold, tgt[:, t + 1], step_logits.argmax(-1))
    assert fed_model_token  # the test exercised both branches
    gold, _ = model(src, lengths, tgt, teacher_forcing=1.0)
    assert not torch.allclose(gold, logits)
    model.eval()
    assert_close(model(src, lengths, tgt)[0], gold)  # eval: always the gold token


def test_state_index_select_commutes_with_decode_step():
    model = make(attention="general", input_feeding=True)
    src, lengths = source([5, 3, 4], seed=6)
    state = model.encode(src, lengths)
    _, state, _ = model.decode_step(torch.tensor([SOS, SOS, SOS]), state)
    order = torch.tensor([2, 0, 0, 1])
    prev = torch.tensor([4, 5, 6])
    logits, after, _ = model.decode_step(prev, state)
    logits_r, after_r, _ = model.decode_step(prev.index_select(0, order), state.index_select(order))
    assert isinstance(after_r, DecoderState)
    assert_close(logits_r, logits.index_select(0, order))
    assert_close(after_r.hidden[0], after.hidden[0].index_select(1, order))
    assert_close(after_r.feed, after.feed.index_select(0, order))


def test_the_module_keeps_no_state_between_calls():
    model = make(attention="dot", encoder_hidden_size=H, bidirectional=False)
    src, lengths = source([5, 3], seed=7)
    tgt = target_in(2, 4)
    first, _ = model(src, lengths, tgt)
    model(*source([2, 6, 4], seed=8), target_in(3, 7))
    assert torch.equal(model(src, lengths, tgt)[0], first)


def test_loss_is_mean_over_real_target_tokens():
    model = make()
    src, lengths = source([4, 3], seed=9)
    tgt = target_in(2, 5)
    logits, _ = model(src, lengths, tgt)
    targets = tgt.roll(-1, dims=1)
    targets[0, 3:] = -100
    targets[1, 1:] = -100
    expected = torch.cat([F.cross_entropy(logits[0, :3], targets[0, :3], reduction="none"),
                          F.cross_entropy(logits[1, :1], targets[1, :1], reduction="none")]).mean()  # fmt: skip
    assert_close(model.loss(logits, targets), expected)


def test_label_smoothing_shapes_the_training_loss_only():
    torch.manual_seed(0)
    plain = make()
    smooth = create_model("seq2seq", model_config("seq2seq", **{**plain.config.__dict__, "label_smoothing": 0.1}))
    smooth.load_state_dict(plain.state_dict())
    src, lengths = source([4, 3], seed=9)
    tgt = target_in(2, 5)
    targets = tgt.roll(-1, dims=1)
    targets[1, 2:] = -100
    logits, _ = smooth(src, lengths, tgt)
    flat, real = logits.reshape(-1, TV), targets.reshape(-1)
    keep = real != -100
    log_p = F.log_softmax(flat[keep], dim=-1)  # (1 − ε)·NLL + ε·mean over the vocabulary of −log p
    expected = (0.9 * -log_p.gather(1, real[keep, None]).squeeze(1) + 0.1 * -log_p.mean(dim=1)).mean()
    assert_close(smooth.train().loss(logits, targets), expected)
    assert_close(smooth.eval().loss(logits, targets), plain.eval().loss(logits, targets))  # evaluation: plain CE
    with pytest.raises(ConfigError, match=r"label_smoothing must be a number in \[0, 1\), got 1.0"):
        create_model("seq2seq", model_config("seq2seq", **{**plain.config.__dict__, "label_smoothing": 1.0}))


@pytest.mark.parametrize(
    "config, field",
    [
        (dict(attention="dot"), "attention"),  # memory 2·4 ≠ hidden 5
        (dict(attention="none", input_feeding=True), "input_feeding"),
        (dict(teacher_forcing=1.5), "teacher_forcing"),
        (dict(tgt_vocab_size=3), "tgt_vocab_size"),
        (dict(attention="bahdanau"), "attention"),
        (dict(encoder_hidden_size=0), "encoder_hidden_size"),
    ],
)
def test_config_errors_name_the_field(config, field):
    base = dict(src_vocab_size=SV, tgt_vocab_size=TV, embedding_size=E, hidden_size=H, encoder_hidden_size=4)
    with pytest.raises(ConfigError, match=field):
        create_model("seq2seq", model_config("seq2seq", **{**base, **config}))


def test_reversal_with_attention_overfits():
    """32 sequences of 3–6 tokens; the target is the source reversed. Loss < 0.05 and every token right."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 7, (32,), generator=g)
    src = torch.randint(4, 12, (32, 6), generator=g)
    tgt_in = torch.zeros(32, 8, dtype=torch.long)
    tgt_out = torch.full((32, 8), -100)
    for b, n in enumerate(lengths.tolist()):
        src[b, n:] = 0
        reversed_ = src[b, :n].flip(0)
        tgt_in[b, 0], tgt_in[b, 1 : n + 1] = SOS, reversed_
        tgt_out[b, :n], tgt_out[b, n] = reversed_, EOS
    torch.manual_seed(0)
    model = create_model(
        "seq2seq",
        model_config(
            "seq2seq",
            src_vocab_size=12,
            tgt_vocab_size=12,
            embedding_size=16,
            hidden_size=32,
            encoder_hidden_size=16,
            cell="gru",
            attention="general",
        ),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):  # measured: below 0.05 after 34–41 steps (seeds 0–2, GRU and LSTM)
        logits, _ = model(src, lengths, tgt_in)
        loss = model.loss(logits, tgt_out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    result = greedy(model, src, lengths, max_len=8)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(result.tokens[b, : n + 1], tgt_out[b, : n + 1])


def test_options_of_one_attention_kind_follow_the_kind():
    """Switching model.attention never needs a second edit: concat's hidden size is dropped by the others, and dot
    widens or narrows the encoder to the decoder's width."""
    from dnn.models.seq2seq import Seq2SeqConfig

    general = Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=9, attention="general", attention_hidden_size=3)
    assert general.attention_hidden_size is None
    dot = Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=9, hidden_size=8, encoder_hidden_size=16, attention="dot")
    assert dot.memory_size == 8 and dot.encoder_hidden_size == 4 and dot.attention_hidden_size is None
