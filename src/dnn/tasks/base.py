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
needs besides the weights), ``prepare_evaluation`` (``dnn eval --data``), what :mod:`dnn.training.memory`
estimates a run's memory from (``data_bytes`` before the data is made, ``batch_plan``: the largest batch), and the
data behind the report's pictures — ``predictions`` (a confusion matrix), ``sample_inputs``,
``accuracy_by_length``, ``figures``. A task offers figures as data (:class:`Figure`); :mod:`dnn.inspect` draws
them. Tasks never import inspect.

A **predictor** is a trained model with what it needs to read raw inputs. Every predictor answers the same two
calls, so the CLI, the server, inspect and export never ask which kind of run they hold:

    rows = predictor.predict(inputs, **options)   # raw inputs (file paths or texts) → one dict per input
    figure = predictor.explain(input, **options)  # the figure data of why it answered so (explains: what, in words)

and declares what it reads (``modality``: image, text, audio, video), what it gives (``outputs``, in words) and
the options ``predict`` takes, as one typed schema (``options``: :class:`dnn.tasks.options.Option`): the CLI's
flags, the server's validation and the web page's controls are made from it. ``check(given)`` validates a
request's options against the schema and the predictor's own rules between options. ``kind`` names the run for
messages and selects the named CLI verbs (``translate``, ``generate``, ``transcribe``, ``caption``):

    kind        class                    modality  explain
    image       ImagePredictor           image     the feature maps of each stage
    classify    TextClassifierPredictor  text      —
    tag         TaggingPredictor         text      —
    translate   Seq2SeqPredictor         text      attention of each output token over the source (with attention)
    generate    TextGenerator            text      —
    transcribe  SpeechPredictor          audio     the spectrogram with each character where it is emitted
    regress     AddingPredictor          text      —
    caption     CaptionPredictor         image     each word's attention over the image
    video       VideoPredictor           video     the frames, with the class the model believes after each
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.rundir import RunDir
from dnn.tasks.options import Option, check_options
from dnn.training.memory import BatchPlan

