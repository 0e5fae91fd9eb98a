"""Image captioning: the digit scenes, the Show-Attend-Tell model (shapes, attention rows, beam 1 = greedy, padding
and batching invariances, the attention penalty), the predictor and the overlay picture."""

import pytest
import torch

from dnn.data.digit_scenes import DIGIT, DIGIT_WORDS, caption_scenes
from dnn.data.images import Normalize, load_digits_dataset
from dnn.data.vocab import Vocab
from dnn.decoding import beam_search, greedy
from dnn.errors import ConfigError
from dnn.inspect.captioning import attention_over_image
from dnn.models.captioning import CaptionConfig, CaptionModel, coordinate_channels
from dnn.models.registry import create_model, model_config
from dnn.models.token_ids import token_cross_entropy
from dnn.tasks.captioning import CaptionPredictor, collate_captions

V = len(DIGIT_WORDS) + 4
H_IMG, W_IMG = 16, 32


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits_dataset()
    return images[:200], labels[:200]


def small_model(seed=0, **options) -> CaptionModel:
    torch.manual_seed(seed)
    config = dict(vocab_size=V, channels=[4, 8], feature_size=12, embedding_size=8, hidden_size=12)
    model = create_model("caption_attention", model_config("caption_attention", **{**config, **options}))
    return model.eval()


# -- the scenes ------------------------------------------------------------------------------------------------


def test_scenes_place_the_digits_left_to_right_without_overlap_and_caption_them_in_that_order(digits):
    images, labels = digits
    scenes = caption_scenes(images, labels, 50, H_IMG, W_IMG, 1, 4, torch.Generator().manual_seed(1))
    assert scenes.images.shape == (50, 1, H_IMG, W_IMG) and len(scenes) == 50
    assert {len(c) for c in scenes.captions} == {1, 2, 3, 4}
    words = {w: i for i, w in enumerate(DIGIT_WORDS)}
    for image, caption, boxes in zip(scenes.images, scenes.captions, scenes.boxes):
        lefts = [left for _, left in boxes]
        assert all(b - a >= DIGIT for a, b in zip(lefts, lefts[1:]))  # in order, never overlapping
        assert lefts[-1] + DIGIT <= W_IMG and all(0 <= top <= H_IMG - DIGIT for top, _ in boxes)
        for word, (top, left) in zip(caption, boxes):  # the pixels there are a digit image of that class
            patch = image[:, top : top + DIGIT, left : left + DIGIT]
            matches = (images == patch).flatten(1).all(dim=1)
            assert matches.any() and int(labels[matches][0]) == words[word]
        covered = sum(int(image[:, t : t + DIGIT, l : l + DIGIT].count_nonzero()) for t, l in boxes)
        assert covered == int(image.count_nonzero())  # nothing outside the digits


