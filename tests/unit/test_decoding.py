"""Decoding invariants: beam 1 = greedy, wide beam = exhaustive search, batch = alone, sampling limits = greedy.

The models are random but fixed (seeded), with their output layer scaled up so that the next-token
distributions are peaked and no two hypotheses tie within float rounding.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.testing import assert_close

from dnn.decoding import beam_search, greedy, length_penalty_factor, sample
from dnn.errors import ConfigError
from dnn.models import create_model, model_config

SV, SOS, EOS, PAD = 11, 2, 3, 0


def make_seq2seq(tgt_vocab=9, seed=0, sharpen=4.0, **overrides):
    config = dict(src_vocab_size=SV, tgt_vocab_size=tgt_vocab, embedding_size=6, hidden_size=5,
                  encoder_hidden_size=4, attention="general")  # fmt: skip
    config.update(overrides)
    torch.manual_seed(seed)
    model = create_model("seq2seq", model_config("seq2seq", **config)).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(sharpen)
    return model


def source(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, SV, (len(lengths), max(lengths)), generator=g), torch.tensor(lengths)  # garbage padding


def until_eos(tokens):
    """The prefix of a 1-D token tensor up to and including the first <eos>."""
    ended = (tokens == EOS).nonzero()
    return tokens[: int(ended[0]) + 1] if len(ended) else tokens


def log_prob(model, src_row, tokens_list):
    """log p(y | x) of each hypothesis, teacher-forced through ``forward`` (not decode_step)."""
    N, L = len(tokens_list), max(len(y) for y in tokens_list)
    tgt_in = torch.zeros(N, L, dtype=torch.long)
    tgt_in[:, 0] = SOS
    for i, y in enumerate(tokens_list):
        tgt_in[i, 1 : len(y)] = torch.as_tensor(y[:-1])
    with torch.no_grad():
        logits, attention = model(src_row.expand(N, -1), None, tgt_in)
    logp = torch.log_softmax(logits, dim=-1)  # (N, L, V)
    scores = [float(sum(logp[i, t, y[t]] for t in range(len(y)))) for i, y in enumerate(tokens_list)]
    return scores, attention


VARIANTS = [
    dict(attention="general"),
    dict(attention="none", cell="gru"),
    dict(attention="concat", input_feeding=True, num_layers=2),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_beam_size_one_equals_greedy(variant):
    model = make_seq2seq(**variant)
    src, lengths = source([5, 2, 7, 4], seed=1)
    g = greedy(model, src, lengths, max_len=9)
    beams = beam_search(model, src, lengths, beam_size=1, max_len=9)
    for b in range(4):
        (best,) = beams[b]
        assert torch.equal(best.tokens, until_eos(g.tokens[b]))
        assert best.score == pytest.approx(float(g.scores[b]), abs=1e-5)
        if g.attention is not None:
            assert_close(best.attention, g.attention[b, : len(best.tokens), : lengths[b]])


def enumerate_hypotheses(vocab, max_len):
    """Every output: y_1 … y_{n−1} without <eos>, then <eos> (n < max_len), or any token at n = max_len."""
    others = [v for v in range(vocab) if v != EOS]
    hyps = []
    for n in range(1, max_len + 1):
        for prefix in itertools.product(others, repeat=n - 1):
            hyps += [(*prefix, EOS)] if n < max_len else [(*prefix, v) for v in range(vocab)]
    return hyps


@pytest.mark.parametrize("alpha, penalty", [(0.0, "gnmt"), (0.6, "gnmt"), (1.0, "simple")])
def test_wide_beam_finds_the_exhaustive_n_best(alpha, penalty):
    V, max_len = 5, 4
    model = make_seq2seq(tgt_vocab=V, seed=2, sharpen=2.0)
    src, lengths = source([6, 3], seed=3)
    hyps = enumerate_hypotheses(V, max_len)
    assert len(hyps) == 1 + 4 + 16 + 64 * 5  # <eos> after 0, 1, 2 tokens; every token at the 4th
    # the beam keeps every candidate up to step max_len − 1: 5 · 4^(max_len − 2) = 80 of them
    beams = beam_search(model, src, lengths, beam_size=80, max_len=max_len, length_penalty=alpha, n_best=3,
                        penalty=penalty)  # fmt: skip
    for b, n in enumerate([6, 3]):
        raw, _ = log_prob(model, src[b : b + 1, :n], hyps)
        scored = sorted(
            ((s / length_penalty_factor(len(y), alpha, penalty), y) for s, y in zip(raw, hyps)), reverse=True
        )
        assert scored[2][0] - scored[3][0] > 1e-4  # no near-tie at the cut
        for hyp, (score, y) in zip(beams[b], scored[:3]):
            assert hyp.tokens.tolist() == list(y)
            assert hyp.score == pytest.approx(score, abs=1e-5)


def test_beam_scores_and_attention_are_those_of_the_returned_tokens():
    model = make_seq2seq(seed=4, sharpen=1.0)
    src, lengths = source([5, 3, 6], seed=5)
    beams = beam_search(model, src, lengths, beam_size=4, max_len=7, length_penalty=0.6, n_best=4)
    for b, n in enumerate([5, 3, 6]):
        hyps = beams[b]
        assert len(hyps) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        raw, attention = log_prob(model, src[b : b + 1, :n], [h.tokens.tolist() for h in hyps])
        for i, h in enumerate(hyps):
            assert h.tokens[-1] == EOS or len(h.tokens) == 7
            assert h.score == pytest.approx(raw[i] / length_penalty_factor(len(h.tokens), 0.6), abs=1e-5)
            assert h.attention.shape == (len(h.tokens), n)
            assert_close(h.attention, attention[i, : len(h.tokens)])


def test_a_batch_decodes_as_each_sentence_alone():
    model = make_seq2seq(seed=6)
    lens = [7, 2, 5]
    src, lengths = source(lens, seed=7)
    g = greedy(model, src, lengths, max_len=8)
    beams = beam_search(model, src, lengths, beam_size=3, max_len=8, n_best=2, length_penalty=0.6)
    for b, n in enumerate(lens):
        alone = greedy(model, src[b : b + 1, :n], None, max_len=8)
        L = alone.tokens.shape[1]
        assert torch.equal(g.tokens[b, :L], alone.tokens[0])
        assert (g.tokens[b, L:] == PAD).all()
        assert_close(g.scores[b], alone.scores[0])
        assert_close(g.attention[b, :L, :n], alone.attention[0])
        assert (g.attention[b, :, n:] == 0).all()
        (alone_beams,) = beam_search(model, src[b : b + 1, :n], None, beam_size=3, max_len=8, n_best=2,
                                     length_penalty=0.6)  # fmt: skip
        for h, h_alone in zip(beams[b], alone_beams, strict=True):
            assert torch.equal(h.tokens, h_alone.tokens)
            assert h.score == pytest.approx(h_alone.score, abs=1e-5)
            assert_close(h.attention, h_alone.attention)


# -- sampling ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [dict(temperature=0.0), dict(temperature=1e-3), dict(top_k=1), dict(top_p=1e-6)], ids=str
)
def test_sampling_limits_equal_greedy_for_seq2seq(options):
    model = make_seq2seq(seed=0)  # its greedy path's top-two logit gap is ≥ 0.01 at every step: 10 at T = 1e-3
    src, lengths = source([6, 2, 5, 4], seed=9)
    g = greedy(model, src, lengths, max_len=8)
    prompt = torch.full((4, 1), SOS)
    generator = torch.Generator().manual_seed(0)
    tokens = sample(model, prompt, 8, generator=generator, state=model.encode(src, lengths), eos_id=EOS, **options)
    L = g.tokens.shape[1]
    assert torch.equal(tokens[:, :L], g.tokens)
    assert (tokens[:, L:] == PAD).all()


def make_lm(seed=0, **overrides):
    config = dict(vocab_size=7, embedding_size=6, hidden_size=6, num_layers=2)
    config.update(overrides)
    torch.manual_seed(seed)
    model = create_model("language_model", model_config("language_model", **config)).eval()
    with torch.no_grad():
        model.output.weight.mul_(8.0)
    return model


@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=1e-3), dict(top_k=1), dict(top_p=1e-6)],
                         ids=str)  # fmt: skip
def test_sampling_limits_equal_argmax_over_the_full_forward_for_the_language_model(options):
    model = make_lm(cell="gru")
    prompt = torch.tensor([[2, 4, 5], [2, 6, 6]])
    tokens = sample(model, prompt, 6, generator=torch.Generator().manual_seed(0), **options)
    sequence = prompt
    with torch.no_grad():
        for _ in range(6):  # the reference re-reads the whole sequence every step; no carried state
            logits, _ = model(sequence)
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(tokens, sequence[:, 3:])


def first_token_frequencies(model, n, **options):
    prompt = torch.tensor([[2, 4]]).expand(n, -1)
    tokens = sample(model, prompt, 1, generator=torch.Generator().manual_seed(1), **options)
    return torch.bincount(tokens[:, 0], minlength=7).float() / n


def next_token_probs(model, temperature=1.0):
    with torch.no_grad():
        logits, _ = model(torch.tensor([[2, 4]]))
    return torch.softmax(logits[0, -1] / temperature, dim=-1)


def test_sampling_draws_from_the_tempered_distribution():
    model = make_lm(seed=1)
    p = next_token_probs(model, temperature=3.0)
    assert p.max() < 0.6  # a spread distribution, so the test can see a wrong one
    assert_close(first_token_frequencies(model, 20000, temperature=3.0), p, atol=0.015, rtol=0)


def test_top_k_and_top_p_restrict_the_support_and_renormalise():
    model = make_lm(seed=1)
    p = next_token_probs(model, temperature=3.0)
    order = p.argsort(descending=True)
    top3 = torch.zeros(7).index_fill(0, order[:3], 1.0) * p
    assert_close(first_token_frequencies(model, 20000, temperature=3.0, top_k=3), top3 / top3.sum(), atol=0.015, rtol=0)
    # nucleus: the smallest set of most likely tokens with mass ≥ top_p
    cum = p[order].cumsum(0)
    top_p = float((cum[1] + cum[2]) / 2)  # between the mass of the top two and the top three: keeps three
    assert_close(first_token_frequencies(model, 20000, temperature=3.0, top_p=top_p), top3 / top3.sum(), atol=0.015,
                 rtol=0)  # fmt: skip


def test_sampling_is_reproducible_with_a_generator():
    model = make_lm(seed=2)
    prompt = torch.tensor([[2], [5]])
    a = sample(model, prompt, 10, generator=torch.Generator().manual_seed(3))
    b = sample(model, prompt, 10, generator=torch.Generator().manual_seed(3))
    c = sample(model, prompt, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda m, s, l: beam_search(m, s, l, beam_size=2, max_len=5, n_best=3), "n_best"),
        (lambda m, s, l: beam_search(m, s, l, beam_size=0, max_len=5), "beam_size"),
        (lambda m, s, l: beam_search(m, s, l, beam_size=2, max_len=5, length_penalty=-1.0), "length_penalty"),
        (lambda m, s, l: beam_search(m, s, l, beam_size=2, max_len=5, penalty="wu"), "penalty"),
        (lambda m, s, l: greedy(m, s, l, max_len=0), "max_len"),
        (lambda m, s, l: sample(m, torch.full((2, 1), SOS), 3, temperature=-1.0, state=m.encode(s, l)), "temperature"),
        (lambda m, s, l: sample(m, torch.full((2, 1), SOS), 3, top_p=0.0, state=m.encode(s, l)), "top_p"),
        (lambda m, s, l: sample(m, torch.full((2, 1), SOS), 3, top_k=0, state=m.encode(s, l)), "top_k"),
        (lambda m, s, l: sample(m, torch.full((2, 0), SOS), 3, state=m.encode(s, l)), "prompt_tokens"),
    ],
)
def test_bad_arguments_are_config_errors(call, field):
    model = make_seq2seq()
    src, lengths = source([4, 2])
    with pytest.raises(ConfigError, match=field):
        call(model, src, lengths)
