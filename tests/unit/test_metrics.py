import math

import pytest
import torch

from dnn.training import metrics


def test_accuracy_and_macro_f1_match_hand_computed_values():
    pred = torch.tensor([0, 1, 1, 2, 2, 2])
    gold = [0, 1, 2, 2, 2, 1]
    assert metrics.accuracy(pred, gold) == pytest.approx(4 / 6)
    # per class F1: class 0 → 1.0; class 1 → P 1/2, R 1/2 → 0.5; class 2 → P 2/3, R 2/3 → 2/3
    assert metrics.macro_f1(pred, gold) == pytest.approx((1.0 + 0.5 + 2 / 3) / 3)


def test_mse_perplexity_exact_match_token_accuracy():
    assert metrics.mse([1.0, 2.0], [0.0, 0.0]) == pytest.approx(2.5)
    assert metrics.perplexity(total_nll=10 * math.log(4), n_tokens=10) == pytest.approx(4.0)
    assert metrics.exact_match(["2026-11-25", "2026-01-01"], ["2026-11-25", "2026-01-02"]) == 0.5
    assert metrics.token_accuracy([[1, 2, 3], [4]], [[1, 2, 4], [4, 5]]) == pytest.approx(3 / 5)


def test_bleu_and_chrf_come_with_sacrebleu_signatures():
    refs = ["the cat sat on the mat", "a dog barked"]
    score, signature = metrics.bleu(refs, refs)
    assert score == pytest.approx(100.0) and signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    low, _ = metrics.bleu(["the the the", "x y z"], refs)
    assert low < 10
    # a known value: one 4-gram-matching hypothesis of a 6-word reference (brevity penalty e^(1 - 6/4))
    score, _ = metrics.bleu(["the cat sat on"], ["the cat sat on the mat"])
    assert score == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-6)
    c, signature = metrics.chrf(refs, refs)
    assert c == pytest.approx(100.0) and "nc:6|nw:0" in signature