def test_scenes_are_a_function_of_the_seed(digits):
    draw = lambda seed: caption_scenes(*digits, 8, H_IMG, W_IMG, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_a_canvas_too_narrow_is_a_one_line_error(digits):
    with pytest.raises(ConfigError, match="cannot hold 4 digits"):
        caption_scenes(*digits, 2, 16, 24, 1, 4)


# -- the model -------------------------------------------------------------------------------------------------


def test_shapes_and_attention_rows_sum_to_one_over_the_positions():
    model = small_model()
    images = torch.randn(3, 1, H_IMG, W_IMG)
    state = model.encode(images)
    assert state.grid == (H_IMG // 4, W_IMG // 4)
    S = (H_IMG // 4) * (W_IMG // 4)
    assert state.annotations.shape == (3, S, 12)
    tgt_in = torch.tensor([[2, 5, 6, 7], [2, 8, 0, 0], [2, 4, 9, 0]])
    logits, attention = model(images, tgt_in)
    assert logits.shape == (3, 4, V) and attention.shape == (3, 4, S)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 4))
    step_logits, _, alpha = model.decode_step(tgt_in[:, 0], state)
    assert step_logits.shape == (3, V) and alpha.shape == (3, S)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_beam_one_equals_greedy(score, cell):
    options = dict(hidden_size=12, feature_size=12) if score == "dot" else {}
    model = small_model(1, attention=score, cell=cell, **options)
    images = torch.randn(4, 1, H_IMG, W_IMG)
    S = (H_IMG // 4) * (W_IMG // 4)
    positions = torch.full((4,), S)
    result = greedy(model, images, positions, 7)
    hyps = beam_search(model, images, positions, 1, 7)
    for b, best in enumerate(h[0] for h in hyps):
        n = len(best.tokens)
        assert best.tokens.tolist() == result.tokens[b, :n].tolist()
        torch.testing.assert_close(best.attention, result.attention[b, :n])
        assert best.attention.shape == (n, S)  # every position kept: the positions are the source "length"


def test_padding_after_a_caption_changes_none_of_its_steps_nor_its_loss():
    model = small_model(2)
    images = torch.randn(2, 1, H_IMG, W_IMG)
    short = collate_captions(images[:1], [[5, 6]])
    padded = collate_captions(images, [[5, 6], [7, 8, 9, 10]])  # the first caption padded to 5 steps
    logits_short, att_short = model(short.images, short.tgt_in)
    logits_pad, att_pad = model(padded.images, padded.tgt_in)
    torch.testing.assert_close(logits_pad[:1, :3], logits_short)
    torch.testing.assert_close(att_pad[:1, :3], att_short)
    loss_short = model.loss(logits_short, short.tgt_out)
    loss_first = token_cross_entropy(logits_pad[:1], padded.tgt_out[:1])  # the −100 steps count for nothing
    torch.testing.assert_close(loss_first, loss_short)


def test_an_image_gets_the_same_caption_alone_and_in_any_batch_position():
    model = small_model(3)
    images = torch.randn(5, 1, H_IMG, W_IMG)
    together = greedy(model, images, None, 6)
    order = torch.tensor([3, 0, 4, 1, 2])
    shuffled = greedy(model, images[order], None, 6)
    alone = greedy(model, images[2:3], None, 6)
    L = alone.tokens.shape[1]
    assert together.tokens[2, :L].tolist() == alone.tokens[0].tolist()
    assert shuffled.tokens[4, :L].tolist() == alone.tokens[0].tolist()
    torch.testing.assert_close(together.attention[2, :L], alone.attention[0], atol=1e-6, rtol=1e-5)


def test_the_doubly_stochastic_penalty_is_lambda_times_the_squared_uncovered_attention():
    model = small_model(4, doubly_stochastic=0.5)
    batch = collate_captions(torch.randn(2, 1, H_IMG, W_IMG), [[5], [6, 7, 8]])
    logits, attention = model(batch.images, batch.tgt_in)
    real = (batch.tgt_out >= 0).float().unsqueeze(-1)  # (B, T, 1)
    coverage = (attention * real).sum(1)  # (B, S)
    expected = token_cross_entropy(logits, batch.tgt_out) + 0.5 * ((1 - coverage) ** 2).sum(1).mean()
    torch.testing.assert_close(model.loss(logits, batch.tgt_out, attention), expected)
    torch.testing.assert_close(model.loss(logits, batch.tgt_out), token_cross_entropy(logits, batch.tgt_out))


def test_coordinates_span_minus_one_to_one_along_each_axis():
    coords = coordinate_channels(3, 5, torch.zeros(1))
    assert coords.shape == (2, 3, 5)
    torch.testing.assert_close(coords[0, 0], torch.linspace(-1, 1, 5))  # x along a row
    torch.testing.assert_close(coords[1, :, 0], torch.linspace(-1, 1, 3))  # y down a column


def test_config_errors_name_the_argument():
    with pytest.raises(ConfigError, match="attention='dot' needs feature_size"):
        CaptionConfig(vocab_size=V, attention="dot", feature_size=64, hidden_size=128)
    with pytest.raises(ConfigError, match="channels must list at least one"):
        CaptionConfig(vocab_size=V, channels=())
    with pytest.raises(ConfigError, match=r"images must have shape \(B, 1, H_img, W_img\)"):
        small_model().encode(torch.randn(2, 3, 16, 32))
    with pytest.raises(ConfigError, match="positions must be the number of feature-map positions"):
        small_model().encode(torch.randn(2, 1, 16, 32), torch.tensor([5, 5]))


# -- the predictor and the picture -----------------------------------------------------------------------------


def test_the_predictor_returns_words_and_each_words_attention_over_the_image(tmp_path):
    model = small_model(5)
    predictor = CaptionPredictor(model, Vocab(DIGIT_WORDS), (H_IMG, W_IMG), 1, Normalize([0.1], [0.3]), 4)
    images = torch.rand(3, 1, H_IMG, W_IMG)
    rows = predictor.caption(images)
    assert len(rows) == 3
    for row in rows:
        assert row["caption"] == " ".join(row["words"]) and all(w in DIGIT_WORDS for w in row["words"])
        assert row["grid"] == [H_IMG // 4, W_IMG // 4]
        assert len(row["attention"]) == len(row["words"]) == len(row["focus"])
        for weights, (x, y) in zip(row["attention"], row["focus"]):
            assert len(weights) == 32 and sum(weights) == pytest.approx(1.0, abs=1e-5)
            assert 0 <= x < W_IMG and 0 <= y < H_IMG
    assert [r["words"] for r in predictor.caption(images, beam_size=1)] == [r["words"] for r in rows]
    assert len(predictor.caption(images[0], beam_size=3)) == 1
    with pytest.raises(ConfigError, match="beam_size must be a positive integer"):
        predictor.caption(images, beam_size=0)
    with pytest.raises(ConfigError, match=r"images must have shape \(B, 1, 16, 32\)"):
        predictor.caption(torch.rand(2, 1, 16, 16))


def test_the_overlay_draws_one_panel_per_word_and_an_empty_caption(tmp_path):
    image = torch.rand(H_IMG, W_IMG)
    attention = torch.softmax(torch.randn(3, 4, 8).flatten(1), -1).view(3, 4, 8)
    path = attention_over_image(image, ["one", "two", "three"], attention, tmp_path / "a.png", "caption: one two three")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    empty = attention_over_image(image, [], torch.zeros(0, 4, 8), tmp_path / "b.png")
    assert empty.is_file()
