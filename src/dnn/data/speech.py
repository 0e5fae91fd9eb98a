"""Spoken data: built-in data sets synthesised with espeak-ng, a user's folder of audio files with a TSV of
transcripts, and padded batches of log-mel features for CTC.

Built-in (``data.source``)::

    digits    spoken digit strings of 3–7 digits, transcribed as digits: "3 1 4 1 5" (espeak-ng says
              "three one four one five"; the WER is then the digit error rate)
    phrases   short commands from a small vocabulary: "turn off the kitchen light", "call anna"

Every utterance gets a random English accent (``en-us``, ``en-gb-scotland``, ``en-029``, …), voice variant
(``m1``–``m7``, ``f1``–``f4``), speed (130–200 words a minute) and pitch (25–75). The variants ``m6`` and ``f3``
never occur in training or validation: half of the test set speaks with them (unseen voices), half with the
others. The utterances of a split are drawn from ``derive_seed(seed, source, split)``; espeak-ng's output for
the same text and settings is the same on every run, so the data set is a function of its parameters. It is
synthesised once (two espeak-ng processes at a time), resampled to 16 kHz mono 16-bit WAV (polyphase, from
espeak-ng's 22,050 Hz) and cached under ``~/.cache/dnn/speech/<source>-<hash of the parameters>/`` (or
``data.cache``): ``train.tsv``, ``valid.tsv``, ``test.tsv`` (``file<TAB>transcript<TAB>voice``) and ``wav/``. The
folder is built under a temporary name and renamed when complete, so a crash never leaves half a data set.

A user's data (``data.train``): a TSV file of ``file<TAB>transcript`` lines (files relative to the TSV's folder;
a header line ``file``/``path`` is skipped; further columns are ignored), or a folder holding one such TSV
(``transcripts.tsv``, or its only ``*.tsv``). Bad input is a DataError naming the TSV's line and the audio file:
a line without a tab, a missing transcript, a missing, unreadable or empty audio file, another sample rate
(unless ``data.resample=true``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dnn.data.audio import resample, spec_augment
from dnn.data.splits import SPLIT_NAMES, check_sizes, derive_seed
from dnn.data.text import check_file, iter_lines
from dnn.errors import ConfigError, DataError

__all__ = [
    "ACCENTS",
    "DATASETS",
    "HELD_OUT_VARIANTS",
    "VARIANTS",
    "SpeechBatch",
    "Utterance",
    "builtin_dataset",
    "check_espeak",
    "collate_speech",
    "read_transcripts",
    "synthesize",
]

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050
VERSION = 3  # bump when the generated data changes: it is part of the cache key
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
HELD_OUT_VARIANTS = ("m6", "f3")  # test only: unseen voices
SPEEDS = (130, 200)  # words per minute
PITCHES = (25, 75)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_ROOMS = ("kitchen", "bedroom", "garden", "office", "hall", "bathroom")
_DEVICES = ("light", "lamp", "fan", "heater", "radio", "television")
_COLOURS = ("red", "green", "blue", "white", "yellow")
_NAMES = ("anna", "peter", "maria", "john", "lucy", "david")
_NUMBERS = NUMBER_WORDS[1:]
PHRASES = (  # templates: each {slot} is filled from its word list
    "turn {on_off} the {room} {device}",
    "switch the {device} {on_off}",
    "set the {room} {device} to {number}",
    "make the {room} light {colour}",
    "{open_close} the {room} {door_window}",
    "play some {genre} music",
    "what is the weather {day}",
    "call {name}",
    "wake me up at {number}",
    "remind me to call {name} {day}",
)
_SLOTS = {
    "on_off": ("on", "off"),
    "room": _ROOMS,
    "device": _DEVICES,
    "number": _NUMBERS,
    "colour": _COLOURS,
    "open_close": ("open", "close"),
    "door_window": ("door", "window"),
    "genre": ("jazz", "rock", "classical", "quiet"),
    "day": ("today", "tomorrow", "tonight"),
    "name": _NAMES,
}


def _digits_text(rng: random.Random, min_digits: int = 3, max_digits: int = 7) -> str:
    return " ".join(rng.choice("0123456789") for _ in range(rng.randint(min_digits, max_digits)))


def _phrase_text(rng: random.Random) -> str:
    template = rng.choice(PHRASES)
    return template.format(**{slot: rng.choice(words) for slot, words in _SLOTS.items()})


DATASETS = {"digits": _digits_text, "phrases": _phrase_text}


# -------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Utterance:
    """One recording: its audio file, transcript, and where it was listed (``source:line``)."""

    path: str
    text: str
    line: int
    source: str
    voice: str | None = None  # built-in data: "<accent>+<variant>"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}: {os.path.relpath(self.path, Path(self.source).parent)}"

    @property
    def variant(self) -> str | None:
        return None if self.voice is None else self.voice.split("+")[-1]


def _find_tsv(folder: Path) -> Path:
    named = folder / "transcripts.tsv"
    if named.is_file():
        return named
    found = sorted(folder.glob("*.tsv"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) if found else "none"
        raise DataError(f"{folder}: expected transcripts.tsv or exactly one *.tsv file (file<TAB>transcript), "
                        f"found {listed}")  # fmt: skip
    return found[0]


def read_transcripts(path: str | os.PathLike) -> list[Utterance]:
    """The utterances a TSV (or a folder with one) lists; audio paths are checked to exist, not yet read."""
    path = Path(path)
    tsv = _find_tsv(path) if path.is_dir() else check_file(path, "file<TAB>transcript lines")
    out: list[Utterance] = []
    for number, line in iter_lines(tsv):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{tsv}:{number}: expected file<TAB>transcript, got {line[:60]!r} (no tab)")
        name, text = fields[0].strip(), " ".join(fields[1].split())
        if number == 1 and name.lower() in ("file", "path", "filename"):
            continue  # a header
        if not name:
            raise DataError(f"{tsv}:{number}: the file column is empty")
        if not text:
            raise DataError(f"{tsv}:{number}: {name}: missing transcript (the second column is empty)")
        audio = tsv.parent / name
        if not audio.is_file():
            raise DataError(f"{tsv}:{number}: {name}: no such audio file (looked in {tsv.parent})")
        voice = fields[2].strip() if len(fields) > 2 and "+" in fields[2] else None  # built-in: accent+variant
        out.append(Utterance(str(audio), text, number, str(tsv), voice))
    if not out:
        raise DataError(f"{tsv}: no utterances, expected file<TAB>transcript lines")
    return out


# -------------------------------------------------------------------------------------- synthesis


def check_espeak() -> str:
    """The path of espeak-ng; a one-line DataError saying how to install it when it is missing."""
    found = shutil.which(ESPEAK)
    if found is None:
        raise DataError(
            "espeak-ng is not installed: the built-in speech data is synthesised with it; install it with "
            "`apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS), or train on your "
            "own recordings with data.train=FILE.tsv"
        )
    return found


def synthesize(text: str, voice: str, speed: int, pitch: int, sample_rate: int = 16000) -> np.ndarray:
    """``espeak-ng -v VOICE -s SPEED -p PITCH TEXT`` → 16-bit mono samples ``(N,)`` at ``sample_rate``."""
    import soundfile

    command = [check_espeak(), "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), text]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        message = " ".join(done.stderr.decode(errors="replace").split())[:200]
        raise DataError(f"espeak-ng failed for voice {voice!r} and text {text!r}: {message or 'no audio'}")
    wave, rate = soundfile.read(io.BytesIO(done.stdout), dtype="float32")  # (N,)
    voiced = np.flatnonzero(np.abs(wave) > 1e-3)
    if voiced.size:  # espeak-ng pads with digital silence (a fifth of the samples): keep 50 ms of it at each end
        margin = rate // 20
        wave = wave[max(0, voiced[0] - margin) : voiced[-1] + 1 + margin]
    wave = resample(wave, rate, sample_rate)
    return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class _Spec:
    text: str
    voice: str
    speed: int
    pitch: int


def _draw_split(source: str, n: int, seed: int, split: str, params: dict) -> list[_Spec]:
    """The utterances of one split, drawn from their own seed; the test split alternates unseen and seen voices."""
    rng = random.Random(derive_seed(seed, "speech", source, split))
    seen = [v for v in VARIANTS if v not in HELD_OUT_VARIANTS]
    specs = []
    for i in range(n):
        text = DATASETS[source](rng, **params)
        variant = rng.choice(HELD_OUT_VARIANTS if split == "test" and i % 2 == 0 else seen)
        voice = f"{rng.choice(ACCENTS)}+{variant}"
        specs.append(_Spec(text, voice, rng.randint(*SPEEDS), rng.randint(*PITCHES)))
    return specs


def _cache_root(cache: str | None) -> Path:
    if cache:
        return Path(cache).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnn" / "speech"


def _check_params(source: str, params: dict) -> dict:
    if source == "digits":
        allowed = {"min_digits", "max_digits"}
        unknown = set(params) - allowed
        if unknown:
            raise ConfigError(
                f"data.params: unknown key(s) {sorted(unknown)} for speech digits; valid: {sorted(allowed)}"
            )
        lo, hi = params.get("min_digits", 3), params.get("max_digits", 7)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ConfigError(f"data.params: need 1 ≤ min_digits ≤ max_digits, got {lo}, {hi}")
    elif params:
        raise ConfigError(f"data.params: speech {source} takes no parameters, got {sorted(params)}")
    return dict(params)


def builtin_dataset(source: str, sizes: Sequence[int], seed: int, params: dict | None = None, cache: str | None = None,
                    sample_rate: int = 16000, log=print) -> dict[str, list[Utterance]]:  # fmt: skip
    """The utterances of each split of the built-in data set ``source``, synthesised into the cache if needed."""
    if source not in DATASETS:
        raise ConfigError(f"data.source must be one of {', '.join(DATASETS)} for speech; got {source!r}")
    sizes = check_sizes(sizes, "data.sizes")
    params = _check_params(source, params or {})
    key = {"source": source, "sizes": list(sizes), "seed": seed, "params": params, "sample_rate": sample_rate,
           "version": VERSION, "accents": ACCENTS, "variants": VARIANTS, "held_out": HELD_OUT_VARIANTS}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = _cache_root(cache) / f"{source}-{digest}"
    if not (folder / "test.tsv").is_file():
        _build(folder, key, log)
    return {split: read_transcripts(folder / f"{split}.tsv") if sizes[i] else [] for i, split in enumerate(SPLIT_NAMES)}


def _build(folder: Path, key: dict, log) -> None:
    """Synthesise every split into a temporary folder beside ``folder`` and rename it into place."""
    import soundfile

    check_espeak()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        specs = {
            split: _draw_split(key["source"], n, key["seed"], split, key["params"])
            for split, n in zip(SPLIT_NAMES, key["sizes"])
        }
        total = sum(len(s) for s in specs.values())
        log(f"data: synthesising {total} utterances with espeak-ng into {folder} (once; then cached)")
        jobs = [(split, i, spec) for split, split_specs in specs.items() for i, spec in enumerate(split_specs)]
        for split in SPLIT_NAMES:
            (tmp / "wav" / split).mkdir(parents=True)

        def make(job) -> None:
            split, i, spec = job
            samples = synthesize(spec.text, spec.voice, spec.speed, spec.pitch, key["sample_rate"])
            soundfile.write(str(tmp / "wav" / split / f"{i:05d}.wav"), samples, key["sample_rate"], subtype="PCM_16")

        with ThreadPoolExecutor(max_workers=2) as pool:  # two espeak-ng processes at a time
            list(pool.map(make, jobs))
        for split, split_specs in specs.items():
            lines = [f"wav/{split}/{i:05d}.wav\t{s.text}\t{s.voice}\n" for i, s in enumerate(split_specs)]
            (tmp / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
        info = {**key, "specs": {split: [asdict(s) for s in v] for split, v in specs.items()}}
        (tmp / "dataset.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same data set first: theirs is identical
            if not (folder / "test.tsv").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------ batches


@dataclass
class SpeechBatch:
    """Padded features and CTC targets.

    features        (B, T, F) float32  log-mel frames, 0 past each length
    lengths         (B,)      int64    real frames per utterance
    targets         (B, U)    int64    character ids (1 …), 0 past each target length
    target_lengths  (B,)      int64
    """

    features: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor


def collate_speech(items: Sequence[tuple[Tensor, list[int]]], generator: torch.Generator | None = None,
                   augment: dict | None = None) -> SpeechBatch:  # fmt: skip
    """``[(features (T_b, F), target ids)]`` → a :class:`SpeechBatch`; with ``generator``, SpecAugment
    (``augment``: freq_masks, freq_width, time_masks, time_width) is applied to each utterance in order."""
    lengths = torch.tensor([f.shape[0] for f, _ in items], dtype=torch.int64)
    target_lengths = torch.tensor([len(t) for _, t in items], dtype=torch.int64)
    B, T, F = len(items), int(lengths.max()), items[0][0].shape[1]
    features = torch.zeros(B, T, F)
    targets = torch.zeros(B, max(1, int(target_lengths.max())), dtype=torch.int64)
    for b, (feats, ids) in enumerate(items):
        if generator is not None:
            feats = spec_augment(feats, generator, **(augment or {}))
        features[b, : feats.shape[0]] = feats
        targets[b, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return SpeechBatch(features, lengths, targets, target_lengths)
