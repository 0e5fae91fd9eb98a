"""The contract of a task and of its predictor: what run, train, inspect, serve and the CLI may ask of them.

A **task** turns one kind of data into batches, a loss, metrics and the files prediction needs::

    task = make_task(cfg)                      # dnn.tasks.registry: data.task → the registered class
    task.prepare(log)                          # read / generate the data, build vocabularies, split
    options = task.model_options()             # what the data decides of the model (num_classes, vocab_size)
    for batch in task.train_batches(epoch): loss, n = task.step(model, batch, context)
    task.evaluate(model, "valid")              # {"accuracy": ..., "loss": ...}; task.monitor names the one to select by
    task.save_artifacts(run_dir)               # task.json (+ vocabularies, classes, normalisation)
    predictor = type(task).load_predictor(run_dir, model)

Optional hooks have defaults that do nothing, so a caller never needs to ask whether a task has them:
``callbacks`` (e.g. truncated BPTT), ``checkpoint_context`` / ``restore_context`` (what an exact mid-epoch resume
needs besides the weights), ``prepare_evaluation`` (``dnn eval --data``), and the data behind the report's
pictures — ``predictions`` (a confusion matrix), ``sample_inputs``, ``accuracy_by_length``, ``figures``. A task
offers figures as data (:class:`Figure`); :mod:`dnn.inspect` draws them. Tasks never import inspect.

A **predictor** is a trained model with what it needs to read raw inputs. Its ``kind`` says what it does, so that
the CLI, the server and inspect ask instead of guessing:

    image       ImagePredictor           predict_files(paths), predict_tensor(images)   classes, image_size, channels
    classify    TextClassifierPredictor  predict_texts(texts), predict_proba(texts)     labels
    tag         TaggingPredictor         predict_texts(texts), tag(sentences)
    translate   Seq2SeqPredictor         translate(texts, beam_size, ...)
    generate    TextGenerator            generate(prompt, length, ...)
    transcribe  SpeechPredictor          transcribe(paths, beam_size), align(features)
    regress     AddingPredictor          predict_tensor(x)
    caption     CaptionPredictor         caption(paths_or_images, beam_size)               words + attention per word
    video       VideoPredictor           predict_tensor(clips), predict_files(paths)       classes, frames, frame_size
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.rundir import RunDir

__all__ = [
    "PREDICTOR_KINDS",
    "AttentionOverImage",
    "ClassPredictions",
    "ErrorsByGroup",
    "Figure",
    "LengthAccuracy",
    "Predictor",
    "SpectrogramAlignment",
    "Task",
]

Log = Callable[[str], None]

# kind → what `dnn` verb or page uses it, in words (for messages)
PREDICTOR_KINDS = {
    "image": "an image classification run",
    "classify": "a text classification run",
    "tag": "a tagging run",
    "translate": "a seq2seq run",
    "generate": "a language model run",
    "transcribe": "a speech run",
    "regress": "a regression run",
    "caption": "an image captioning run",
    "video": "a video classification run",
}


class Predictor:
    """A trained model ready for raw inputs. Subclasses set ``kind`` (a key of :data:`PREDICTOR_KINDS`),
    ``inputs`` and ``outputs`` (what they read and give, in words) and hold the model as ``self.model``."""

    kind: ClassVar[str]
    inputs: ClassVar[str]
    outputs: ClassVar[str]
    model: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind not in PREDICTOR_KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {', '.join(PREDICTOR_KINDS)}, got {cls.kind!r}")

    def require(self, kind: str, verb: str) -> Predictor:
        """This predictor if it is of ``kind``; else a ConfigError saying what ``verb`` needs."""
        if self.kind != kind:
            raise ConfigError(f"`{verb}` needs {PREDICTOR_KINDS[kind]}; this is {PREDICTOR_KINDS[self.kind]}")
        return self


# -- the data behind the report's pictures ----------------------------------------------------------------------


@dataclass
class ClassPredictions:
    """Predicted and true class ids ``(N,)`` of (at most a limited number of) a split's examples or tokens."""

    classes: list[str]
    predicted: Tensor
    truth: Tensor


@dataclass
class LengthAccuracy:
    """Exact match per source length, and how many examples have each length."""

    accuracy: dict[int, float]
    counts: dict[int, int]


@dataclass
class Figure:
    """A picture a task offers as data; :mod:`dnn.inspect` draws it into ``figures/<stem>.png``."""

    stem: str
    title: str


@dataclass
class SpectrogramAlignment(Figure):
    """A log-mel spectrogram ``(T, F)`` with each recognised character at the frame where it is emitted."""

    features: Tensor = field(repr=False, default=None)
    chars: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    hop_ms: float = 10.0
    heading: str = ""


