"""Speech recognition with CTC: spoken utterances → log-mel features → characters.

Data, decided once in :meth:`SpeechRecognition.prepare`::

    data.source=digits | phrases             built-in, synthesised with espeak-ng (see dnn.data.speech), cached
    data.train=FILE.tsv | FOLDER             a user's recordings: file<TAB>transcript lines
    data.valid / data.test                   TSVs of their own; split off the training utterances by seed if absent

The characters of the training transcripts are the alphabet (``data.lowercase`` lowers them first); id 0 is the
CTC blank, character i of the sorted alphabet is id i + 1. A character of a validation or test transcript that
training never saw cannot be produced: it stays in the reference (an error in the CER) and is left out of the
target for the loss. Features: ``data.n_mels`` log-mel bands at ``data.sample_rate`` (dnn.data.audio); training
batches get SpecAugment (``data.freq_masks`` × up to ``data.freq_mask_width`` bands, ``data.time_masks`` × up to
``data.time_mask_width`` frames) from a generator seeded by (seed, epoch, batch), so a resumed run draws the same
masks. Batches hold utterances of similar length (seeded by (seed, epoch)).

Training minimises the CTC loss (dnn.models.speech.ctc_loss: per utterance divided by its transcript length,
averaged over the batch); an infinite loss (an output too short for its transcript) is zeroed and counted.
Evaluation decodes greedily and reports ``cer`` and ``wer`` (jiwer), ``exact_match`` and the ``loss``; on built-in
data with held-out voices also ``cer_unseen`` / ``exact_match_unseen``. :meth:`per_voice` breaks the error rates
down by voice variant or accent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnn.checks import positive_int
from dnn.data.audio import FeatureConfig, log_mel, read_audio
from dnn.data.batching import BucketBatchSampler
from dnn.data.speech import (
    DATASETS,
    HELD_OUT_VARIANTS,
    SpeechBatch,
    Utterance,
    builtin_dataset,
    collate_speech,
    read_transcripts,
)
from dnn.data.splits import SPLIT_NAMES, carve_missing_splits, derive_seed
from dnn.decoding_ctc import greedy_ctc, greedy_path, prefix_beam_search
from dnn.device import model_device, to_device
from dnn.errors import CheckpointError, ConfigError, DataError
from dnn.models.speech import ctc_loss
from dnn.rundir import TASK, RunDir
from dnn.tasks.base import ErrorsByGroup, Figure, Predictor, SpectrogramAlignment, Task, check_builtin_source
from dnn.tasks.options import MAX_BEAM_SIZE, Option
from dnn.tasks.registry import register_task
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["SpeechPredictor", "SpeechRecognition", "error_rates"]

EVAL_BATCH = 64


def error_rates(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``cer`` and ``wer`` (jiwer: edit distance over characters / words ÷ reference length) and ``exact_match``."""
    import jiwer

    refs, hyps = list(references), list(hypotheses)
    return {"cer": float(jiwer.cer(refs, hyps)), "wer": float(jiwer.wer(refs, hyps)),
            "exact_match": metrics.exact_match(hyps, refs)}  # fmt: skip


def _feature_config(data) -> FeatureConfig:
    return FeatureConfig(sample_rate=data.sample_rate, n_mels=data.n_mels)


class _CountInfinite:
    """At the end of training, log how many training utterances had an infinite CTC loss (zeroed)."""

    def __init__(self, task: SpeechRecognition):
        self.task = task

    def on_fit_end(self, trainer, **_):
        if self.task.infinite_losses:
            self.task.log(
                f"ctc: {self.task.infinite_losses} training utterances had an infinite loss (the output is shorter "
                f"than the transcript needs) and were zeroed; use model.conv_channels=0 for the full frame rate"
            )


