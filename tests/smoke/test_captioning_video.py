"""Captioning and video end to end: each recipe shrunk to a tiny task that must be learnt in a few seconds, the
run's report (the attention over the image per word; the confusion matrix of the directions), and `dnn caption`
through the command line."""

import json

import numpy as np
import torch
from PIL import Image

from dnn.cli import main
from dnn.data.digit_scenes import DIGIT_WORDS, DIRECTIONS
from dnn.device import precision_supported
from dnn.run import load_run
from dnn.tasks import make_task
from dnn.train import train

# evaluated once, at the end, so the weights kept are the last ones
TINY_CAPTIONS = [
    "data.sizes=[48,16,16]", "data.width=24", "data.max_digits=2", "data.redraw=false", "model.channels=[16,32]",
    "model.feature_size=64", "model.embedding_size=32", "model.hidden_size=64", "model.attention_hidden_size=32",
    "train.epochs=100", "train.max_steps=120", "train.batch_size=16", "train.schedule=constant",
    "train.eval_every=120", "train.log_every=40",
]  # fmt: skip
TINY_VIDEO = [
    "data.sizes=[64,32,32]", "data.frames=4", "data.frame_size=12", "data.distractors=0", "model.channels=[4,8]",
    "model.frame_features=16", "model.hidden_size=16", "train.epochs=100", "train.max_steps=60", "train.batch_size=16",
    "train.eval_every=30", "train.log_every=30",
]  # fmt: skip


def test_a_tiny_captioner_learns_its_images_draws_the_attention_and_captions_through_the_cli(tmp_path, capsys):
    run_dir = tmp_path / "caption"
    results = train("caption-digits", TINY_CAPTIONS, run_dir=run_dir, progress=False)
    assert set(results["test"]) == {"exact_match", "token_accuracy", "bleu", "loss"}
    run = load_run(run_dir)
    assert run.predictor.kind == "caption"
    task = make_task(run.cfg)
    task.prepare(lambda line: None)
    assert task.evaluate(run.model, "train")["exact_match"] >= 0.9  # 48 images of 1–2 digits, learnt

    figures = sorted(p.name for p in (run_dir / "figures").glob("caption_attention_*.png"))
    assert figures == ["caption_attention_1.png", "caption_attention_2.png"]  # one per caption length (2, 1)
    assert "Attention over the image per word" in (run_dir / "report.html").read_text()

    image, truth = task.sample_inputs("train", 1)[0]
    path = tmp_path / "scene.png"
    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(path)
    capsys.readouterr()
    assert main(["caption", str(run_dir), str(path), "--attention"]) == 0
    lines = capsys.readouterr().out.splitlines()
    name, caption = lines[0].split("\t")
    assert name == str(path) and caption == truth
    assert len(lines) == 1 + len(caption.split())  # one "word at x=…, y=…" line per word
    assert all(line.split()[0] in DIGIT_WORDS and " at x=" in line for line in lines[1:])

    if precision_supported(torch.device("cpu"), "bf16") is None:
        assert main(["caption", str(run_dir), str(path), "--precision", "bf16", "--device", "cpu"]) == 0
        assert capsys.readouterr().out.splitlines()[0].split("\t")[0] == str(path)  # bf16 captions too
    else:  # a CPU without bf16 units: one line that says why, and what to use
        assert main(["caption", str(run_dir), str(path), "--precision", "bf16", "--device", "cpu"]) == 2
        assert capsys.readouterr().err.strip().endswith("use --precision=fp32")
    assert main(["caption", str(run_dir), str(tmp_path / "missing.png")]) == 2  # a one-line error, exit 2
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert main(["caption", str(run_dir), str(path), "--device", "cuda"]) == 2
        assert capsys.readouterr().err.startswith("dnn: error: --device=cuda: no CUDA device here")


def test_a_tiny_video_classifier_learns_the_directions(tmp_path, capsys):
    run_dir = tmp_path / "video"
    results = train("video-moving-digits", TINY_VIDEO, run_dir=run_dir, progress=False)
    assert set(results["test"]) == {"accuracy", "macro_f1", "loss"}
    run = load_run(run_dir)
    assert run.predictor.kind == "video" and run.predictor.classes == list(DIRECTIONS)
    task = make_task(run.cfg)
    task.prepare(lambda line: None)
    assert task.evaluate(run.model, "train")["accuracy"] >= 0.9
    assert (run_dir / "figures" / "confusion.png").is_file()
    assert json.loads((run_dir / "task.json").read_text())["task"] == "VideoClassification"
    assert main(["eval", str(run_dir), "--data", str(tmp_path)]) == 2  # built-in data: --data has nothing to match
    assert capsys.readouterr().err.startswith(f"dnn: error: {run_dir} is a video run on built-in data; ")
