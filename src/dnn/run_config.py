"""The configuration of one run: data, model, training — validated once, saved resolved in the run directory.

Keys every recipe has, so that any recipe can be shrunk from the command line: ``seed``, ``train.epochs``,
``train.max_steps`` (0 = no limit), ``train.batch_size``, ``train.lr``, ``train.clip_norm``. A user's files are given
the same way everywhere: ``data.train=PATH`` and optionally ``data.valid=PATH`` / ``data.test=PATH`` (split off
the training data, reproducibly by seed, when absent).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dnn.checks import int_in, is_number, number_in, positive_int
from dnn.config import from_dict, to_dict
from dnn.device import Precision
from dnn.errors import ConfigError

__all__ = [
    "DATA_CONFIGS",
    "TASKS",
    "AddingData",
    "CaptioningData",
    "DataConfig",
    "ImageData",
    "LanguageModelData",
    "ModelSection",
    "RunConfig",
    "Seq2SeqData",
    "SpeechData",
    "TaggingData",
    "TextClassificationData",
    "TrainConfig",
    "VideoData",
    "data_config",
    "duration_seconds",
]


@dataclass
class DataConfig:
    """What every task reads: ``task`` (a key of :data:`DATA_CONFIGS`), a user's files, and the fractions carved
    out of the training data for the splits not given. Each task has its own subclass with the keys it uses, so
    a key that does not apply to the task is an error naming the task."""

    task: str = "digits"
    train: str | None = None  # a user's file or folder
    valid: str | None = None
    test: str | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self):
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1), got {value}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.valid_fraction + data.test_fraction must leave some training data")
        for name in ("train", "valid", "test"):  # dataset:mnist/train → where `dnn data get mnist` put it
            if str(getattr(self, name)).startswith("dataset:"):
                from dnn.data.download import resolve_data_path

                setattr(self, name, resolve_data_path(getattr(self, name), f"data.{name}"))


@dataclass
class _BuiltinData:
    """Built-in data: which generator or corpus, and how much of it."""

    source: str | None = None  # a text task (dates, addition, reverse, sort), "pydoc", or spoken digits / phrases
    sizes: tuple[int, int, int] = (5000, 500, 500)  # train / valid / test examples
    params: dict[str, Any] = field(default_factory=dict)  # the generator's parameters (e.g. min_len, year_min)


@dataclass
class _TokenData:
    tokenizer: Literal["char", "word", "bpe"] = "char"
    lowercase: bool = False
    vocab_size: int = 8000  # BPE: merges; word: the vocabulary's maximum size
    min_freq: int = 1

    def _check_tokens(self) -> None:
        positive_int("data.vocab_size", self.vocab_size)
        int_in("data.min_freq", self.min_freq, 1, expected="at least 1")


@dataclass
class _LengthData:
    max_length: int | None = None  # tokens; longer examples are dropped in training, an error at evaluation
    truncate: bool = False  # cut over-long examples instead

    def _check_length(self) -> None:
        if self.max_length is not None:
            positive_int("data.max_length", self.max_length, expected="a positive integer or null")


@dataclass
class ImageData(DataConfig):
    """digits (scikit-learn's 8×8 digits) and image_folder (a user's folder, one sub-folder per class)."""

    image_size: int | None = None  # the side the images are resized to (digits: 8)
    grayscale: bool | None = None  # None decides from the data
    augment: bool = False  # random crop with padding and a small affine in training
    horizontal_flip: bool = False  # only where it makes sense (not digits, not text)
    classes: list[int | str] | None = None  # keep only these classes, labelled 0… in this order ([5, 6])
    per_class: int | None = None  # keep this many training images per class (few labels), chosen by seed
    canvas_size: int | None = None  # paste each image onto a blank canvas of this side (digits 8 → 16)
    canvas_train: Literal["center", "random"] = "center"  # where on the canvas, training and validation images
    canvas_test: Literal["center", "random"] = "center"  # where on the canvas, test images (random: one per image)

    def __post_init__(self):
        super().__post_init__()
        for name in ("image_size", "per_class", "canvas_size"):
            if getattr(self, name) is not None:
                positive_int(f"data.{name}", getattr(self, name), expected="a positive integer or null")
        if self.classes is not None and (not self.classes or len({str(c) for c in self.classes}) < len(self.classes)):
            raise ConfigError(f"data.classes must list distinct class names, got {self.classes}")


@dataclass
class TextClassificationData(_LengthData, _TokenData, DataConfig):
    """A user's CSV/TSV (text and label columns) or an aclImdb/ folder."""

    tokenizer: Literal["char", "word", "bpe"] = "word"  # the lecture's Embedding → LSTM → Dense reads words
    text_column: str = "text"
    label_column: str = "label"

    def __post_init__(self):
        super().__post_init__()
        self._check_tokens()
        self._check_length()


