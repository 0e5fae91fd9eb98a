"""Tiny trained runs for the serve tests, made once per test session: a seq2seq run with attention (dates), a
CNN on the digits, a character language model, a sentiment classifier and a tagger (on files written here)."""

from __future__ import annotations

import base64
import csv
import io
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dnn.train import train

THREADS = ["train.threads=1"]
RECURRENT = ["model.hidden_size=16", "model.embedding_size=8", *THREADS]
PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. A recurrent network reads one character at a time and keeps\n"
    "what it has read in its hidden state, carried from one chunk to the next.\n"
)


def _reviews(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    good, bad = ["good", "great", "wonderful", "loved"], ["bad", "awful", "boring", "hated"]
    neutral = ["the", "movie", "film", "plot", "actors", "was", "a", "and", "story", "it"]
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(neutral, k=rng.randint(3, 6)) + [rng.choice(good if label == "pos" else bad)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _conll(n: int, seed: int) -> str:
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "to", "house"]
    sentences = []
    for _ in range(n):
        tokens = [(str(rng.randint(0, 29)), "NUM") if rng.random() < 0.3 else (rng.choice(words), "WORD")
                  for _ in range(rng.randint(3, 8))]  # fmt: skip
        sentences.append("".join(f"{t} {g}\n" for t, g in tokens))
    return "\n".join(sentences) + "\n"


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> SimpleNamespace:
    """Run directories: ``dates``, ``digits``, ``charlm``, ``sentiment``, ``tagger`` (3 training steps each)."""
    root = tmp_path_factory.mktemp("serve_runs")
    text = root / "paragraph.txt"
    text.write_text(PARAGRAPH * 4, encoding="utf-8")
    reviews = root / "reviews.csv"
    with open(reviews, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(_reviews(80, seed=0))
    conll = root / "tags.conll"
    conll.write_text(_conll(60, seed=0), encoding="utf-8")

    specs = {
        "dates": (
            "dates-attention",
            ["data.sizes=[64,16,16]", "train.max_steps=3", "train.batch_size=16", *RECURRENT],
        ),  # fmt: skip
        "digits": ("digits-lenet5", ["train.max_steps=3", "data.image_size=8"]),
        "charlm": (
            "charlm-pydoc",
            [
                "data.source=null",
                f"data.train={text}",
                "model.num_layers=1",
                "train.max_steps=3",
                "train.batch_size=4",
                "data.length=20",
                *RECURRENT,
            ],
        ),
        "sentiment": (
            "sentiment-lstm",
            [f"data.train={reviews}", "data.min_freq=1", "train.max_steps=3", *RECURRENT],
        ),  # fmt: skip
        "tagger": ("tagging-bilstm", [f"data.train={conll}", "data.min_freq=1", "train.max_steps=3", *RECURRENT]),
    }
    paths = {}
    for name, (recipe, overrides) in specs.items():
        paths[name] = root / name
        train(recipe, overrides, run_dir=paths[name], progress=False)
    return SimpleNamespace(root=root, **paths)


def png_base64(pixels: np.ndarray) -> str:
    """A grey image (H, W) of uint8 as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="session")
def png():
    """``png(pixels (H, W) uint8) -> base64 PNG``."""
    return png_base64


@pytest.fixture(scope="session")
def digit_png() -> str:
    """A 3 from scikit-learn's digits, scaled to 0..255 and enlarged to 32×32, as a base64 PNG."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = int(np.flatnonzero(digits.target == 3)[0])
    small = (digits.images[index] * (255 / 16)).astype(np.uint8)
    return png_base64(np.array(Image.fromarray(small, mode="L").resize((32, 32), Image.Resampling.NEAREST)))


@pytest.fixture(scope="session")
def all_runs(runs) -> list[Path]:
    return [runs.dates, runs.digits, runs.charlm, runs.sentiment, runs.tagger]
