"""Image captioning (one-to-many): canvases of 1–4 handwritten digits → their words, left to right.

Data, decided once in :meth:`CaptioningTask.prepare` (``data.task: captioning``, :class:`~dnn.run_config.
CaptioningData`): scikit-learn's digit images are split by seed into train / valid / test images
(``data.valid_fraction``, ``data.test_fraction``, stratified), and each split's scenes are drawn from its own digits
only (:func:`dnn.data.digit_scenes.caption_scenes`, a generator seeded by (seed, split)); so test captions are of
handwriting training never saw. With ``data.redraw`` (the default) every epoch after the first trains on new
scenes of the training digits, drawn from (seed, epoch): new layouts and combinations, never a test digit. The
words are the 10 digit names; images are normalised with the first training scenes' mean and standard deviation.

Training is teacher-forced (``tgt_in = <sos> y_1 … y_n``, ``tgt_out = y_1 … y_n <eos>``); the loss is the model's
(cross-entropy of the real words, plus its attention penalty if any). Evaluation decodes greedily and compares the
captions: ``exact_match``, ``token_accuracy``, sacrebleu's ``bleu`` over words, and the teacher-forced ``loss``
(cross-entropy only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from dnn.checks import positive_int
from dnn.data.batching import IGNORE_INDEX, pad_batch, shuffled_batches
from dnn.data.digit_scenes import DIGIT_WORDS, caption_scenes, digits_by_split
from dnn.data.images import Normalize, channel_stats, load_image
from dnn.data.splits import derive_seed
from dnn.data.vocab import Vocab
from dnn.decoding import beam_search, greedy
from dnn.errors import CheckpointError, ConfigError, DataError
from dnn.io import EOS_ID, SOS_ID
from dnn.rundir import TASK, VOCAB, RunDir
from dnn.tasks.base import AttentionOverImage, Figure, LengthAccuracy, Predictor, Task
from dnn.tasks.options import MAX_BEAM_SIZE, Option
from dnn.tasks.registry import register_task
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["CaptionBatch", "CaptionPredictor", "CaptionSplit", "CaptioningTask", "collate_captions"]

SPLITS = ("train", "valid", "test")
EVAL_BATCH = 256
MARGIN = 2  # decoding may run this many words past the longest caption before it is cut
VOCAB_FILE = VOCAB


@dataclass
class CaptionSplit:
    """One split: ``images (N, 1, H_img, W_img)`` in [0, 1], word ids and the words of each caption."""

    images: Tensor
    ids: list[list[int]]
    words: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)


class CaptionBatch(NamedTuple):
    images: Tensor  # (B, C, H_img, W_img), normalised
    tgt_in: Tensor  # (B, T): <sos> y_1 … y_n, then <pad>
    tgt_out: Tensor  # (B, T): y_1 … y_n <eos>, then −100


def collate_captions(images: Tensor, captions: Sequence[Sequence[int]]) -> CaptionBatch:
    """Images and their word ids (no specials) → a :class:`CaptionBatch` for teacher forcing."""
    tgt_in, _, _ = pad_batch([[SOS_ID, *ids] for ids in captions])  # (B, T)
    tgt_out, _, _ = pad_batch([[*ids, EOS_ID] for ids in captions], IGNORE_INDEX)  # (B, T)
    return CaptionBatch(images, tgt_in, tgt_out)


@register_task("captioning")
class CaptioningTask(Task):
    """Digit canvases and their captions → teacher-forced batches, greedy-decoded metrics, a captioner."""

    monitor = ("exact_match", "max")

    builtin_data: ClassVar[dict[str, str]] = {
        "captioning": "1–4 scikit-learn digits on a canvas, captioned with their words"
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        self.vocab = Vocab(DIGIT_WORDS)
        self.splits: dict[str, CaptionSplit] = {}
        self.digits: dict[str, tuple[Tensor, Tensor]] = {}  # the digit images (M, 1, 8, 8) and labels of each split
        self.normalize: Normalize | None = None

    # -- data --------------------------------------------------------------------------------------------------

    def prepare(self, log) -> None:
        data = self.cfg.data
        self.digits = digits_by_split(self.cfg.seed, data.valid_fraction, data.test_fraction, data.sizes, "images")
        for split, n in zip(SPLITS, data.sizes):
            self.splits[split] = self._draw(split, n, split)
        mean, std = channel_stats(self.splits["train"].images)
        self.normalize = Normalize(mean, std.clamp_min(1e-6))
        sizes = ", ".join(f"{s} {len(self.splits[s])}" for s in SPLITS)
        fresh = ", new training images every epoch" if data.redraw else ""
        log(f"data: captioning, {data.min_digits}–{data.max_digits} digits on {data.height}×{data.width} canvases; "
            f"{sizes} images{fresh}; {len(self.vocab) - 4} words")  # fmt: skip

    def _draw(self, split: str, n: int, *keys: str) -> CaptionSplit:
        """``n`` scenes of the digits of ``split``, from a generator seeded by (seed, "captioning", keys)."""
        data = self.cfg.data
        if n == 0:
            return CaptionSplit(torch.zeros(0, 1, data.height, data.width), [], [])
        generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "captioning", *keys))
        scenes = caption_scenes(*self.digits[split], n, data.height, data.width, data.min_digits, data.max_digits,
                                generator)  # fmt: skip
        return CaptionSplit(scenes.images, [self.vocab.encode(words) for words in scenes.captions], scenes.captions)

    def model_options(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab), "in_channels": 1}

    def train_batches(self, epoch: int) -> Iterator[CaptionBatch]:
        """The training images (``data.redraw``: drawn anew for every epoch after the first), shuffled; both a
        function of (seed, epoch), so a resumed run sees the same batches."""
        train = self.splits["train"]
        if self.cfg.data.redraw and epoch > 0:
            train = self._draw("train", len(train), "train", "epoch", str(epoch))
        bs = self.cfg.train.batch_size
        generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "captioning", "epoch", str(epoch)))
        for batch in shuffled_batches(len(train), bs, generator):
            idx = batch.tolist()
            yield collate_captions(self.normalize(train.images[idx]), [train.ids[i] for i in idx])

    def batches_per_epoch(self) -> int:
        return -(-len(self.splits["train"]) // self.cfg.train.batch_size)

    def data_bytes(self) -> int:
        """fp32 canvases ``(1, H_img, W_img)`` with their captions: about 3 floats per pixel (measured: 2.85)."""
        data = self.cfg.data
        return 3 * sum(data.sizes) * data.height * data.width * 4

    def batch_plan(self) -> BatchPlan:
        """The longest training caption (+ <sos>) under ``batch_size`` canvases."""
        train = self.splits["train"]
        words = max(train.ids, key=len)

        def make(size: int, length: int) -> CaptionBatch:
            caption = (list(words) * length)[: max(1, length - 1)]
            return collate_captions(torch.empty(size, *train.images.shape[1:]), [caption] * size)

        size = min(self.cfg.train.batch_size, len(train))
        return BatchPlan(size, len(words) + 1, make, ("train.batch_size", "data.height", "data.width"))

    # -- training and evaluation -------------------------------------------------------------------------------

    @staticmethod
    def step(model: nn.Module, batch: CaptionBatch, context) -> tuple[Tensor, int]:
        logits, attention = model(batch.images, batch.tgt_in)  # (B, T, V), (B, T, S)
        return model.loss(logits, batch.tgt_out, attention), batch.images.shape[0]

    def _greedy_words(self, model: nn.Module, data: CaptionSplit) -> list[list[str]]:
        max_len = max(len(w) for w in data.words) + 1 + MARGIN
        out: list[list[str]] = []
        for start in range(0, len(data), EVAL_BATCH):
            result = greedy(model, self.normalize(data.images[start : start + EVAL_BATCH]), None, max_len)
            out += [self.vocab.decode(row, stop_at_eos=True) for row in result.tokens.tolist()]
        return out

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        data = self.splits.get(split)
        if data is None or len(data) == 0:
            return {}
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        try:
            with torch.no_grad():
                outputs = self._greedy_words(model, data)
                for start in range(0, len(data), EVAL_BATCH):
                    batch = collate_captions(self.normalize(data.images[start : start + EVAL_BATCH]),
                                             data.ids[start : start + EVAL_BATCH])  # fmt: skip
                    logits, _ = model(batch.images, batch.tgt_in)  # (B, T, V)
                    n = int((batch.tgt_out != IGNORE_INDEX).sum())
                    total += float(model.loss(logits, batch.tgt_out)) * n  # cross-entropy only: a mean over n words
                    count += n
        finally:
            model.train(was_training)
        texts, references = [" ".join(w) for w in outputs], [" ".join(w) for w in data.words]
        return {
            "exact_match": metrics.exact_match(texts, references),
            "token_accuracy": metrics.token_accuracy(outputs, data.words),
            "bleu": metrics.bleu(texts, references, "13a")[0],
            "loss": total / count,
        }

    def accuracy_by_length(self, model: nn.Module, split: str = "test", limit: int = 2000) -> LengthAccuracy | None:
        """Exact match per number of digits in the image, over the first ``limit`` images of ``split``."""
        data = self.splits.get(split)
        if data is None or len(data) == 0:
            return None
        data = CaptionSplit(data.images[:limit], data.ids[:limit], data.words[:limit])
        was_training = model.training
        model.eval()
        try:
            outputs = self._greedy_words(model, data)
        finally:
            model.train(was_training)
        groups: dict[int, list[bool]] = defaultdict(list)
        for out, ref in zip(outputs, data.words):
            groups[len(ref)].append(out == ref)
        return LengthAccuracy(
            {n: sum(g) / len(g) for n, g in sorted(groups.items())}, {n: len(g) for n, g in sorted(groups.items())}
        )

    def sample_inputs(self, split: str = "test", n: int = 3) -> list[tuple[Tensor, str]]:
        """The first ``n`` images of ``split`` (``(1, H_img, W_img)`` in [0, 1]) and their true captions."""
        data = self.splits.get(split)
        if data is None:
            return []
        return [(data.images[i], " ".join(data.words[i])) for i in range(min(n, len(data)))]

    def figures(self, model: nn.Module, predictor: CaptionPredictor) -> list[Figure]:
        """The attention over the image of every word of the greedy caption, for the first test image of each
        caption length (longest first, at most 3)."""
        data = next((self.splits[s] for s in ("test", "valid") if len(self.splits.get(s, ()))), None)
        if data is None:
            return []
        first = {}
        for i, words in enumerate(data.words):
            first.setdefault(len(words), i)
        picks = [first[n] for n in sorted(first, reverse=True)[:3]]
        samples = [(data.images[i], " ".join(data.words[i])) for i in picks]
        rows = predictor.caption(torch.stack([image for image, _ in samples]))
        figures: list[Figure] = []
        for i, ((image, truth), row) in enumerate(zip(samples, rows), 1):
            mark = "✓" if row["caption"] == truth else "✗"
            n = len(truth.split())
            figures.append(AttentionOverImage(
                f"caption_attention_{i}", f"Attention over the image per word: a held-out image of {n} digits",
                image=image[0], words=row["words"], attention=torch.tensor(row["attention"]).view(-1, *row["grid"]),
                heading=f"caption: {row['caption']!r} {mark}   (truth: {truth!r})",
            ))  # fmt: skip
        return figures

    # -- artefacts saved with the run, and prediction ----------------------------------------------------------

    def save_artifacts(self, run_dir: RunDir) -> None:
        self.vocab.save(run_dir.output(VOCAB_FILE))
        data = self.cfg.data
        run_dir.write_json(TASK, {
            "task": "CaptioningTask", "vocab": VOCAB_FILE, "height": data.height, "width": data.width, "channels": 1,
            "max_words": data.max_digits, "normalize": self.normalize.to_dict(),
        })  # fmt: skip

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> CaptionPredictor:
        path = run_dir.file(TASK)
        info = run_dir.read_json(TASK, "a captioning run's task.json",
                             required=("vocab", "height", "width", "channels", "max_words", "normalize"))  # fmt: skip
        try:
            vocab = Vocab.load(run_dir.file(str(info["vocab"])), expected_size=model.config.vocab_size)
            normalize = Normalize.from_dict(info["normalize"])
            size = (int(info["height"]), int(info["width"]))
            channels, max_words = int(info["channels"]), int(info["max_words"])
        except (DataError, ConfigError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable ({err})") from None
        return CaptionPredictor(model, vocab, size, channels, normalize, max_words)


class CaptionPredictor(Predictor):
    """A trained captioner: image files or tensors in, words out, with each word's attention over the image."""

    kind = "caption"
    modality = "image"
    options = (
        Option("beam_size", int, 1, "hypotheses kept by the beam search (1: greedy decoding)", 1, MAX_BEAM_SIZE),
        Option("length_penalty", float, 0.0, "GNMT's α: longer captions are favoured as it grows (0: none)", 0, 5),
    )
    explains = "each word's attention over the image"
    inputs = "image files (PNG/JPEG, resized to the training canvas), or images (B, C, H_img, W_img) in [0, 1]"
    outputs = "the caption, its words, and per word the attention over the feature-map positions (h, w)"

    def __init__(self, model: nn.Module, vocab: Vocab, image_size: tuple[int, int], channels: int,
                 normalize: Normalize, max_words: int):  # fmt: skip
        self.model, self.vocab, self.image_size, self.channels = model, vocab, image_size, channels
        self.normalize, self.max_len = normalize, max_words + 1 + MARGIN

    def load(self, inputs: str | Path | Sequence[str | Path] | Tensor) -> tuple[list[str], Tensor]:
        """Names and images ``(B, C, H_img, W_img)`` in [0, 1] of files or of a tensor (``(C, H, W)``: one)."""
        if isinstance(inputs, Tensor):
            images = inputs.unsqueeze(0) if inputs.dim() == 3 else inputs
            if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, *self.image_size):
                raise ConfigError(f"images must have shape (B, {self.channels}, {self.image_size[0]}, "
                                  f"{self.image_size[1]}), got {tuple(inputs.shape)}")  # fmt: skip
            return [f"image {i}" for i in range(len(images))], images.float()
        paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        if not paths:
            raise DataError("no images to caption")
        grey = self.channels == 1
        return [str(p) for p in paths], torch.stack([load_image(p, self.image_size, grayscale=grey) for p in paths])

    def caption(self, inputs, beam_size: int = 1, length_penalty: float = 0.0) -> list[dict[str, Any]]:
        """Caption image files or images; beam 1 is greedy decoding.

        Returns per image: ``input`` (the file, or "image i"), ``caption`` (the words joined by spaces),
        ``words``, ``attention`` (one row per word: its S = h·w weights over the feature-map positions, row by
        row, summing to 1), ``grid`` ``[h, w]``, and ``focus``: per word the (x, y) pixel of the image at the
        centre of its most attended position.
        """
        positive_int("beam_size", beam_size)
        names, images = self.load(inputs)
        self.model.eval()
        rows: list[dict[str, Any]] = []
        for start in range(0, len(images), EVAL_BATCH):
            x = self.normalize(images[start : start + EVAL_BATCH])  # (B, C, H_img, W_img)
            with torch.no_grad():
                h, w = self.model.encode(x[:1]).grid
            positions = torch.full((len(x),), h * w)  # every position is real: beam search keeps all S weights
            if beam_size == 1:
                result = greedy(self.model, x, positions, self.max_len)  # tokens (B, L), attention (B, L, S)
                found = [(r, result.attention[b]) for b, r in enumerate(result.tokens.tolist())]
            else:
                hyps = beam_search(self.model, x, positions, beam_size, self.max_len, length_penalty)
                found = [(best[0].tokens.tolist(), best[0].attention) for best in hyps]
            for name, (ids, attention) in zip(names[start:], found):
                words = self.vocab.decode(ids, stop_at_eos=True)
                weights = attention[: len(words)]  # (n, S)
                rows.append({
                    "input": name, "caption": " ".join(words), "words": words, "attention": weights.tolist(),
                    "grid": [h, w], "focus": [self._focus(int(s), (h, w)) for s in weights.argmax(dim=-1)],
                })  # fmt: skip
        return rows

    def check_together(self, options: dict[str, Any], given: set[str]) -> None:
        if "length_penalty" in given and options["beam_size"] == 1:
            raise ConfigError("--length-penalty applies to beam search; with --beam-size 1 (greedy) leave it out")

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        return self.caption(list(inputs), **options)

    def text(self, row: dict[str, Any]) -> str:
        return f"{row['input']}\t{row['caption']}"

    def has_attention(self) -> bool:
        return True

    def attention_lines(self, row: dict[str, Any]) -> list[str]:
        return [f"  {word:<6} at x={x}, y={y} (weight {max(weights):.2f})"
                for word, (x, y), weights in zip(row["words"], row["focus"], row["attention"])]  # fmt: skip

    def explain(self, input: str, **options: Any) -> AttentionOverImage:
        names, images = self.load([input])
        row = self.caption(images, beam_size=1)[0]
        return AttentionOverImage(
            "attention_over_image", f"Attention over the image per word: {Path(input).name}",
            image=images[0].mean(dim=0), words=row["words"],
            attention=torch.tensor(row["attention"]).view(-1, *row["grid"]), heading=f"caption: {row['caption']!r}",
        )  # fmt: skip

    def _focus(self, position: int, grid: tuple[int, int]) -> tuple[int, int]:
        """The (x, y) image pixel at the centre of feature-map ``position`` (row by row over ``grid``)."""
        (H, W), (h, w) = self.image_size, grid
        row, col = divmod(position, w)
        return int((col + 0.5) * W / w), int((row + 0.5) * H / h)