@dataclass
class AttentionOverImage(Figure):
    """An image ``(H_img, W_img)`` and, for each word of its caption, the attention ``(h, w)`` over the feature-map
    positions, to be drawn over the image (one panel per word)."""

    image: Tensor = field(repr=False, default=None)
    words: list[str] = field(default_factory=list)
    attention: Tensor = field(repr=False, default=None)  # (n_words, h, w), each word's weights summing to 1
    heading: str = ""


@dataclass
class ErrorsByGroup(Figure):
    """Error rates per group (e.g. CER per voice): ``{group: {"cer": ..., "unseen": 0/1, ...}}``."""

    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    heading: str = ""


# -- the task --------------------------------------------------------------------------------------------------


class Task(abc.ABC):
    """One kind of data → batches, loss, metrics, artefacts and a predictor (see the module docstring).

    ``monitor`` is ``(metric, "max" | "min")``: the validation metric that selects the best weights.
    """

    monitor: tuple[str, str]
    task_names: ClassVar[tuple[str, ...]] = ()  # the data.task values it trains (set by @register_task)

    def __init__(self, cfg: Any):
        self.cfg = cfg

    # -- required --------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def prepare(self, log: Log) -> None:
        """Read or generate the data, build what the model needs (vocabularies, classes), split it."""

    @abc.abstractmethod
    def model_options(self) -> dict[str, Any]:
        """The model config's values that the data decides (``num_classes``, ``vocab_size``, ...)."""

    @abc.abstractmethod
    def train_batches(self, epoch: int) -> Iterator[Any]:
        """The batches of one epoch: a function of (seed, epoch) only, so a resumed run sees the same."""

    @abc.abstractmethod
    def batches_per_epoch(self) -> int: ...

    @abc.abstractmethod
    def step(self, model: nn.Module, batch: Any, context: dict[str, Any]) -> tuple[Tensor, int]:
        """The loss of one batch and the number of examples (or tokens) it averages over."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        """The metrics of ``model`` on ``split``; ``{}`` when the split is empty."""

    @abc.abstractmethod
    def save_artifacts(self, run_dir: RunDir) -> None:
        """``task.json`` (naming the class in ``"task"``) and whatever prediction needs besides the weights, written
        through the run's folder: ``run_dir.write_json(TASK, info)``, ``vocab.save(run_dir.output(VOCAB))``."""

    @classmethod
    @abc.abstractmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> Predictor:
        """The predictor of a trained run, from its artefacts and its model (best weights, eval mode)."""

    # -- optional hooks, with defaults that do nothing ------------------------------------------------------

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The validation run during training, which selects the best weights: by default :meth:`evaluate` on the
        whole validation split (a task may use a cheaper subset; the final figures always use the whole split)."""
        return self.evaluate(model, "valid")

    def callbacks(self) -> list[Any]:
        """Training callbacks of this task (e.g. truncated BPTT's carried state)."""
        return []

    def checkpoint_context(self, context: dict[str, Any]) -> dict[str, Any] | None:
        """What of ``trainer.context`` an exact mid-epoch resume needs, as plain tensors (None: nothing)."""
        return None

    def restore_context(self, context: dict[str, Any], saved: dict[str, Any] | None) -> None:
        """Put a :meth:`checkpoint_context` back into ``trainer.context`` (by default there is nothing to restore)."""
        return None

    def prepare_evaluation(self, run_dir: RunDir, path: str, log: Log) -> None:
        """``dnn eval RUN --data PATH``: the run's own vocabularies / classes, and ``path`` as the test split."""
        raise ConfigError(
            f"{run_dir.path} is a {self.cfg.data.task} run on built-in data; --data applies to runs that read files"
        )

    def predictions(self, model: nn.Module, split: str = "test", limit: int = 2000) -> ClassPredictions | None:
        """Classifiers: predicted and true classes of the first ``limit`` examples of ``split`` (a confusion
        matrix); None for tasks that do not classify."""
        return None

    def sample_inputs(self, split: str = "test", n: int = 3) -> list[Any]:
        """A few inputs of ``split`` a report shows, in the predictor's terms: source sentences (seq2seq) or
        ``(image (C, H, W) in [0, 1], true class)`` pairs (images); [] where nothing applies."""
        return []

    def accuracy_by_length(self, model: nn.Module, split: str = "test", limit: int = 2000) -> LengthAccuracy | None:
        """Sequence tasks with one right answer: exact match per source length; None where it does not apply."""
        return None

    def figures(self, model: nn.Module, predictor: Predictor) -> list[Figure]:
        """Pictures of this task's own, as data (see :class:`Figure`); needs :meth:`prepare` first."""
        return []
