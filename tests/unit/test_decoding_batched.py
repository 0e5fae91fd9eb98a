"""Batched decoding: beam search over a batch equals the sentence-by-sentence loop; sampling's limits are errors.

Beam search steps all sentences at once (B·K rows) and drops a sentence from the batch as soon as it stops, so
every sentence must get exactly the hypotheses, scores and attention it gets when decoded alone. The models are
random but fixed, their output layer scaled up so that no two hypotheses tie within float rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from dnn.decoding import MIN_TEMPERATURE, beam_search, greedy, sample
from dnn.errors import ConfigError
from dnn.models import create_model, model_config

SV, SOS, EOS, PAD = 13, 2, 3, 0


def make_seq2seq(tgt_vocab=11, seed=0, sharpen=3.0, **overrides):
    config = dict(src_vocab_size=SV, tgt_vocab_size=tgt_vocab, embedding_size=8, hidden_size=6,
                  encoder_hidden_size=5, cell="gru", attention="concat", attention_hidden_size=7)  # fmt: skip
    config.update(overrides)
    torch.manual_seed(seed)
    model = create_model("seq2seq", model_config("seq2seq", **config)).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(sharpen)
    return model


def source(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, SV, (len(lengths), max(lengths)), generator=g), torch.tensor(lengths)  # garbage padding


class EndsNearItsLength:
    """A seq2seq model whose <eos> logit rises by ``slope`` a step once the output passes ``len(x) / 2`` tokens, so
    that the sentences of a batch stop at different steps (random weights alone emit <eos> at once or never)."""

    class State:
        def __init__(self, inner, steps, target):
            self.inner, self.steps, self.target = inner, steps, target  # (B,) each

        def index_select(self, indices):
            return type(self)(self.inner.index_select(indices), self.steps[indices], self.target[indices])

    def __init__(self, model, slope=1.5):
        self.model, self.slope = model, slope

    def encode(self, src, src_lengths):
        n = torch.full((src.shape[0],), src.shape[1]) if src_lengths is None else src_lengths
        return self.State(self.model.encode(src, src_lengths), torch.zeros(src.shape[0]), n / 2)

    def decode_step(self, prev, state):
        logits, inner, weights = self.model.decode_step(prev, state.inner)  # (B, V)
        logits[:, EOS] += self.slope * (state.steps - state.target)
        return logits, self.State(inner, state.steps + 1, state.target), weights


VARIANTS = [
    dict(),  # the translate-tsv shape: GRU, bidirectional encoder, concat attention
    dict(cell="lstm", attention="general", attention_hidden_size=None, num_layers=2),
    dict(attention="dot", attention_hidden_size=None, encoder_hidden_size=6, bidirectional=False, input_feeding=True),
    dict(attention="none", attention_hidden_size=None),
]
SEARCHES = [
    dict(beam_size=5, n_best=1, length_penalty=0.0),
    dict(beam_size=5, n_best=3, length_penalty=0.6),
    dict(beam_size=4, n_best=4, length_penalty=1.0, penalty="simple"),
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())) or "gru-concat")
def test_batched_beam_search_equals_the_sentence_by_sentence_loop(variant, search):
    model = EndsNearItsLength(make_seq2seq(**variant))
    lens = [9, 2, 6, 1, 7, 4, 9, 3]
    src, lengths = source(lens, seed=1)
    batched = beam_search(model, src, lengths, max_len=12, **search)
    lengths_seen = set()
    for b, n in enumerate(lens):
        (alone,) = beam_search(model, src[b : b + 1, :n], None, max_len=12, **search)
        assert len(batched[b]) == len(alone) == search["n_best"]
        for h, h_alone in zip(batched[b], alone, strict=True):
            assert torch.equal(h.tokens, h_alone.tokens)
            assert h.score == pytest.approx(h_alone.score, abs=1e-5)
            if h.attention is None:
                assert h_alone.attention is None
            else:
                assert h.attention.shape == (len(h.tokens), n)
                assert_close(h.attention, h_alone.attention)
        lengths_seen.add(len(batched[b][0].tokens))
    assert len(lengths_seen) > 1  # sentences stop at different steps: the batch shrinks on the way


@pytest.mark.parametrize("variant", VARIANTS[:2], ids=["gru-concat", "lstm-general"])
def test_beam_one_equals_greedy_over_a_batch(variant):
    model = make_seq2seq(**variant)
    lens = [5, 8, 1, 3, 8, 2]
    src, lengths = source(lens, seed=2)
    g = greedy(model, src, lengths, max_len=10)
    beams = beam_search(model, src, lengths, beam_size=1, max_len=10)
    for b, n in enumerate(lens):
        (best,) = beams[b]
        ended = (g.tokens[b] == EOS).nonzero()
        expected = g.tokens[b, : int(ended[0]) + 1] if len(ended) else g.tokens[b]
        assert torch.equal(best.tokens, expected)
        assert best.score == pytest.approx(float(g.scores[b]), abs=1e-5)
        assert_close(best.attention, g.attention[b, : len(best.tokens), :n])


def test_reordering_beams_within_their_sentences_keeps_the_memory_in_place():
    model = make_seq2seq()
    src, lengths = source([4, 6], seed=3)
    state = model.encode(src, lengths).index_select(torch.tensor([0, 0, 0, 1, 1, 1]))  # 3 beams each
    within = state.index_select(torch.tensor([2, 0, 0, 5, 3, 4]))  # every row stays on its sentence
    assert within.memory is state.memory and within.projected_memory is state.projected_memory
    assert torch.equal(within.hidden, state.hidden[:, [2, 0, 0, 5, 3, 4]])
    across = state.index_select(torch.tensor([3, 4, 5]))  # sentence 1's beams only: the memory moves
    assert torch.equal(across.memory, state.memory[3:])
    assert torch.equal(across.source, torch.tensor([1, 1, 1]))
    # decode_step on the reordered state equals decode_step on freshly gathered rows
    prev = torch.tensor([4, 5, 6, 7, 8, 9])
    logits, _, _ = model.decode_step(prev, within)
    fresh = model.encode(src, lengths).index_select(torch.tensor([0, 0, 0, 1, 1, 1]))
    fresh = type(fresh)(fresh.hidden[:, [2, 0, 0, 5, 3, 4]], fresh.memory, fresh.mask, fresh.projected_memory, None)
    expected, _, _ = model.decode_step(prev, fresh)
    assert_close(logits, expected)


# -- sampling's limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1e-45, 1e-4, math.nan, math.inf, -math.inf, -1.0, True])
def test_a_temperature_outside_zero_or_the_accepted_range_is_a_config_error(temperature):
    model = make_seq2seq()
    src, lengths = source([4, 2])
    accepted = rf"temperature must be 0 \(greedy\) or a finite number ≥ {MIN_TEMPERATURE:g}"
    with pytest.raises(ConfigError, match=accepted):
        sample(model, torch.full((2, 1), SOS), 3, temperature=temperature, state=model.encode(src, lengths))


@pytest.mark.parametrize("temperature", [0.0, 0, MIN_TEMPERATURE, 1.0, 1e6])
def test_temperatures_in_range_sample_finite_tokens(temperature):
    model = make_seq2seq()
    src, lengths = source([4, 2])
    tokens = sample(model, torch.full((2, 1), SOS), 5, temperature=temperature, state=model.encode(src, lengths),
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert tokens.shape == (2, 5) and int(tokens.min()) >= 0 and int(tokens.max()) < 11


@pytest.mark.parametrize("top_p", [1e-300, 1e-45])
def test_a_tiny_top_p_keeps_the_most_likely_token(top_p):
    model = make_seq2seq()
    src, lengths = source([6, 2, 5], seed=4)
    g = greedy(model, src, lengths, max_len=7)
    tokens = sample(model, torch.full((3, 1), SOS), 7, top_p=top_p, state=model.encode(src, lengths), eos_id=EOS,
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    L = g.tokens.shape[1]
    assert torch.equal(tokens[:, :L], g.tokens)
    assert (tokens[:, L:] == PAD).all()
