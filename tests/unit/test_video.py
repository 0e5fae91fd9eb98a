"""Video classification: the moving-digit clips, the CNN-per-frame → LSTM model (shapes, the same CNN on every
frame, padding with frames after a clip's end and the batch order change nothing) and the predictor's files."""

import numpy as np
import pytest
import torch
from PIL import Image

from dnn.data.digit_scenes import DIGIT, DIRECTIONS, moving_digit_clips
from dnn.data.images import Normalize, load_digits_dataset
from dnn.errors import ConfigError
from dnn.models.registry import create_model, model_config
from dnn.models.video import VideoConfig
from dnn.tasks.video import VideoPredictor, read_clip

SIZE, T = 16, 6


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits_dataset()
    return images[:100], labels[:100]


def small_model(seed=0, **options):
    torch.manual_seed(seed)
    config = dict(num_classes=4, image_size=SIZE, channels=[4, 8], frame_features=8, hidden_size=8)
    return create_model("video_cnn_lstm", model_config("video_cnn_lstm", **{**config, **options})).eval()


def centre(frame: torch.Tensor) -> torch.Tensor:
    """The (y, x) centre of mass of a frame (1, H, W)."""
    weights = frame[0]
    ys, xs = torch.meshgrid(torch.arange(weights.shape[0]), torch.arange(weights.shape[1]), indexing="ij")
    return torch.stack([(weights * ys).sum(), (weights * xs).sum()]) / weights.sum()


# -- the clips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [1, 2])
def test_the_digit_moves_speed_pixels_per_frame_in_the_labelled_direction(digits, speed):
    size = DIGIT + speed * (T - 1) + 2
    clips, direction = moving_digit_clips(*digits, 40, T, size, speed, generator=torch.Generator().manual_seed(0))
    assert clips.shape == (40, T, 1, size, size) and set(direction.tolist()) == {0, 1, 2, 3}
    step = {"left": (0, -speed), "right": (0, speed), "up": (-speed, 0), "down": (speed, 0)}
    for clip, d in zip(clips, direction):
        moves = [centre(clip[t + 1]) - centre(clip[t]) for t in range(T - 1)]
        for move in moves:  # the same digit image, shifted whole: its centre moves exactly by the step
            torch.testing.assert_close(move, torch.tensor(step[DIRECTIONS[int(d)]], dtype=torch.float32))


def test_distractors_stand_still_and_the_clips_are_a_function_of_the_seed(digits):
    draw = lambda seed, k: moving_digit_clips(*digits, 10, T, SIZE, 1, k, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b = draw(5, 2), draw(5, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    still = a[0].amin(dim=1)  # (N, 1, H, W): what every frame shows
    assert (still.flatten(1).count_nonzero(dim=1) > 0).all()  # the two distractors are in every frame
    assert not torch.equal(draw(6, 2)[0], a[0])


def test_frames_too_small_for_the_path_are_a_one_line_error(digits):
    with pytest.raises(ConfigError, match="too small for a digit of 8 moving 14 px"):
        moving_digit_clips(*digits, 2, frames=8, size=20, speed=2)
    moving_digit_clips(*digits, 2, frames=8, size=15, speed=1)  # 8 + 7 pixels: the bound is inclusive


# -- the model -------------------------------------------------------------------------------------------------


def test_shapes_and_the_same_cnn_on_every_frame():
    model = small_model()
    clips = torch.randn(3, T, 1, SIZE, SIZE)
    assert model(clips).shape == (3, 4)
    features = model.frame_features(clips)
    assert features.shape == (3, T, 8)
    one_frame = model.frame_features(clips[1:2, 4:5])  # (1, 1, F): frame 4 of clip 1 alone
    torch.testing.assert_close(features[1:2, 4:5], one_frame)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_frames_after_a_clips_end_change_nothing(cell):
    model = small_model(1, cell=cell, num_layers=2)
    short, long = torch.randn(1, 3, 1, SIZE, SIZE), torch.randn(1, T, 1, SIZE, SIZE)
    padded = torch.cat([short, torch.randn(1, T - 3, 1, SIZE, SIZE)], dim=1)  # noise after the end
    batch = torch.cat([padded, long])
    out = model(batch, torch.tensor([3, T]))
    torch.testing.assert_close(out[0], model(short)[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out[1], model(long)[0], atol=1e-6, rtol=1e-5)


def test_the_batch_order_changes_no_clips_logits():
    model = small_model(2)
    clips = torch.randn(5, T, 1, SIZE, SIZE)
    order = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(model(clips[order]), model(clips)[order], atol=1e-6, rtol=1e-5)


def test_config_errors_name_the_argument():
    with pytest.raises(ConfigError, match="halve a frame of 4 below one pixel"):
        VideoConfig(num_classes=4, image_size=4, channels=(8, 8, 8))
    with pytest.raises(ConfigError, match=r"clips must have shape \(B, T, 1, 16, 16\)"):
        small_model()(torch.randn(2, T, 1, 20, 20))


# -- the predictor ---------------------------------------------------------------------------------------------


def test_the_predictor_reads_gif_and_npy_clips_of_any_length(tmp_path, digits):
    clips, _ = moving_digit_clips(*digits, 2, T, SIZE, generator=torch.Generator().manual_seed(3))
    predictor = VideoPredictor(small_model(4), list(DIRECTIONS), T, SIZE, Normalize([0.1], [0.3]))
    gif = tmp_path / "clip.gif"
    frames = [Image.fromarray((f[0].numpy() * 255).round().astype(np.uint8)) for f in clips[0]]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    npy = tmp_path / "clip.npy"
    np.save(npy, clips[1, :4, 0].numpy())  # a shorter clip: 4 frames
    torch.testing.assert_close(read_clip(gif, SIZE), clips[0], atol=1 / 255, rtol=0)
    assert read_clip(npy, SIZE).shape == (4, 1, SIZE, SIZE)
    rows = predictor.predict_files([str(gif), str(npy)])
    assert [r["input"] for r in rows] == [str(gif), str(npy)]
    assert all(r["label"] in DIRECTIONS and 0.25 <= r["probability"] <= 1.0 for r in rows)
    alone = predictor.predict_tensor(clips[1:2, :4])[0]  # the padded shorter clip = the clip alone
    assert rows[1]["probability"] == pytest.approx(float(alone.max()), abs=1e-5)