__all__ = [
    "MODALITIES",
    "PREDICTOR_KINDS",
    "AttentionHeatmap",
    "AttentionOverImage",
    "BatchPlan",
    "ClassPredictions",
    "ErrorsByGroup",
    "Figure",
    "FramesWithBelief",
    "LengthAccuracy",
    "Predictor",
    "SpectrogramAlignment",
    "StageFeatureMaps",
    "Task",
    "check_builtin_source",
    "most_likely_classes",
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


# what a predictor reads → how its inputs are given, in words
MODALITIES = {
    "image": "image files (PNG, JPEG)",
    "text": "texts",
    "audio": "audio files (WAV, FLAC, OGG)",
    "video": "clip files (animated GIF, or .npy frames (T, H, W) in [0, 1])",
}


class Predictor:
    """A trained model ready for raw inputs (see the module docstring). Subclasses set ``kind`` (a key of
    :data:`PREDICTOR_KINDS`), ``modality`` (a key of :data:`MODALITIES`), ``inputs`` and ``outputs`` (in words),
    ``options`` (what :meth:`predict` takes), ``explains`` (what :meth:`explain` draws, in words; empty: nothing),
    implement :meth:`predict` (and :meth:`explain` where ``explains`` says so), and hold the model as
    ``self.model``."""

    kind: ClassVar[str]
    modality: ClassVar[str]
    inputs: ClassVar[str]
    outputs: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    explains: ClassVar[str] = ""
    model: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind not in PREDICTOR_KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {', '.join(PREDICTOR_KINDS)}, got {cls.kind!r}")
        if cls.modality not in MODALITIES:
            raise TypeError(f"{cls.__name__}.modality must be one of {', '.join(MODALITIES)}, got {cls.modality!r}")

    @property
    def what(self) -> str:
        """The run in words, for messages: "a seq2seq run"."""
        return PREDICTOR_KINDS[self.kind]

    def require(self, kind: str, verb: str) -> Predictor:
        """This predictor if it is of ``kind``; else a ConfigError saying what ``verb`` needs."""
        if self.kind != kind:
            raise ConfigError(f"`{verb}` needs {PREDICTOR_KINDS[kind]}; this is {self.what}")
        return self

    def check(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` options (name → value) checked against :attr:`options` and :meth:`check_together`: the keyword
        arguments of :meth:`predict`, defaults filled in; a one-line ConfigError otherwise."""
        options = check_options(self.options, given, self.what)
        self.check_together(options, set(given))
        return options

    def check_together(self, options: dict[str, Any], given: set[str]) -> None:
        """The rules between options (e.g. top-k applies to sampling, not to a beam search); ``given``: the names
        the user set. Raise a one-line ConfigError naming them. Default: none."""

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        """One dict per input (file path or text, by :attr:`modality`), with at least ``"input"``."""
        raise NotImplementedError(f"{type(self).__name__}.predict")

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the run reads them (default: whitespace-separated words); the server's limit."""
        return len(text.split())

    def text(self, row: dict[str, Any]) -> str:
        """One row of :meth:`predict` as a terminal shows it (default: input, label and probability, tab-separated)."""
        return f"{row['input']}\t{row['label']}\t{row['probability']:.3f}"

    def has_attention(self) -> bool:
        """Whether the model attends over its input (``--attention`` prints it, :meth:`attention_lines`)."""
        return False

    def attention_lines(self, row: dict[str, Any]) -> list[str]:
        """Where each output of ``row`` attended, one line each, for a terminal (with :meth:`has_attention`)."""
        return []

    def explain(self, input: str, **options: Any) -> Figure:
        """The figure data of why the model answered ``input`` as it did (see :attr:`explains`)."""
        raise ConfigError(f"{self.what} has no per-input picture to draw (its report shows what it has)")


def most_likely_classes(inputs: Sequence[Any], probs: Tensor, classes: Sequence[str]) -> list[dict[str, Any]]:
    """A classifier's :meth:`Predictor.predict` rows, ``[{"input", "label", "probability"}]``: for each input its
    row of ``probs (B, K)``'s most likely class, named by ``classes``, and that class's probability."""
    out = []
    for item, p in zip(inputs, probs):
        top = int(p.argmax())
        out.append({"input": str(item), "label": classes[top], "probability": float(p[top])})
    return out


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
class AttentionHeatmap(Figure):
    """Each output token's attention weights over the source tokens: ``attention[t][s]`` (rows sum to 1)."""

    source_tokens: list[str] = field(default_factory=list)
    output_tokens: list[str] = field(default_factory=list)
    attention: list[list[float]] = field(default_factory=list)
    heading: str = ""


@dataclass
class StageFeatureMaps(Figure):
    """An image ``(C, H, W)`` in [0, 1] and the output ``(C_k, H_k, W_k)`` of each stage of the CNN, in order."""

    image: Tensor = field(repr=False, default=None)
    maps: dict[str, Any] = field(repr=False, default_factory=dict)
    heading: str = ""


@dataclass
class FramesWithBelief(Figure):
    """A clip's frames ``(T, H, W)`` in [0, 1] and, after each frame t, the class the model believes having seen
    frames 1…t and its probability."""

    frames: Tensor = field(repr=False, default=None)
    labels: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    heading: str = ""


@dataclass
class ErrorsByGroup(Figure):
    """Error rates per group (e.g. CER per voice): ``{group: {"cer": ..., "unseen": 0/1, ...}}``."""

    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    heading: str = ""


def check_builtin_source(source: str | None, names: Sequence[str], task: str = "") -> None:
    """A run's ``data.source``: None (the run reads the user's files) or one of the built-in data sets ``names``;
    else a ConfigError, "data.source must be one of a, b[ for <task>]; got 'x'"."""
    if source is not None and source not in names:
        for_task = f" for {task}" if task else ""
        raise ConfigError(f"data.source must be one of {', '.join(names)}{for_task}; got {source!r}")


# -- the task --------------------------------------------------------------------------------------------------


class Task(abc.ABC):
    """One kind of data → batches, loss, metrics, artefacts and a predictor (see the module docstring).

    ``monitor`` is ``(metric, "max" | "min")``: the validation metric that selects the best weights.
    """

    monitor: tuple[str, str]
    task_names: ClassVar[tuple[str, ...]] = ()  # the data.task values it trains (set by @register_task)

    def __init__(self, cfg: Any):
        self.cfg = cfg

    builtin_data: ClassVar[dict[str, str]] = {}  # data.task → the data dnn makes for it, in words (dnn list)

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

    def data_bytes(self) -> int:
        """About how many bytes :meth:`prepare` will hold in memory at its peak, from the config alone (before the
        data is generated or read); 0 where it is unknown or small. Built-in data grows with ``data.sizes``."""
        return 0

    def batch_plan(self) -> BatchPlan | None:
        """The largest training batch (after :meth:`prepare`), for the memory estimate; None: not described (the
        estimate then counts no activations)."""
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
