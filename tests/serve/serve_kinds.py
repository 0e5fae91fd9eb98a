"""Tiny trained runs of the kinds that have no page panel of their own — captioning, video, the adding problem,
speech — made once per test session (a few seconds: 2–3 training steps each), and input files for them.

Both ``test_serve_kinds.py`` and ``test_serve_browser_kinds.py`` use :func:`kind_runs`: the runs are kept here, in
this module, so the second caller in a session gets the runs the first one made.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from dnn.train import train

THREADS = ["train.threads=1"]
SPECS = {
    "caption": ("caption-digits", ["data.sizes=[32,8,8]", "data.width=24", "data.max_digits=2", "model.channels=[8,16]",
                                   "model.feature_size=16", "model.embedding_size=8", "model.hidden_size=16",
                                   "model.attention_hidden_size=8", "train.max_steps=3", "train.batch_size=8",
                                   *THREADS]),
    "video": ("video-moving-digits", ["data.sizes=[32,8,8]", "data.frames=4", "data.frame_size=12",
                                      "data.distractors=0", "model.channels=[4,8]", "model.frame_features=8",
                                      "model.hidden_size=8", "train.max_steps=3", "train.batch_size=8", *THREADS]),
    "adding": ("adding-lstm", ["data.sizes=[32,8,8]", "data.length=10", "model.hidden_size=8", "train.max_steps=3",
                               "train.batch_size=8", *THREADS]),
    "speech": ("speech-digits", ["data.sizes=[16,4,4]", "train.batch_size=4", "model.hidden_size=8",
                                 "model.conv_channels=8", "model.num_layers=1", "train.max_steps=2", *THREADS]),
}  # fmt: skip
KINDS = tuple(SPECS)
ADDING_EXAMPLE = "0.3 0.7* 0.1 0.5*"  # what the adding run's description gives as its example

_made: dict[str, SimpleNamespace] = {}


def kind_runs(tmp_path_factory) -> SimpleNamespace:
    """``caption``, ``video``, ``adding``, ``speech`` (run directories), ``files`` (a folder of inputs: ``png``,
    ``gif``, ``npy``, ``wav``) and ``all`` (the four runs), trained on the session's first call."""
    if "runs" not in _made:
        root = tmp_path_factory.mktemp("kind_runs")
        paths = {name: root / name for name in SPECS}
        for name, (recipe, overrides) in SPECS.items():
            train(recipe, overrides, run_dir=paths[name], progress=False)
        files = root / "inputs"
        files.mkdir()
        _made["runs"] = SimpleNamespace(**paths, all=list(paths.values()), files=write_inputs(files))
    return _made["runs"]


def write_inputs(folder: Path) -> SimpleNamespace:
    """An image to caption, a clip as GIF and as .npy, and a second of audio, written into ``folder``."""
    picture = np.zeros((16, 48), np.uint8)
    picture[4:12, 4:10] = 255
    picture[3:13, 28:31] = 200
    png = folder / "two digits.png"
    Image.fromarray(picture).save(png)
    clip = moving_square(4, 12)
    npy = folder / "clip.npy"
    np.save(npy, clip)
    gif = folder / "clip.gif"
    gif.write_bytes(gif_bytes(clip))
    wav = folder / "tone.wav"
    wav.write_bytes(wav_bytes(1.0))
    return SimpleNamespace(png=png, gif=gif, npy=npy, wav=wav)


def moving_square(frames: int, size: int) -> np.ndarray:
    """A clip ``(T, size, size)`` in [0, 1]: a square moving right."""
    clip = np.zeros((frames, size, size), np.float32)
    for t in range(frames):
        clip[t, 4:8, 2 + 2 * t : 6 + 2 * t] = 1
    return clip


def gif_bytes(clip: np.ndarray) -> bytes:
    images = [Image.fromarray((frame * 255).astype(np.uint8)) for frame in clip]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buffer.getvalue()


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    """A 440 Hz tone of ``seconds`` as a 16-bit mono WAV."""
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV",
                    subtype="PCM_16")  # fmt: skip
    return buffer.getvalue()


def js_number(value: float) -> str:
    """A number as the page shows it (run.js ``number``): integers as they are, others with 3 decimals."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