@dataclass
class TaggingData(_LengthData, DataConfig):
    """A user's CoNLL-style file: one token and its tag per line, blank lines between sentences (the file's own
    tokens: no tokenizer)."""

    lowercase: bool = False
    vocab_size: int = 8000  # the vocabulary's maximum size
    min_freq: int = 1

    def __post_init__(self):
        super().__post_init__()
        _TokenData._check_tokens(self)
        self._check_length()


@dataclass
class Seq2SeqData(_LengthData, _TokenData, _BuiltinData, DataConfig):
    """A built-in text task (``source``: dates, addition, reverse, sort) or a user's parallel corpus."""

    target: str | None = None  # two line-aligned files: data.train is the source side, this the target
    valid_subset: int = 0  # validation during training on this many pairs (0: all); the final figures use all

    def __post_init__(self):
        super().__post_init__()
        self._check_tokens()
        self._check_length()
        int_in("data.valid_subset", self.valid_subset, 0,
               expected="0 (the whole validation split) or a positive number of pairs")  # fmt: skip


@dataclass
class LanguageModelData(_TokenData, _BuiltinData, DataConfig):
    """The pydoc corpus (``source: pydoc``) or a user's plain text file."""

    length: int = 50  # the BPTT length k: tokens per chunk

    def __post_init__(self):
        super().__post_init__()
        self._check_tokens()


@dataclass
class AddingData(DataConfig):
    """The adding problem (regression over a long sequence)."""

    length: int = 50  # the sequence length T
    sizes: tuple[int, int, int] = (5000, 500, 500)  # train / valid / test sequences


@dataclass
class SpeechData(_BuiltinData, DataConfig):
    """Built-in espeak-ng speech (``source``: digits, phrases) or a user's TSV of WAVs."""

    lowercase: bool = False
    n_mels: int = 80  # log-mel bands
    sample_rate: int = 16000  # Hz; features are computed at this rate
    resample: bool = False  # convert a user's audio at another rate (otherwise an error naming the file)
    freq_masks: int = 0  # SpecAugment frequency masks per training utterance
    freq_mask_width: int = 15  # at most this many mel bands each
    time_masks: int = 0  # SpecAugment time masks per training utterance
    time_mask_width: int = 25  # at most this many frames each (and at most a fifth of the utterance)
    cache: str | None = None  # where built-in data is synthesised (default ~/.cache/dnn/speech)

    def __post_init__(self):
        super().__post_init__()
        if self.train and self.source is not None:  # a user's recordings win over the recipe's built-in speech
            self.source = None
        for name in ("n_mels", "freq_mask_width", "time_mask_width"):
            positive_int(f"data.{name}", getattr(self, name))
        if self.sample_rate < 1000:
            raise ConfigError(f"data.sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        for name in ("freq_masks", "time_masks"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be 0 (off) or more, got {getattr(self, name)}")