@register_task("speech")
class SpeechRecognition(Task):
    """Utterances → padded log-mel batches → CTC on ``speech_ctc``; greedy-decoded CER/WER; a transcriber."""

    monitor = ("cer", "min")

    builtin_data: ClassVar[dict[str, str]] = {
        "speech": f"data.source: {', '.join(DATASETS)} (spoken by espeak-ng, when installed)"
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        data = cfg.data
        check_builtin_source(data.source, DATASETS, "speech")
        if data.source is None and not data.train:
            raise ConfigError(
                f"data.train must name a TSV of file<TAB>transcript lines (or a folder holding one), or set "
                f"data.source to one of {', '.join(DATASETS)}"
            )
        self.features = _feature_config(data)
        self.utterances: dict[str, list[Utterance]] = {s: [] for s in SPLIT_NAMES}
        self.inputs: dict[str, list[Tensor]] = {s: [] for s in SPLIT_NAMES}  # (T, F) per utterance
        self.targets: dict[str, list[list[int]]] = {s: [] for s in SPLIT_NAMES}
        self.alphabet: list[str] = []
        self.infinite_losses = 0
        self.log = print
        self._sampler: BucketBatchSampler | None = None

    # -- data --------------------------------------------------------------------------------------------------

    def _text(self, text: str) -> str:
        return text.lower() if self.cfg.data.lowercase else text

    def _read_utterances(self, log) -> dict[str, list[Utterance]]:
        data, seed = self.cfg.data, self.cfg.seed
        if data.source is not None:
            return builtin_dataset(data.source, data.sizes, seed, data.params, data.cache, data.sample_rate, log)
        read = {"train": read_transcripts(data.train)}
        for split in ("valid", "test"):
            read[split] = read_transcripts(getattr(data, split)) if getattr(data, split) else []
        read = carve_missing_splits(read, data, seed)
        if not read["train"]:
            raise DataError(f"{data.train}: no training utterances left after splitting off valid/test")
        return read

    def _load(self, utterance: Utterance) -> Tensor:
        data = self.cfg.data
        wave = read_audio(utterance.path, data.sample_rate, data.resample, where=utterance.where)
        return log_mel(wave, self.features)  # (T, F)

    def prepare(self, log) -> None:
        self.log = log
        self.utterances = self._read_utterances(log)
        self.alphabet = sorted({c for u in self.utterances["train"] for c in self._text(u.text)})
        unseen = sum(self._featurise(split) for split in SPLIT_NAMES)
        self._sampler = BucketBatchSampler(
            [x.shape[0] for x in self.inputs["train"]], self.cfg.train.batch_size, shuffle=True, seed=self.cfg.seed
        )
        sizes = ", ".join(f"{s} {len(self.utterances[s])}" for s in SPLIT_NAMES)
        seconds = sum(x.shape[0] for x in self.inputs["train"]) * self.features.hop_ms / 1000
        log(f"data: {self.cfg.data.source or self.cfg.data.train}: {sizes} utterances ({seconds / 60:.1f} min of "
            f"training audio); {len(self.alphabet)} characters: {''.join(self.alphabet)!r}")  # fmt: skip
        if unseen:
            log(f"data: {unseen} characters of the valid/test transcripts never occur in training (always errors)")

    def _featurise(self, split: str) -> int:
        """Features and targets of ``split``'s utterances; returns how many transcript characters lie outside the
        alphabet (left out of the targets, kept in the references: always errors)."""
        ids = {c: i + 1 for i, c in enumerate(self.alphabet)}
        utterances = self.utterances[split]
        self.inputs[split] = [self._load(u) for u in utterances]
        self.targets[split] = [[ids[c] for c in self._text(u.text) if c in ids] for u in utterances]
        return sum(len(self._text(u.text)) - len(t) for u, t in zip(utterances, self.targets[split]))

    def prepare_evaluation(self, run_dir: RunDir, path: str, log) -> None:
        """A run trained on a user's recordings: its alphabet, and the utterances ``path`` lists (a TSV of
        file<TAB>transcript lines, or a folder holding one) as the test split (``dnn eval RUN --data PATH``)."""
        if self.cfg.data.source is not None:
            raise ConfigError(
                f"{run_dir.path} is a speech run on built-in data (data.source={self.cfg.data.source}); --data "
                f"applies to a run trained on recordings of yours (data.train=FILE.tsv)"
            )
        info = run_dir.read_json(TASK, "a speech run's task.json", required=("alphabet",))
        self.alphabet = list(info["alphabet"])
        self.utterances = {s: [] for s in SPLIT_NAMES}
        self.utterances["test"] = read_transcripts(path)
        unseen = self._featurise("test")
        log(f"data: {path}: {len(self.utterances['test'])} utterances")
        if unseen:
            log(f"data: {unseen} characters of {path}'s transcripts never occur in training (always errors)")

    def model_options(self) -> dict[str, Any]:
        return {"num_classes": len(self.alphabet) + 1, "n_mels": self.cfg.data.n_mels}

    def _augment(self) -> dict[str, int] | None:
        d = self.cfg.data
        if not (d.freq_masks or d.time_masks):
            return None
        return {"freq_masks": d.freq_masks, "freq_width": d.freq_mask_width, "time_masks": d.time_masks,
                "time_width": d.time_mask_width}  # fmt: skip

    def train_batches(self, epoch: int) -> Iterator[SpeechBatch]:
        """The epoch's batches, SpecAugment included: a function of (seed, epoch) only."""
        augment = self._augment()
        self._sampler.set_epoch(epoch)
        for index, indices in enumerate(self._sampler):
            generator = None
            if augment is not None:
                generator = torch.Generator().manual_seed(
                    derive_seed(self.cfg.seed, "specaugment", str(epoch), str(index))
                )
            items = [(self.inputs["train"][i], self.targets["train"][i]) for i in indices]
            yield collate_speech(items, generator, augment)

    def batches_per_epoch(self) -> int:
        return len(self._sampler)

    def batch_plan(self) -> BatchPlan:
        """The longest training utterance with the longest transcript, ``batch_size`` times (bucketing batches the
        longest together)."""
        inputs, targets = self.inputs["train"], self.targets["train"]
        frames, chars = max(x.shape[0] for x in inputs), max(1, max(map(len, targets)))

        def make(size: int, length: int) -> SpeechBatch:
            item = (torch.zeros(length, inputs[0].shape[1]), [1] * max(1, round(length * chars / frames)))
            return collate_speech([item] * size)

        return BatchPlan(min(self.cfg.train.batch_size, len(inputs)), frames, make)

    def callbacks(self) -> list[Any]:
        return [_CountInfinite(self)]

    # -- training and evaluation -------------------------------------------------------------------------------

    def step(self, model: nn.Module, batch: SpeechBatch, context) -> tuple[Tensor, int]:
        logits, lengths = model(batch.features, batch.lengths)  # (B, T', V), (B,)
        self._check_classes(logits)
        loss, infinite = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
        self.infinite_losses += infinite
        return loss, len(batch.lengths)

    def _check_classes(self, logits: Tensor) -> None:
        if logits.shape[-1] != len(self.alphabet) + 1:
            raise ConfigError(f"model.num_classes is {logits.shape[-1]} but the data has {len(self.alphabet)} "
                              f"characters + blank (leave model.num_classes unset: the data decides it)")  # fmt: skip

    def transcribe_split(self, model: nn.Module, split: str) -> tuple[list[str], float, int]:
        """Greedy transcripts of a split (in its order), its mean CTC loss, and its number of infinite losses."""
        inputs, targets = self.inputs[split], self.targets[split]
        order = sorted(range(len(inputs)), key=lambda i: inputs[i].shape[0])
        hyps: list[str] = [""] * len(inputs)
        total, infinite = 0.0, 0
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), EVAL_BATCH):
                    chunk = order[start : start + EVAL_BATCH]
                    batch = to_device(collate_speech([(inputs[i], targets[i]) for i in chunk]), model_device(model))
                    logits, lengths = model(batch.features, batch.lengths)  # (B, T', V)
                    self._check_classes(logits)
                    loss, n_inf = ctc_loss(logits, lengths, batch.targets, batch.target_lengths)
                    total += float(loss) * len(chunk)
                    infinite += n_inf
                    for i, labels in zip(chunk, greedy_ctc(F.log_softmax(logits, dim=-1), lengths)):
                        hyps[i] = "".join(self.alphabet[k - 1] for k in labels)
        finally:
            model.train(was_training)
        return hyps, total / max(len(inputs), 1), infinite

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        utterances = self.utterances.get(split)
        if not utterances:
            return {}
        hyps, loss, infinite = self.transcribe_split(model, split)
        refs = [self._text(u.text) for u in utterances]
        out = {**error_rates(hyps, refs), "loss": loss, "ctc_infinite": float(infinite)}
        unseen = [i for i, u in enumerate(utterances) if u.variant in HELD_OUT_VARIANTS]
        if unseen:
            rates = error_rates([hyps[i] for i in unseen], [refs[i] for i in unseen])
            out["cer_unseen"], out["exact_match_unseen"] = rates["cer"], rates["exact_match"]
        return out

    def per_voice(self, model: nn.Module, split: str = "test", by: str = "variant") -> dict[str, dict[str, float]]:
        """Error rates per voice ``variant`` (m1 … f4) or ``accent`` (en-us …), sorted by name; each entry has
        cer, wer, exact_match, n (utterances) and unseen (1.0 for a variant held out of training). Empty for a
        user's data, which has no voices."""
        if by not in ("variant", "accent"):
            raise ConfigError(f"by must be 'variant' or 'accent', got {by!r}")
        utterances = self.utterances.get(split) or []
        if not any(u.voice for u in utterances):
            return {}
        hyps, _, _ = self.transcribe_split(model, split)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(utterances):
            groups[u.variant if by == "variant" else u.voice.split("+")[0]].append(i)
        out = {}
        for name, idx in sorted(groups.items()):
            rates = error_rates([hyps[i] for i in idx], [self._text(utterances[i].text) for i in idx])
            out[name] = {**rates, "n": float(len(idx)), "unseen": float(by == "variant" and name in HELD_OUT_VARIANTS)}
        return out

    # -- artefacts saved with the run, prediction, report ------------------------------------------------------

    def save_artifacts(self, run_dir: RunDir) -> None:
        f = self.features
        info = {
            "task": "SpeechRecognition",
            "source": self.cfg.data.source or self.cfg.data.train,
            "alphabet": self.alphabet,
            "blank": 0,
            "lowercase": self.cfg.data.lowercase,
            "features": {k: getattr(f, k) for k in ("sample_rate", "n_mels", "window_ms", "hop_ms", "n_fft")},
        }
        run_dir.write_json(TASK, info)

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> SpeechPredictor:
        path = run_dir.file(TASK)
        info = run_dir.read_json(TASK, "a speech run's task.json", required=("alphabet", "features"))
        try:
            alphabet, features = list(info["alphabet"]), FeatureConfig(**info["features"])
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable features or alphabet ({err})") from None
        # probe: load_predictor takes any nn.Module; SpeechCTC declares config.num_classes, another model goes unchecked
        expected = getattr(getattr(model, "config", None), "num_classes", None)
        if expected is not None and expected != len(alphabet) + 1:
            raise CheckpointError(
                f"{path}: {len(alphabet)} characters + blank do not fit the model's {expected} outputs"
            )
        return SpeechPredictor(model, alphabet, features)

    def figures(self, model: nn.Module, predictor: SpeechPredictor) -> list[Figure]:
        """A test utterance's spectrogram with the recognised characters aligned under it, and the test CER per
        voice (built-in data), as data for :mod:`dnn.inspect` to draw."""
        split = next((s for s in ("test", "valid", "train") if self.utterances[s]), None)
        if split is None:
            return []
        utterance = self.utterances[split][0]
        aligned = predictor.align(self.inputs[split][0])
        voice = f"   (voice {utterance.voice})" if utterance.voice else ""
        figures: list[Figure] = [
            SpectrogramAlignment(
                "speech_alignment",
                f"A {split} utterance: log-mel spectrogram, and each character where the greedy CTC path emits it",
                features=aligned["features"], chars=aligned["chars"], frames=aligned["frames"],
                hop_ms=self.features.hop_ms,
                heading=f"reference: {utterance.text!r}{voice}\nrecognised: {aligned['text']!r}",
            )
        ]  # fmt: skip
        voices = self.per_voice(model, split)
        if voices:
            figures.append(ErrorsByGroup(
                "speech_voices", f"Character error rate per voice variant on the {split} split", groups=voices,
                heading=f"{split} CER per voice variant (hatched: held out of training)",
            ))  # fmt: skip
        return figures


