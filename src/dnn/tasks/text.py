"""Text classification (many-to-one) and tagging (many-to-many) on a user's files.

Data, decided once in ``prepare``::

    TextClassification   data.train=reviews.csv   a CSV/TSV whose header names data.text_column, data.label_column
                         data.train=aclImdb       the IMDB folder: train/{neg,pos} for training, test/ for testing
    Tagging              data.train=tags.conll    one token and its tag per line, blank lines between sentences
    both                 data.valid / data.test   separate files; split off the training file when absent

A split that is not given is carved out of the training file by seed (:func:`dnn.data.splits.split_indices`;
stratified by label for classification) before anything else is decided, so the test set does not change with
``data.max_length``. The tokenizer (classification: ``data.tokenizer``, BPE trained on the training split), the
token :class:`Vocab` (``data.min_freq``, at most ``data.vocab_size`` entries) and the :class:`LabelVocab` come from
the training split only; a label at evaluation that training never saw is a DataError naming file and line.

``data.max_length`` (tokens): an over-long example is dropped from training and counted in the run's log; in a
separate validation or test file it is an error, unless ``data.truncate`` cuts it (counted as truncated). Splits
carved out of the training file are read with the training file's policy (dropped and counted).

Training batches hold examples of similar length (:class:`BucketBatchSampler`, seeded by ``(seed, epoch)``, so a
resumed run sees exactly the batches an uninterrupted one would have). Losses::

    classification   L = −(1/B) Σ_b log softmax(z_b)[y_b]                       z = model(tokens, lengths) (B, K)
    tagging          L = −(1/N) Σ_b Σ_{t ≤ n_b} log softmax(z_{b,t})[y_{b,t}]   N = Σ_b n_b (padding: −100, skipped)

What both tasks share (their base :class:`~dnn.tasks.text_base.TextTask`: splits, batches, evaluation) is in
:mod:`dnn.tasks.text_base`; a trained run's predictors (classifier, tagger) are in :mod:`dnn.tasks.text_predictors`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dnn.config import load_yaml
from dnn.data.batching import (
    IGNORE_INDEX,
    Batch,
    collate_classification,
    collate_tagging,
)
from dnn.data.splits import SPLIT_NAMES
from dnn.data.text import Records, TaggedSentence, TextExample, read_classification, read_conll, read_imdb
from dnn.data.tokenizers import Tokenizer, make_tokenizer
from dnn.data.vocab import LabelVocab, Vocab
from dnn.errors import ConfigError, DataError
from dnn.rundir import CONFIG, LABELS, VOCAB, RunDir, as_run
from dnn.tasks.registry import register_task
from dnn.tasks.text_base import (
    FILES,
    ExampleKey,
    TextTask,
    assign_splits,
    missing_fractions,
    model_size,
    read_task_json,
)
from dnn.tasks.text_predictors import TaggingPredictor, TextClassifierPredictor
from dnn.training.transfer_setup import language_model_run

__all__ = ["Tagging", "TaggingPredictor", "TextClassification", "TextClassifierPredictor"]

MIN_PER_LABEL = 2  # fewer training examples per label (on average) is not a classification task


# --------------------------------------------------------------------------------------------------------------
# Many-to-one: text classification
# --------------------------------------------------------------------------------------------------------------


def _language_model_run(init_from: str | None) -> Path | None:
    """The language model run that ``train.init_from`` names (ULMFiT): its tokenizer, vocabulary and shape are
    the classifier's. None without init_from; any other run is refused in one line."""
    return language_model_run(init_from).path if init_from else None