@dataclass
class CaptioningData(DataConfig):
    """Built-in captioning: 1–4 scikit-learn digits left to right on a canvas, captioned with their words.
    ``valid_fraction`` / ``test_fraction`` split the digit images, so held-out scenes show unseen handwriting."""

    sizes: tuple[int, int, int] = (6000, 500, 1000)  # train / valid / test images
    height: int = 16  # H_img of the canvas
    width: int = 48  # W_img of the canvas
    min_digits: int = 1
    max_digits: int = 4
    redraw: bool = True  # new training images every epoch (a function of seed and epoch)

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.min_digits <= self.max_digits:
            raise ConfigError(f"data.min_digits and data.max_digits need 1 ≤ min ≤ max, got {self.min_digits} "
                              f"and {self.max_digits}")  # fmt: skip
        if self.height < 8 or self.width < 8 * self.max_digits:
            raise ConfigError(
                f"data.height={self.height} × data.width={self.width} cannot hold {self.max_digits} 8×8 digits "
                f"side by side (needs height ≥ 8, width ≥ {8 * self.max_digits})"
            )
        if self.sizes[0] < 1 or min(self.sizes) < 0:
            raise ConfigError(f"data.sizes must be [train ≥ 1, valid ≥ 0, test ≥ 0], got {list(self.sizes)}")


@dataclass
class VideoData(DataConfig):
    """Built-in video: clips of T frames with one digit moving left, right, up or down; the label is the direction.
    ``valid_fraction`` / ``test_fraction`` split the digit images, as for captioning."""

    sizes: tuple[int, int, int] = (4000, 500, 1000)  # train / valid / test clips
    frames: int = 8  # T
    frame_size: int = 20  # the side of a frame
    speed: int = 1  # pixels per frame
    distractors: int = 0  # digits that stand still in every frame

    def __post_init__(self):
        super().__post_init__()
        if self.distractors < 0:
            raise ConfigError(f"data.distractors must be 0 or more, got {self.distractors}")
        if self.frames < 2 or self.speed < 1:
            raise ConfigError(f"data.frames must be ≥ 2 and data.speed ≥ 1, got {self.frames} and {self.speed}")
        travel = self.speed * (self.frames - 1)
        if self.frame_size < 8 + travel:
            raise ConfigError(
                f"data.frame_size={self.frame_size} is too small for an 8×8 digit moving {travel} px; "
                f"use ≥ {8 + travel}"
            )
        if self.sizes[0] < 1 or min(self.sizes) < 0:
            raise ConfigError(f"data.sizes must be [train ≥ 1, valid ≥ 0, test ≥ 0], got {list(self.sizes)}")


# data.task → the data config it reads (one source of truth for the task names: dnn.tasks.registry checks it)
DATA_CONFIGS: dict[str, type[DataConfig]] = {
    "digits": ImageData,
    "image_folder": ImageData,
    "text_classification": TextClassificationData,
    "tagging": TaggingData,
    "seq2seq": Seq2SeqData,
    "language_model": LanguageModelData,
    "adding": AddingData,
    "speech": SpeechData,
    "captioning": CaptioningData,
    "video": VideoData,
}
TASKS = tuple(DATA_CONFIGS)


