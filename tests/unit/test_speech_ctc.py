"""CTC: the loss and the decoders against brute-force enumeration of every path, hand-made alignments, the
beam-1 invariant, and the speech_ctc model (output lengths, padding invariance, validation)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dnn.data.speech import collate_speech
from dnn.decoding_ctc import collapse, greedy_ctc, greedy_path, prefix_beam_search
from dnn.errors import ConfigError
from dnn.models.registry import create_model, model_config
from dnn.models.speech import ctc_loss, min_ctc_frames


def labelling_probs(probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """p(y) = Σ over every path π of T labels with B(π) = y of Π_t p_t(π_t): all V^T paths, enumerated."""
    T, V = probs.shape
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = math.prod(float(probs[t, v]) for t, v in enumerate(path))
        key = tuple(collapse(path))
        out[key] = out.get(key, 0.0) + p
    return out


def random_probs(T: int, V: int, seed: int, sharpness: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(T, V, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize(
    "path,expected",
    [
        ([1, 1, 0, 1, 2, 2, 0, 0, 3], [1, 1, 2, 3]),  # a blank separates the two 1s: both stay
        ([1, 1, 1], [1]),  # a run collapses to one label
        ([0, 0, 0], []),
        ([2, 0, 2, 2, 0], [2, 2]),
        ([], []),
    ],
)
def test_collapse_merges_repeats_then_drops_blanks(path, expected):
    assert collapse(path) == expected


def test_greedy_path_reports_the_frame_where_each_label_starts():
    one_hot = F.one_hot(torch.tensor([0, 1, 1, 0, 2, 0, 2]), 3).float().log()  # (T, V)
    assert greedy_path(one_hot) == ([1, 2, 2], [1, 4, 6])


def test_greedy_ctc_stops_at_each_length():
    frames = torch.tensor([[1, 0, 2, 2], [2, 2, 1, 1]])
    log_probs = F.one_hot(frames, 3).float().log()  # (B, T, V)
    assert greedy_ctc(log_probs, torch.tensor([2, 4])) == [[1], [2, 1]]
    assert greedy_ctc(log_probs) == [[1, 2], [2, 1]]


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_finds_the_most_likely_labelling_with_its_summed_probability(seed):
    probs = random_probs(T=5, V=3, seed=seed)
    exact = labelling_probs(probs)
    beams = prefix_beam_search(probs.log(), beam_size=len(exact))  # wide enough to be exact
    best, best_p = max(exact.items(), key=lambda kv: kv[1])
    assert tuple(beams[0][0]) == best
    assert beams[0][1] == pytest.approx(math.log(best_p), abs=1e-9)
    for labels, score in beams:  # every returned labelling carries its exact probability
        assert score == pytest.approx(math.log(exact[tuple(labels)]), abs=1e-9)
    assert [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)


@pytest.mark.parametrize("seed", range(20))
def test_beam_one_equals_greedy_when_every_frame_is_confident(seed):
    g = torch.Generator().manual_seed(seed)
    T, V = 30, 6
    best = torch.randint(0, V, (T,), generator=g)
    best[torch.rand(T, generator=g) < 0.4] = 0  # blanks, as a CTC model mostly emits
    rest = torch.rand(T, V, generator=g, dtype=torch.float64)
    rest[torch.arange(T), best] = 0
    top = 0.9 + 0.1 * torch.rand(T, generator=g, dtype=torch.float64)  # top probability ≥ 0.9
    probs = rest / rest.sum(-1, keepdim=True) * (1 - top).unsqueeze(1)
    probs[torch.arange(T), best] = top
    labels, _ = greedy_path(probs.log())
    assert prefix_beam_search(probs.log(), beam_size=1)[0][0] == labels


def test_beam_one_can_beat_greedy_on_an_uncertain_frame():
    """Greedy takes the best path a ∅ a → "aa" (p = .297); the labelling "a" has more paths and p = .681.
    Beam 1 finds "a": it drops the prefix "" after frame 1, so its score counts the paths that start with a
    (.603) — a lower bound of p("a") that still beats "aa"."""
    probs = torch.tensor([[0.1, 0.9], [0.55, 0.45], [0.4, 0.6]], dtype=torch.float64)  # columns: ∅, a
    assert greedy_path(probs.log())[0] == [1, 1]
    labels, score = prefix_beam_search(probs.log(), beam_size=1)[0]
    assert labels == [1] and math.exp(score) == pytest.approx(0.9 * (0.55 + 0.45) * 0.4 + 0.9 * 0.45 * 0.6)
    assert prefix_beam_search(probs.log(), beam_size=4)[0][0] == [1]
    assert labelling_probs(probs)[(1,)] == pytest.approx(0.681)
    assert labelling_probs(probs)[(1, 1)] == pytest.approx(0.297)


def test_beam_size_is_validated():
    with pytest.raises(ConfigError, match="beam_size must be a positive integer, got 0"):
        prefix_beam_search(torch.zeros(3, 2), beam_size=0)


# ------------------------------------------------------------------------------------------------------ loss


def test_ctc_loss_is_minus_log_the_sum_over_paths():
    probs = torch.stack([random_probs(4, 3, seed=s) for s in (0, 1)])  # (B, T, V)
    targets = torch.tensor([[1, 2], [2, 0]])
    target_lengths = torch.tensor([2, 1])
    loss, infinite = ctc_loss(probs.log(), torch.tensor([4, 3]), targets, target_lengths, reduction="sum")
    expected = -math.log(labelling_probs(probs[0])[(1, 2)]) - math.log(labelling_probs(probs[1, :3])[(2,)])
    assert float(loss) == pytest.approx(expected, rel=1e-5) and infinite == 0
    mean, _ = ctc_loss(probs.log(), torch.tensor([4, 3]), targets, target_lengths)
    per_char = (-math.log(labelling_probs(probs[0])[(1, 2)]) / 2 - math.log(labelling_probs(probs[1, :3])[(2,)])) / 2
    assert float(mean) == pytest.approx(per_char, rel=1e-5)


def test_an_output_too_short_for_its_transcript_is_zeroed_and_counted():
    targets = torch.tensor([[1, 1, 2], [1, 2, 0]])  # "aab" needs 4 frames (a blank between the a's), "ab" 2
    lengths = torch.tensor([3])
    assert min_ctc_frames(targets, torch.tensor([3, 2])).tolist() == [4, 2]
    logits = torch.randn(2, 3, 3, requires_grad=True)
    loss, infinite = ctc_loss(logits, lengths.expand(2), targets, torch.tensor([3, 2]), reduction="sum")
    assert infinite == 1 and math.isfinite(loss.detach().item())
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() == 0  # the impossible one: no gradient


# ----------------------------------------------------------------------------------------------------- model


def test_speech_ctc_halves_the_frame_rate_and_padding_changes_nothing():
    torch.manual_seed(0)
    model = create_model(
        "speech_ctc", model_config("speech_ctc", num_classes=5, n_mels=8, conv_channels=6, hidden_size=4, num_layers=2)
    ).eval()
    a, b = torch.randn(9, 8), torch.randn(4, 8)
    batch = torch.zeros(2, 9, 8)
    batch[0], batch[1, :4] = a, b
    batch[1, 4:] = 7.0  # garbage in the padding must not matter
    logits, lengths = model(batch, torch.tensor([9, 4]))
    assert logits.shape == (2, 5, 5) and lengths.tolist() == [5, 2]  # ⌊(T − 1)/2⌋ + 1
    alone, _ = model(b.unsqueeze(0), torch.tensor([4]))
    torch.testing.assert_close(logits[1, :2], alone[0], atol=1e-5, rtol=1e-5)
    full = create_model(
        "speech_ctc", model_config("speech_ctc", num_classes=5, n_mels=8, conv_channels=0, hidden_size=4)
    ).eval()
    assert full(batch, torch.tensor([9, 4]))[1].tolist() == [9, 4] and full.stride == 1


def test_reference_and_fused_recurrent_implementations_give_the_same_outputs():
    torch.manual_seed(0)
    model = create_model(
        "speech_ctc", model_config("speech_ctc", num_classes=5, n_mels=8, conv_channels=6, hidden_size=4)
    ).eval()
    x, lengths = torch.randn(3, 11, 8), torch.tensor([11, 7, 3])
    reference, _ = model(x, lengths)
    model.rnn.implementation = "fused"
    fused, _ = model(x, lengths)
    torch.testing.assert_close(reference, fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"num_classes": 1}, "num_classes must be at least 2"),
        ({"num_classes": 5, "conv_kernel": 4}, "conv_kernel must be odd"),
        ({"num_classes": 5, "conv_channels": -1}, "conv_channels must be 0"),
        ({"num_classes": 5, "cell": "rnn"}, "cell must be one of 'lstm', 'gru'"),
        ({"num_classes": 5, "dropout": 1.5}, "dropout must be a number in"),
    ],
)
def test_speech_ctc_config_errors_name_the_field(options, message):
    with pytest.raises(ConfigError, match=message):
        create_model("speech_ctc", model_config("speech_ctc", **options))


def test_speech_ctc_rejects_features_of_the_wrong_width():
    model = create_model(
        "speech_ctc", model_config("speech_ctc", num_classes=5, n_mels=8, conv_channels=0, hidden_size=4)
    )
    with pytest.raises(ConfigError, match=r"features must have shape \(B, T, n_mels=8\), got \(1, 5, 80\)"):
        model(torch.zeros(1, 5, 80))


def toy_batch(n: int, g: torch.Generator, patterns: torch.Tensor):
    """Sequences of 2–4 labels (1 … K); label k is patterns[k] held for 3–5 frames, between noisy gaps."""
    items, targets = [], []
    for _ in range(n):
        labels = torch.randint(1, patterns.shape[0], (int(torch.randint(2, 5, (1,), generator=g)),), generator=g)
        frames = [0.3 * torch.randn(2, patterns.shape[1], generator=g)]
        for k in labels.tolist():
            hold = int(torch.randint(3, 6, (1,), generator=g))
            frames += [patterns[k] + 0.3 * torch.randn(hold, patterns.shape[1], generator=g)]
            frames += [0.3 * torch.randn(2, patterns.shape[1], generator=g)]
        items.append(torch.cat(frames))
        targets.append(labels.tolist())
    return collate_speech(list(zip(items, targets)))


def test_speech_ctc_learns_to_transcribe_a_toy_task():
    """Labels as held patterns with gaps: after 100 steps greedy decoding gets fresh sequences right (here all 64
    already after 80 steps)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    patterns = 2.0 * torch.randn(4, 8, generator=g)  # 3 labels (row 0 unused: the blank)
    model = create_model(
        "speech_ctc",
        model_config(
            "speech_ctc", num_classes=4, n_mels=8, conv_channels=16, hidden_size=16, num_layers=1, dropout=0.0
        ),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(100):
        batch = toy_batch(16, g, patterns)
        logits, lengths = model(batch.features, batch.lengths)
        loss, infinite = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
        assert infinite == 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = toy_batch(64, g, patterns)
    with torch.no_grad():
        logits, lengths = model(test.features, test.lengths)
    decoded = greedy_ctc(logits.log_softmax(-1), lengths)
    truth = [row[:n].tolist() for row, n in zip(test.targets, test.target_lengths)]
    assert sum(d == t for d, t in zip(decoded, truth)) / 64 >= 0.9