class SpeechPredictor(Predictor):
    """A trained acoustic model with its alphabet and feature settings: audio files in, transcripts out."""

    kind = "transcribe"
    modality = "audio"
    inputs = "audio files (WAV, FLAC, OGG)"
    outputs = "the transcript and its log-probability"
    options = (Option("beam_size", int, 1, "prefixes kept by the CTC beam search (1: greedy)", 1, MAX_BEAM_SIZE),)
    explains = "the log-mel spectrogram with each character at the frame where the greedy CTC path emits it"

    def __init__(self, model: nn.Module, alphabet: Sequence[str], features: FeatureConfig):
        self.model, self.alphabet, self.features = model, list(alphabet), features

    def load(self, path: str | Path) -> Tensor:
        """An audio file's normalised log-mel features ``(T, F)``; other sample rates are resampled."""
        return log_mel(read_audio(path, self.features.sample_rate, resample_to_rate=True), self.features)

    def _log_probs(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Per utterance the log-probabilities ``(T'_b, V)`` of its own output frames."""
        batch = to_device(collate_speech([(x, []) for x in features]), model_device(self.model))
        self.model.eval()
        with torch.inference_mode():
            logits, lengths = self.model(batch.features, batch.lengths)  # (B, T', V)
            log_probs = F.log_softmax(logits.float(), dim=-1).cpu()
            lengths = lengths.cpu()
        return [log_probs[b, :n] for b, n in enumerate(lengths.tolist())]

    def _text(self, labels: Sequence[int]) -> str:
        return "".join(self.alphabet[k - 1] for k in labels)

    def transcribe(self, paths: Sequence[str | Path], beam_size: int = 1) -> list[dict[str, Any]]:
        """``[{"file", "text", "log_prob"}]`` for each audio file; beam 1 is greedy decoding (``log_prob`` is then
        the best path's), else CTC prefix beam search (the labelling's summed log-probability)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        positive_int("beam_size", beam_size)
        features = [self.load(p) for p in paths]
        out = []
        for start in range(0, len(features), EVAL_BATCH):
            chunk = features[start : start + EVAL_BATCH]
            for path, lp in zip(paths[start : start + EVAL_BATCH], self._log_probs(chunk)):
                if beam_size == 1:
                    labels, _ = greedy_path(lp)
                    score = float(lp.max(dim=-1).values.sum())
                else:
                    labels, score = prefix_beam_search(lp, beam_size, prune=-12.0)[0]
                out.append({"file": str(path), "text": self._text(labels), "log_prob": score})
        return out

    def predict(self, inputs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        return [{"input": row["file"], **row} for row in self.transcribe(list(inputs), **options)]

    def text(self, row: dict[str, Any]) -> str:
        return f"{row['file']}\t{row['text']}"

    def explain(self, input: str, **options: Any) -> SpectrogramAlignment:
        aligned = self.align(self.load(input))
        return SpectrogramAlignment(
            "alignment", f"Where each character is emitted: {Path(input).name}",
            features=aligned["features"], chars=aligned["chars"], frames=aligned["frames"],
            hop_ms=self.features.hop_ms, heading=f"recognised: {aligned['text']!r}",
        )  # fmt: skip

    def align(self, features: Tensor) -> dict[str, Any]:
        """Greedy decoding of one utterance's ``features (T, F)`` with the feature frame of each character:
        ``{"features", "text", "chars", "frames"}`` (a model that halves the frame rate emits at even frames)."""
        lp = self._log_probs([features])[0]
        labels, frames = greedy_path(lp)
        # probe: SpeechCTC declares stride (2 with its conv front end); any other model emits a frame per input frame
        stride = getattr(self.model, "stride", 1)
        chars = [self.alphabet[k - 1] for k in labels]
        return {"features": features, "text": "".join(chars), "chars": chars, "frames": [f * stride for f in frames]}