def data_config(values: dict[str, Any]) -> DataConfig:
    """The ``data`` section → the data config of its ``task``; a key of another task's is an error naming both."""
    if not isinstance(values, dict):
        raise ConfigError(f"data must be a mapping of keys to values, got {values!r}")
    task = values.get("task", "digits")
    if task not in DATA_CONFIGS:
        close = difflib.get_close_matches(str(task), TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"data.task must be one of {', '.join(TASKS)}; got {task!r}{hint}")
    cls = DATA_CONFIGS[task]
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            owners = sorted(t for t, c in DATA_CONFIGS.items() if key in {f.name for f in dataclasses.fields(c)})
            if owners:
                raise ConfigError(f"data.{key} does not apply to data.task {task!r} (it is a key of "
                                  f"{', '.join(owners)}); remove it")  # fmt: skip
    return from_dict(cls, values, "data")


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int = 0  # stop after this many optimiser steps; 0 = no limit
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["constant", "step", "cosine", "plateau"] = "constant"
    warmup_steps: int = 0
    step_size: int = 1000
    gamma: float = 0.1
    clip_norm: float | None = None  # recurrent recipes set 1.0
    clip_value: float | None = None
    eval_every: int = 0  # evaluate every N steps; 0 = at the end of every epoch
    patience: int = 0  # early stopping after N evaluations without improvement; 0 = off
    on_nonfinite: Literal["stop", "skip"] = "stop"
    flush_denormal: bool = True  # worth several times the speed of recurrent training on CPU
    keep_memory: bool = True  # reuse freed CPU memory (glibc) instead of mapping and zeroing big buffers every step:
    # 1.28× faster seq2seq steps on the translate-tsv model; resident memory stays at its peak (dnn.device)
    log_every: int = 10
    report: bool = True  # draw report.html and figures/ at the end (dnn.inspect)
    tensorboard: bool = True  # also write TensorBoard event files (tensorboard/) when the package is installed
    checkpoint_every: int = 0  # save the training state every N steps (and at every epoch end); 0 = epoch ends only
    checkpoint_interval: str | float = "10m"  # and every this much training time ("30s", "10m", "1h"; 0 = off), so a
    # long first epoch is never lost; a state is also saved before the first step
    max_time: str | float | None = None  # stop at the first step past this much training time ("90s", "10m", "1h30m",
    # or seconds), validation included; a resumed run continues its budget
    threads: int = 0  # torch intra-op threads; 0 = all cores (torch's choice): measured 1.4–1.8× one thread on a quiet
    # 2-core machine for recurrent and CNN batches alike (benchmarks/RESULTS.md); set 1 when another process keeps
    # a core busy
    device: str = "auto"  # auto (CUDA when there is one, else MPS, else CPU) | cpu | cuda | cuda:N | mps
    precision: Precision = "fp32"  # bf16/fp16: autocast; fp16 with a gradient scaler
    compile: bool = False  # torch.compile the model (its cold start is reported once, not hidden in steps/s)
    channels_last: bool | None = None  # CNNs: NHWC memory layout; None = on CUDA, and on the CPU in bf16/fp16
    init_from: str | None = None  # transfer: a CNN run or weights file; for a sequence_classifier a language model run
    freeze_up_to: str | None = None  # CNNs: freeze the body up to this stage ("body" = all of it)
    unfreeze_after: int = 0  # CNNs: make the frozen body trainable again after this many epochs; 0 = never
    body_lr: float | None = None  # CNNs: the body's learning rate (train.lr is the head's); None = train.lr
    gradual_unfreeze: bool = False  # text from a language model (ULMFiT): epoch 1 the head, then one group more
    layer_lr_factor: float = 2.6  # text from a language model: each lower layer group learns at lr / this factor

    def __post_init__(self):
        for name in ("epochs", "batch_size", "log_every"):
            int_in(f"train.{name}", getattr(self, name), 1, expected="at least 1")
        for name in ("max_steps", "warmup_steps", "eval_every", "patience", "checkpoint_every", "threads"):
            int_in(f"train.{name}", getattr(self, name), 0, expected="0 or more")
        number_in("train.layer_lr_factor", self.layer_lr_factor, 1)
        number_in("train.lr", self.lr, 0, low_open=True, expected="a positive, finite number")
        for name in ("clip_norm", "clip_value"):
            if getattr(self, name) is not None:
                number_in(f"train.{name}", getattr(self, name), 0, low_open=True,
                          expected="a positive, finite number or null")  # fmt: skip
        for name in ("weight_decay", "momentum"):
            number_in(f"train.{name}", getattr(self, name), 0)
        if self.momentum >= 1:
            raise ConfigError(f"train.momentum must be below 1 (a momentum of 1 never forgets), got {self.momentum}")
        number_in("train.gamma (the learning rate's decay factor)", self.gamma, 0, low_open=True, expected="positive")
        duration_seconds(self.checkpoint_interval, "train.checkpoint_interval")
        if duration_seconds(self.max_time, "train.max_time") == 0:
            raise ConfigError("train.max_time must be a positive duration such as 90s, 10m or 1h30m (null: no limit)")

    @property
    def max_seconds(self) -> float:
        """``max_time`` in seconds; 0 = no limit."""
        return duration_seconds(self.max_time, "train.max_time") or 0.0

    @property
    def checkpoint_seconds(self) -> float:
        """``checkpoint_interval`` in seconds; 0 = off."""
        return duration_seconds(self.checkpoint_interval, "train.checkpoint_interval") or 0.0


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def duration_seconds(value: str | float | None, key: str) -> float | None:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"1h30m"`` or a number of seconds → seconds (None stays None); anything
    else is a one-line ConfigError naming ``key``."""
    if value is None:
        return None
    if is_number(value):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        match = _DURATION.fullmatch(text)
        try:
            seconds = float(text)
        except ValueError:
            if not text or match is None or not any(match.groups()):
                raise ConfigError(f"{key} must be a duration such as 90s, 10m, 1h or 1h30m (or seconds), got "
                                  f"{value!r}") from None  # fmt: skip
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = 3600 * h + 60 * m + s
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"{key} must be a duration of 0 or more seconds, got {value!r}")
    return seconds


@dataclass
class ModelSection:
    """The ``model`` section: the registered model's ``name`` and the keys the recipe and the command line gave.
    The key names are checked when the section is read, so that a misspelt key stops a run before its data is
    made; the values when :meth:`resolve` builds the model's typed config, once per run, after the data has
    filled the keys it decides (``num_classes``, ``vocab_size``, ...). Everything after that receives ``config``."""

    name: str
    given: dict[str, Any]
    config: Any = None  # the model's typed config (its registered dataclass), set once by resolve()

    @classmethod
    def read(cls, values: Any) -> ModelSection:
        """The ``model`` mapping of a recipe or a saved ``config.yaml``; its name and key names checked."""
        from dnn.models.registry import get_model_spec

        if not isinstance(values, dict):
            raise ConfigError(f"model must be a mapping of keys to values, got {values!r}")
        if "name" not in values:
            raise ConfigError("missing required key model.name (see `dnn list`)")
        name = values["name"]
        if not isinstance(name, str):
            raise ConfigError(f"model.name must be a string, got {name!r}")
        try:
            fields = list(get_model_spec(name).config_cls.__dataclass_fields__)
        except ConfigError as err:
            raise ConfigError(f"model.name: {err}") from None
        given = {k: v for k, v in values.items() if k != "name"}
        for key in given:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                hint = f"; did you mean model.{close[0]}?" if close else f"; valid keys: {', '.join(fields)}"
                raise ConfigError(f"unknown key model.{str(key)[:80]} for model {name!r}{hint}")
        return cls(name, given)

    def resolve(self, derived: dict[str, Any] | None = None) -> Any:
        """Build the typed config from ``derived`` (what the data decides) and the given keys, which win where both
        give a value: once; a second call is a programming error."""
        from dnn.models.registry import get_model_spec

        if self.config is not None:
            raise RuntimeError(f"model {self.name!r}: its config is built once per run, and it was already")
        try:
            self.config = from_dict(get_model_spec(self.name).config_cls, {**(derived or {}), **self.given}, "model")
        except ConfigError as err:  # a __post_init__ check: "model: hidden_size must be ..." → "model.hidden_size ..."
            raise ConfigError(str(err).replace("model: ", "model.", 1)) from None
        return self.config

    def as_dict(self) -> dict[str, Any]:
        """What ``config.yaml`` holds: the name and every key of the built config (before it is built, the given)."""
        return {"name": self.name, **(to_dict(self.config) if self.config is not None else self.given)}


@dataclass
class RunConfig:
    seed: int = 0
    deterministic: bool = False
    data: DataConfig = field(default_factory=ImageData)
    model: ModelSection = field(default_factory=lambda: ModelSection("lenet5", {}))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        int_in("seed", self.seed, 0, 2**32 - 1, expected="an integer in [0, 2**32)")
        if type(self.data) is not DATA_CONFIGS.get(self.data.task):  # a bare DataConfig: the task's own, filled
            self.data = data_config(to_dict(self.data))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """A recipe with its overrides applied, or a saved ``config.yaml``, checked: each section built once."""
        if not isinstance(data, dict):
            raise ConfigError(f"the config must be a mapping of keys to values, got {data!r}")
        values = dict(data)
        if "data" in values:
            values["data"] = data_config(values["data"])
        if "model" in values:
            values["model"] = ModelSection.read(values["model"])
        return from_dict(cls, values)

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars, ready for YAML or JSON; the model section as :meth:`ModelSection.as_dict`."""
        return {**to_dict(self), "model": self.model.as_dict()}