@register_task("text_classification")
class TextClassification(TextTask):
    """A CSV/TSV or an ``aclImdb/`` folder → token ids and class ids → cross-entropy on a sequence classifier.

    Metrics: ``accuracy``, ``macro_f1`` (scikit-learn) and the mean cross-entropy ``loss``.
    """

    collate = staticmethod(collate_classification)
    expected_train = (
        "a CSV/TSV file whose header names the text and label columns (data.text_column, data.label_column; "
        "default 'text', 'label') or an aclImdb/ folder (train/neg, train/pos, test/neg, test/pos)"
    )

    def __init__(self, cfg):
        super().__init__(cfg)
        self.tokenizer: Tokenizer | None = None
        self.pretrained = _language_model_run(cfg.train.init_from)  # ULMFiT: the LM's tokenizer and vocabulary

    def _read(self, path: str, split: str, tokenizer: Tokenizer | None, labels: LabelVocab | None = None,
              policy: bool = True) -> Records[TextExample]:  # fmt: skip
        """A CSV/TSV file, or a folder read as aclImdb (its test/ part for any split but training)."""
        data = self.cfg.data
        length = {"max_length": data.max_length, "truncate": data.truncate} if policy else {}
        if Path(path).is_dir():
            part = "train" if split == "train" else "test"
            return read_imdb(path, part, tokenizer=tokenizer, labels=labels, **length)
        if Path(path).is_file() and Path(path).suffix.lower() not in (".csv", ".tsv"):
            raise DataError(f"{path}: expected a .csv or .tsv file (the extension decides the delimiter) or a folder")
        return read_classification(
            path, text_column=data.text_column, label_column=data.label_column, tokenizer=tokenizer,
            labels=labels, split=split, **length,
        )  # fmt: skip

    def _sources(self) -> dict[str, str | None]:
        data = self.cfg.data
        imdb_test = Path(data.train).is_dir() and (Path(data.train) / "test").is_dir()
        return {"train": data.train, "valid": data.valid, "test": data.test or (data.train if imdb_test else None)}

    def _make_tokenizer(self, train_texts: Callable[[], list[str]]) -> Tokenizer:
        data = self.cfg.data
        if data.tokenizer == "bpe":
            if data.vocab_size < 256:
                raise ConfigError(f"data.vocab_size must be at least 256 for the bpe tokenizer, got {data.vocab_size}")
            bpe = make_tokenizer(
                "bpe", vocab_size=data.vocab_size, min_frequency=data.min_freq, lowercase=data.lowercase
            )
            return bpe.train(train_texts())
        return make_tokenizer(data.tokenizer, lowercase=data.lowercase)

    def prepare(self, log) -> None:
        data, sources = self.cfg.data, self._sources()
        fractions = missing_fractions(data, {name: sources[name] is not None for name in ("valid", "test")})
        plain: list[TextExample] | None = None
        assignment: dict[ExampleKey, str] = {}
        bpe = data.tokenizer == "bpe" and self.pretrained is None
        if fractions is not None or bpe:  # pass 1: the texts alone, to split and to train BPE
            plain = list(self._read(sources["train"], "train", None, policy=False))
        if fractions is not None:
            keys = [(ex.path, ex.line) for ex in plain]
            assignment = assign_splits(keys, [ex.label for ex in plain], fractions, self.cfg.seed)
        if self.pretrained is not None:
            self.tokenizer = Tokenizer.load(as_run(self.pretrained).file(FILES["tokenizer"]))
        else:
            self.tokenizer = self._make_tokenizer(
                lambda: [ex.text for ex in plain if assignment.get((ex.path, ex.line), "train") == "train"]
            )

        records = self._read(sources["train"], "train", self.tokenizer)
        read: dict[str, list[TextExample]] = {name: [] for name in SPLIT_NAMES}
        for ex in records:
            read[assignment.get((ex.path, ex.line), "train")].append(ex)
        log(records.stats.summary())
        self.labels = LabelVocab.build(ex.label for ex in read["train"])
        if len(self.labels) > max(2, len(read["train"]) // MIN_PER_LABEL):
            raise DataError(
                f"{data.train}: {len(self.labels):,} labels for {len(read['train']):,} training examples; expected at "
                f"least {MIN_PER_LABEL} examples per label on average (is data.label_column={data.label_column!r} "
                f"the column of the classes?)"
            )
        max_size = None if data.tokenizer == "bpe" else data.vocab_size  # BPE: its merges bound the vocabulary
        if self.pretrained is not None:
            self.vocab = Vocab.load(as_run(self.pretrained).file(FILES["vocab"]))
            log(f"data: tokenizer and vocabulary of the language model {self.pretrained}")
        else:
            self.vocab = Vocab.build((ex.tokens for ex in read["train"]), data.min_freq, max_size)
        for split in ("valid", "test"):
            if sources[split] is not None:
                records = self._read(sources[split], split, self.tokenizer, labels=self.labels)
                read[split] = list(records)
                log(records.stats.summary())
        for split, examples in read.items():
            self.examples[split] = [
                (self.vocab.encode(ex.tokens), self.labels.encode(ex.label, path=ex.path, line=ex.line))
                for ex in examples
            ]  # an unseen label in a split carved from the training file: DataError naming its file and line
        self._finish(log)

    def model_options(self) -> dict[str, Any]:
        """The data's sizes; from a language model also its shape (model.* keys given by the user still win)."""
        options = super().model_options()
        if self.pretrained is not None:
            lm = load_yaml(as_run(self.pretrained).file(CONFIG)).get("model", {})
            shape = ("embedding_size", "hidden_size", "num_layers", "cell", "residual", "dense")  # what must match
            options.update({key: lm[key] for key in shape if key in lm})
        return options

    def prepare_evaluation(self, run_dir: RunDir, path: str, log) -> None:
        """A trained run's tokenizer, vocabulary and labels, and ``path`` (a CSV/TSV, or an aclImdb folder's test
        part) as the test split (``dnn eval RUN --data FILE``); a label the run never saw is a DataError."""
        self.vocab, self.labels = Vocab.load(run_dir.file(VOCAB)), LabelVocab.load(run_dir.file(LABELS))
        self.tokenizer = Tokenizer.load(run_dir.file(FILES["tokenizer"]))
        records = self._read(path, "test", self.tokenizer, labels=self.labels)
        examples = [
            (self.vocab.encode(ex.tokens), self.labels.encode(ex.label, path=ex.path, line=ex.line)) for ex in records
        ]
        self._set_evaluation_split(path, examples, records, log)

    def step(self, model: nn.Module, batch: Batch, context) -> tuple[Tensor, int]:
        logits = model(batch.tokens, batch.lengths)  # (B, K)
        self._check_classes(logits)
        return F.cross_entropy(logits, batch.labels), len(batch.labels)

    def save_artifacts(self, run_dir: RunDir) -> None:
        self.vocab.save(run_dir.output(FILES["vocab"]))
        self.labels.save(run_dir.output(FILES["labels"]))
        self.tokenizer.save(run_dir.output(FILES["tokenizer"]))
        data = self.cfg.data
        info = {"task": "TextClassification", "max_length": data.max_length, "truncate": data.truncate}
        run_dir.write_json(FILES["task"], info)

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> TextClassifierPredictor:
        info = read_task_json(run_dir)
        vocab = Vocab.load(run_dir.file(FILES["vocab"]), expected_size=model_size(model, "vocab_size"))
        labels = LabelVocab.load(run_dir.file(FILES["labels"]), expected_size=model_size(model, "num_classes"))
        tokenizer = Tokenizer.load(run_dir.file(FILES["tokenizer"]))
        max_length = info.get("max_length") if info.get("truncate") else None
        return TextClassifierPredictor(model, tokenizer, vocab, labels, max_length)


# --------------------------------------------------------------------------------------------------------------
# Many-to-many: tagging
# --------------------------------------------------------------------------------------------------------------


@register_task("tagging")
class Tagging(TextTask):
    """A CoNLL-style file → token ids and tag ids → per-token cross-entropy (padding ignored) on a tagger.

    The tokens are the file's own (``data.tokenizer`` does not apply), lower-cased when ``data.lowercase``.
    Metrics over the real tokens: ``accuracy``, ``macro_f1`` over the tags (scikit-learn) and the mean ``loss``.
    """

    collate = staticmethod(collate_tagging)
    expected_train = "a CoNLL-style file (one token and its tag per line, blank lines between sentences)"

    def _read(self, path: str, split: str, labels: LabelVocab | None = None, policy: bool = True):
        data = self.cfg.data
        length = {"max_length": data.max_length, "truncate": data.truncate} if policy else {}
        return read_conll(path, labels=labels, split=split, **length)

    def _normal(self, tokens: list[str]) -> list[str]:
        return [t.lower() for t in tokens] if self.cfg.data.lowercase else tokens

    def prepare(self, log) -> None:
        data = self.cfg.data
        fractions = missing_fractions(data, {"valid": data.valid is not None, "test": data.test is not None})
        assignment: dict[ExampleKey, str] = {}
        if fractions is not None:  # pass 1: where each sentence starts, to split before any length policy
            keys = [(s.path, s.line) for s in self._read(data.train, "train", policy=False)]
            assignment = assign_splits(keys, [""] * len(keys), fractions, self.cfg.seed)

        records = self._read(data.train, "train")
        read: dict[str, list[TaggedSentence]] = {name: [] for name in SPLIT_NAMES}
        for sentence in records:
            read[assignment.get((sentence.path, sentence.line), "train")].append(sentence)
        log(records.stats.summary())
        self.labels = LabelVocab.build(tag for s in read["train"] for tag in s.tags)
        self.vocab = Vocab.build((self._normal(s.tokens) for s in read["train"]), data.min_freq, data.vocab_size)
        for split in ("valid", "test"):
            path = getattr(data, split)
            if path is not None:
                records = self._read(path, split, labels=self.labels)
                read[split] = list(records)
                log(records.stats.summary())
        for split, sentences in read.items():
            self.examples[split] = [
                (
                    self.vocab.encode(self._normal(s.tokens)),
                    [self.labels.encode(tag, path=s.path, line=s.line + i) for i, tag in enumerate(s.tags)],
                )
                for s in sentences
            ]
        self._finish(log)

    def prepare_evaluation(self, run_dir: RunDir, path: str, log) -> None:
        """A trained run's vocabulary and tags, and the CoNLL file ``path`` as the test split (``dnn eval --data``)."""
        self.vocab, self.labels = Vocab.load(run_dir.file(VOCAB)), LabelVocab.load(run_dir.file(LABELS))
        records = self._read(path, "test", labels=self.labels)
        examples = [
            (
                self.vocab.encode(self._normal(s.tokens)),
                [self.labels.encode(tag, path=s.path, line=s.line + i) for i, tag in enumerate(s.tags)],
            )
            for s in records
        ]
        self._set_evaluation_split(path, examples, records, log)

    def step(self, model: nn.Module, batch: Batch, context) -> tuple[Tensor, int]:
        logits = model(batch.tokens, batch.lengths)  # (B, T, K)
        self._check_classes(logits)
        K = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, K), batch.labels.reshape(-1), ignore_index=IGNORE_INDEX)
        return loss, int(batch.lengths.sum())

    def save_artifacts(self, run_dir: RunDir) -> None:
        self.vocab.save(run_dir.output(FILES["vocab"]))
        self.labels.save(run_dir.output(FILES["labels"]))
        run_dir.write_json(FILES["task"], {"task": "Tagging", "lowercase": self.cfg.data.lowercase})

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> TaggingPredictor:
        info = read_task_json(run_dir)
        vocab = Vocab.load(run_dir.file(FILES["vocab"]), expected_size=model_size(model, "vocab_size"))
        labels = LabelVocab.load(run_dir.file(FILES["labels"]), expected_size=model_size(model, "num_classes"))
        return TaggingPredictor(model, vocab, labels, lowercase=bool(info.get("lowercase", False)))
