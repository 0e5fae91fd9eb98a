"""`dnn predict RUN clip.gif clip.npy` on a video run: the class of each clip, as the Python predictor gives it."""

import numpy as np
from PIL import Image

from dnn.cli import main
from dnn.run import load_run
from dnn.train import train

TINY_VIDEO = [
    "data.sizes=[32,8,8]", "data.frames=4", "data.frame_size=12", "data.distractors=0", "model.channels=[4,8]",
    "model.frame_features=16", "model.hidden_size=16", "train.max_steps=3", "train.batch_size=16", "train.threads=1",
]  # fmt: skip


def test_predict_labels_gif_and_npy_clips_of_a_video_run(tmp_path, capsys):
    run_dir = tmp_path / "video"
    train("video-moving-digits", TINY_VIDEO, run_dir=run_dir, progress=False)
    rng = np.random.default_rng(0)
    frames = rng.random((4, 12, 12)).astype(np.float32)  # (T, H, W) in [0, 1]
    npy, gif = tmp_path / "clip.npy", tmp_path / "clip.gif"
    np.save(npy, frames)
    pictures = [Image.fromarray((f * 255).astype(np.uint8), mode="L") for f in frames]
    pictures[0].save(gif, save_all=True, append_images=pictures[1:], duration=100)

    assert main(["predict", str(run_dir), str(gif), str(npy)]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = load_run(run_dir).predictor.predict_files([gif, npy])
    assert printed == [f"{row['input']}\t{row['label']}\t{row['probability']:.3f}" for row in expected]
    assert [line.split("\t")[1] in ("left", "right", "up", "down") for line in printed] == [True, True]
