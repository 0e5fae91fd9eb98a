"""Sequence to sequence: a built-in text task (dates, addition, reverse, sort) or a user's parallel corpus.

Data, decided once in :meth:`Seq2SeqTask.prepare`::

    data.source=dates                         built-in: task_splits(source, sizes, seed, **params), char tokens
    data.train=corpus.tsv                     source<TAB>target lines
    data.train=src.txt data.target=tgt.txt    two line-aligned files
    data.valid / data.test                    TSV files; split off the training pairs by seed when absent

Source and target have their own tokenizer (``data.tokenizer``: char, word or BPE trained on the training
split only) and their own vocabulary, built from the training split. Training is teacher-forced and the loss is
the mean cross-entropy over the real target tokens (padding never counts)::

    tgt_in  = <sos> y_1 … y_n        tgt_out = y_1 … y_n <eos>
    L = −(1/N) Σ_b Σ_{t ≤ n_b+1} log p(tgt_out[b, t] | tgt_in[b, ≤t], x_b)        N = Σ_b (n_b + 1)

Evaluation decodes greedily (up to the longest target of the split + a margin) and compares strings:
``exact_match`` (the detokenised output equals the reference), ``token_accuracy``, sacrebleu's ``bleu`` (over
characters for a char tokenizer, else its 13a words) and ``chrf`` (their signatures go to the log and to
task.json), and the teacher-forced ``loss``.

A trained run's translator, :class:`Seq2SeqPredictor`, is in :mod:`dnn.tasks.seq2seq_predictor`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dnn.data.batching import BucketBatchSampler, Seq2SeqBatch, collate_seq2seq, pad_batch
from dnn.data.splits import carve_missing_splits
from dnn.data.text import LengthPolicy, Pair, ReadStats, read_parallel_files, read_parallel_tsv
from dnn.data.text_tasks import list_tasks, task_splits
from dnn.data.tokenizers import Tokenizer, make_tokenizer
from dnn.data.vocab import Vocab
from dnn.decoding import greedy
from dnn.device import model_device, to_device
from dnn.errors import ConfigError, DataError
from dnn.io import UNK_ID
from dnn.rundir import SOURCE_TOKENIZER, SOURCE_VOCAB, TARGET_TOKENIZER, TARGET_VOCAB, TASK, RunDir
from dnn.tasks.base import Figure, LengthAccuracy, Task, check_builtin_source
from dnn.tasks.registry import register_task
from dnn.tasks.seq2seq_predictor import MARGIN, Seq2SeqPredictor, load_artifacts  # re-exported: public path
from dnn.training import metrics
from dnn.training.memory import BatchPlan

__all__ = ["Seq2SeqPredictor", "Seq2SeqSplit", "Seq2SeqTask"]

SPLITS = ("train", "valid", "test")
EVAL_BATCH = 256
FILES = {
    "source_vocab": SOURCE_VOCAB,
    "target_vocab": TARGET_VOCAB,
    "source_tokenizer": SOURCE_TOKENIZER,
    "target_tokenizer": TARGET_TOKENIZER,
}


@dataclass
class Seq2SeqSplit:
    """One split, tokenised: ids for the model, reference tokens and strings for the metrics."""

    sources: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    references: list[list[str]]  # target tokens
    reference_texts: list[str]  # the target tokenizer's detokenisation of them

    def __len__(self) -> int:
        return len(self.src_ids)


def _where(pair: Pair) -> str:
    return f"{pair.path}:{pair.line}"


def _decode_rows(tokens: Tensor, vocab: Vocab) -> list[list[str]]:
    """Greedy output rows ``(B, L)`` → the tokens of each row up to (not including) its first <eos>."""
    return [vocab.decode(row, stop_at_eos=True) for row in tokens.tolist()]


@register_task("seq2seq")
class Seq2SeqTask(Task):
    """Pairs of texts → padded batches for teacher forcing, greedy-decoded string metrics, a translator.

    ``monitor`` is exact match for the built-in tasks (one right answer each) and BLEU for a user's corpus.
    Batches come from a :class:`~dnn.data.batching.BucketBatchSampler` seeded with ``cfg.seed`` and set to the
    epoch, so the batches of every epoch are a function of (seed, epoch) alone and a resumed run sees the same.
    """

    builtin_data: ClassVar[dict[str, str]] = {"seq2seq": f"data.source: {', '.join(list_tasks())} (generated pairs)"}

    def __init__(self, cfg):
        super().__init__(cfg)
        data = cfg.data
        check_builtin_source(data.source, list_tasks())
        if data.source is not None and data.train:
            raise ConfigError("data.source (a built-in task) and data.train (your corpus) exclude each other")
        if data.source is None and not data.train:
            raise DataError(
                "data.train must name a parallel corpus (source<TAB>target lines, or the source side of two "
                f"line-aligned files with data.target), or set data.source to one of {', '.join(list_tasks())}"
            )
        if data.target and not data.train:
            raise ConfigError("data.target is the target side of data.train; set data.train too")
        self.monitor = ("exact_match", "max") if data.source is not None else ("bleu", "max")
        # BLEU over words is meaningless for "535+61" → "596" (one word, no 4-grams): character tasks count characters
        self.bleu_tokenize = "char" if data.tokenizer == "char" else "13a"
        self.splits: dict[str, Seq2SeqSplit] = {}
        self.src_tokenizer: Tokenizer | None = None
        self.tgt_tokenizer: Tokenizer | None = None
        self.src_vocab: Vocab | None = None
        self.tgt_vocab: Vocab | None = None
        self.signatures: dict[str, str] = {}

    # -- data --------------------------------------------------------------------------------------------------

    def _read_pairs(self, log) -> dict[str, list[Pair]]:
        """Raw (untokenised) pairs per split, blank pairs dropped by the readers."""
        data, seed = self.cfg.data, self.cfg.seed
        if data.source is not None:
            splits = task_splits(data.source, sizes=data.sizes, seed=seed, **data.params)
            where = {s: f"<{data.source} {s}>" for s in SPLITS}
            return {
                s: [Pair(src, tgt, i + 1, where[s]) for i, (src, tgt) in enumerate(pairs)]
                for s, pairs in splits.as_dict().items()
            }

        def read(records) -> list[Pair]:
            pairs = list(records)
            log(f"data: {records.stats.summary()}")
            return pairs

        train = read_parallel_files(data.train, data.target) if data.target else read_parallel_tsv(data.train)
        pairs = {"train": read(train)}
        for split in ("valid", "test"):
            path = getattr(data, split)
            pairs[split] = read(read_parallel_tsv(path)) if path else []
        pairs = carve_missing_splits(pairs, data, seed)
        if not pairs["train"]:
            raise DataError(f"{data.train}: no training pairs left after splitting off valid/test; add more pairs")
        return pairs

    def _make_tokenizers(self, train: list[Pair]) -> tuple[Tokenizer, Tokenizer]:
        data = self.cfg.data
        if data.tokenizer != "bpe":
            return tuple(make_tokenizer(data.tokenizer, lowercase=data.lowercase) for _ in range(2))
        # a merge seen only once memorises a training word rather than learning a subword, hence at least 2
        options = {"vocab_size": data.vocab_size, "min_frequency": max(2, data.min_freq), "lowercase": data.lowercase}
        try:
            src, tgt = make_tokenizer("bpe", **options), make_tokenizer("bpe", **options)
        except ConfigError as err:  # "vocab_size must be an int ≥ 256" → "data.vocab_size must be ..."
            raise ConfigError(f"data.{err}") from None
        src.train(p.source for p in train)
        tgt.train(p.target for p in train)
        return src, tgt

    def _tokenize(self, split: str, pairs: list[Pair], log, given: bool | None = None) -> list[Pair]:
        """The pairs with their token lists set. An over-long pair is cut (``data.truncate``), else an error in a
        valid/test file the user gave, else dropped (training pairs, pairs split off the training file, generated)."""
        data = self.cfg.data
        if given is None:
            given = bool(data.source is None and split != "train" and getattr(data, split))
        policy = LengthPolicy(data.max_length, split if given else "train", data.truncate)
        stats = ReadStats(f"{split} split")
        out = []
        for pair in pairs:
            src = policy.fit(self.src_tokenizer.tokenize(pair.source), stats, _where(pair))
            tgt = None if src is None else policy.fit(self.tgt_tokenizer.tokenize(pair.target), stats, _where(pair))
            if src is None or tgt is None:
                continue
            if not src:  # e.g. a source of punctuation only under a tokenizer that drops it
                stats.dropped["blank"] += 1
                continue
            stats.kept += 1
            out.append(dataclasses.replace(pair, source_tokens=src, target_tokens=tgt))
        if stats.truncated or sum(stats.dropped.values()):
            log(f"data: {stats.summary()}")
        return out

    def prepare(self, log) -> None:
        data = self.cfg.data
        pairs = self._read_pairs(log)
        self.src_tokenizer, self.tgt_tokenizer = self._make_tokenizers(pairs["train"])
        pairs = {split: self._tokenize(split, pairs[split], log) for split in SPLITS}
        if not pairs["train"]:
            raise DataError(f"{data.train or data.source}: no training pairs left after tokenising")
        train_src = [p.source_tokens for p in pairs["train"]]
        train_tgt = [p.target_tokens for p in pairs["train"]]
        if data.tokenizer == "bpe":  # the merges already decided the subwords: keep every one training uses
            self.src_vocab, self.tgt_vocab = Vocab.build(train_src), Vocab.build(train_tgt)
        else:
            max_size = data.vocab_size if data.tokenizer == "word" else None
            self.src_vocab = Vocab.build(train_src, min_freq=data.min_freq, max_size=max_size)
            self.tgt_vocab = Vocab.build(train_tgt, min_freq=data.min_freq, max_size=max_size)
        for split in SPLITS:
            self.splits[split] = self._encode(pairs[split])
        self._set_signatures()
        sizes = ", ".join(f"{s} {len(self.splits[s])}" for s in SPLITS)
        log(
            f"data: {data.source or data.train}, {sizes} pairs; {data.tokenizer} tokens, vocabularies: source "
            f"{len(self.src_vocab)}, target {len(self.tgt_vocab)}"
        )
        log(f"metrics: exact_match, token_accuracy, BLEU {self.signatures['bleu']}, chrF {self.signatures['chrf']}")

    def _encode(self, pairs: list[Pair]) -> Seq2SeqSplit:
        return Seq2SeqSplit(
            sources=[p.source for p in pairs],
            src_ids=[self.src_vocab.encode(p.source_tokens) for p in pairs],
            tgt_ids=[self.tgt_vocab.encode(p.target_tokens) for p in pairs],
            references=[p.target_tokens for p in pairs],
            reference_texts=[self.tgt_tokenizer.detokenize(p.target_tokens) for p in pairs],
        )

    def _set_signatures(self) -> None:
        self.signatures = {
            "bleu": metrics.bleu(["a"], ["a"], self.bleu_tokenize)[1],
            "chrf": metrics.chrf(["a"], ["a"])[1],
        }

    def prepare_evaluation(self, run_dir: RunDir, path: str, log) -> None:
        """A trained run's own tokenizers and vocabularies, and the parallel file ``path`` as the test split
        (``dnn eval RUN --data FILE``); over-long pairs follow the policy of a test file the user gave."""
        self.src_tokenizer, self.tgt_tokenizer, self.src_vocab, self.tgt_vocab, _, _ = load_artifacts(run_dir)
        records = read_parallel_tsv(path)
        pairs = list(records)
        log(f"data: {records.stats.summary()}")
        self.splits["test"] = self._encode(self._tokenize("test", pairs, log, given=True))
        if not len(self.splits["test"]):
            raise DataError(f"{path}: no pairs to evaluate")
        self._set_signatures()

    def model_options(self) -> dict[str, Any]:
        return {"src_vocab_size": len(self.src_vocab), "tgt_vocab_size": len(self.tgt_vocab)}

    def _sampler(self) -> BucketBatchSampler:
        lengths = [len(ids) for ids in self.splits["train"].src_ids]
        return BucketBatchSampler(lengths, self.cfg.train.batch_size, shuffle=True, seed=self.cfg.seed)

    def train_batches(self, epoch: int) -> Iterator[Seq2SeqBatch]:
        train = self.splits["train"]
        sampler = self._sampler()
        sampler.set_epoch(epoch)  # the order is a function of (seed, epoch)
        for indices in sampler:
            yield collate_seq2seq([(train.src_ids[i], train.tgt_ids[i]) for i in indices])

    def batches_per_epoch(self) -> int:
        return len(self._sampler())

    def data_bytes(self) -> int:
        """Built-in pairs: about 740 bytes of Python objects per pair and 17 per character (texts, token lists, ids,
        references; measured on dates, addition, sort and copy_memory), characters counted on 200 drawn pairs.
        A user's corpus: 0 (not known before it is read)."""
        data = self.cfg.data
        if data.source is None:
            return 0
        sample = task_splits(data.source, sizes=(200, 0, 0), seed=self.cfg.seed, **data.params).train
        chars = sum(len(src) + len(tgt) for src, tgt in sample) / max(1, len(sample))
        return round(sum(data.sizes) * (740 + 17 * chars))

    def batch_plan(self) -> BatchPlan:
        """The longest training source and target (bucketing batches the longest together), ``batch_size`` times."""
        train = self.splits["train"]
        src, tgt = max(map(len, train.src_ids)), max(map(len, train.tgt_ids))

        def make(size: int, length: int) -> Seq2SeqBatch:
            return collate_seq2seq([([UNK_ID] * length, [UNK_ID] * round(length * tgt / src))] * size)

        size = min(self.cfg.train.batch_size, len(train))
        return BatchPlan(size, src, make, ("train.batch_size", "data.max_length"))

    # -- training and evaluation -------------------------------------------------------------------------------

    @staticmethod
    def step(model: nn.Module, batch: Seq2SeqBatch, context) -> tuple[Tensor, int]:
        return model.forward_loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out), batch.src.shape[0]

    def _eval_batches(self, data: Seq2SeqSplit) -> Iterator[list[int]]:
        """Indices of the split in batches of similar source length (padding does not change a result)."""
        order = sorted(range(len(data)), key=lambda i: len(data.src_ids[i]))
        for start in range(0, len(order), EVAL_BATCH):
            yield order[start : start + EVAL_BATCH]

    def _greedy_outputs(self, model: nn.Module, data: Seq2SeqSplit) -> list[list[str]]:
        max_len = max(len(t) for t in data.references) + MARGIN
        outputs: list[list[str]] = [[] for _ in range(len(data))]
        for indices in self._eval_batches(data):
            src, lengths, _ = pad_batch([data.src_ids[i] for i in indices])  # (B, S), (B,)
            src, lengths = to_device((src, lengths), model_device(model))
            result = greedy(model, src, lengths, max_len)
            for i, tokens in zip(indices, _decode_rows(result.tokens, self.tgt_vocab)):
                outputs[i] = tokens
        return outputs

    def _teacher_forced_loss(self, model: nn.Module, data: Seq2SeqSplit) -> float:
        total, count = 0.0, 0
        for indices in self._eval_batches(data):
            batch = to_device(
                collate_seq2seq([(data.src_ids[i], data.tgt_ids[i]) for i in indices]), model_device(model)
            )
            n = int(batch.tgt_mask.sum())
            loss = model.forward_loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)  # eval: ρ = 1
            total += float(loss) * n  # the loss is a mean over the n real tokens
            count += n
        return total / count

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict[str, float]:
        data = self.splits.get(split)
        if data is None or len(data) == 0:
            return {}
        return self._evaluate(model, data)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """During training: ``data.valid_subset`` pairs spread evenly over the validation split (0: all of it),
        greedy-decoded; the final figures and ``dnn eval`` use the whole split."""
        data, n = self.splits.get("valid"), self.cfg.data.valid_subset
        if data is None or len(data) == 0:
            return {}
        if n and n < len(data):
            picks = [i * len(data) // n for i in range(n)]  # evenly spaced: every part of the file is seen
            data = Seq2SeqSplit(*([getattr(data, f.name)[i] for i in picks] for f in dataclasses.fields(data)))
        return self._evaluate(model, data)

    def _evaluate(self, model: nn.Module, data: Seq2SeqSplit) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs = self._greedy_outputs(model, data)
                loss = self._teacher_forced_loss(model, data)
        finally:
            model.train(was_training)
        texts = [self.tgt_tokenizer.detokenize(tokens) for tokens in outputs]
        return {
            "exact_match": metrics.exact_match(texts, data.reference_texts),
            "token_accuracy": metrics.token_accuracy(outputs, data.references),
            "bleu": metrics.bleu(texts, data.reference_texts, self.bleu_tokenize)[0],
            "chrf": metrics.chrf(texts, data.reference_texts)[0],
            "loss": loss,
        }

    def accuracy_by_length(self, model: nn.Module, split: str = "test", limit: int = 2000) -> LengthAccuracy | None:
        """Exact match per source length (in tokens), shortest first, over the first ``limit`` sentences of
        ``split``, and how many sentences have each length: where a fixed-size encoding breaks down."""
        data = self.splits.get(split)
        if data is None or len(data) == 0:
            return None
        if len(data) > limit:
            data = Seq2SeqSplit(**{f.name: getattr(data, f.name)[:limit] for f in dataclasses.fields(data)})
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs = self._greedy_outputs(model, data)
        finally:
            model.train(was_training)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, ids in enumerate(data.src_ids):
            groups[len(ids)].append(i)
        detok = self.tgt_tokenizer.detokenize
        accuracy = {
            n: metrics.exact_match([detok(outputs[i]) for i in idx], [data.reference_texts[i] for i in idx])
            for n, idx in sorted(groups.items())
        }
        return LengthAccuracy(accuracy, {n: len(idx) for n, idx in sorted(groups.items())})

    def figures(self, model: nn.Module, predictor: Seq2SeqPredictor) -> list[Figure]:
        """The attention heatmaps of three test sentences (the shortest, the longest, one between), if any."""
        if not predictor.has_attention():
            return []
        figures = [predictor.attention_figure(text, f"test sentence {text!r}") for text in self.sample_inputs()]
        for i, figure in enumerate(figures, 1):
            figure.stem = f"attention_{i}"
        return figures

    def sample_inputs(self, split: str = "test", n: int = 3) -> list[str]:
        """``n`` source sentences of the split: the shortest, the longest and ones in between (by tokens)."""
        data = self.splits.get(split)
        if data is None or len(data) == 0:
            return []
        order = sorted(range(len(data)), key=lambda i: (len(data.src_ids[i]), i))
        picks = sorted({order[round(j * (len(order) - 1) / max(1, n - 1))] for j in range(n)})
        return [data.sources[i] for i in sorted(picks, key=lambda i: len(data.src_ids[i]))]

    # -- artefacts saved with the run, and prediction ----------------------------------------------------------

    def save_artifacts(self, run_dir: RunDir) -> None:
        self.src_vocab.save(run_dir.output(FILES["source_vocab"]))
        self.tgt_vocab.save(run_dir.output(FILES["target_vocab"]))
        self.src_tokenizer.save(run_dir.output(FILES["source_tokenizer"]))
        self.tgt_tokenizer.save(run_dir.output(FILES["target_tokenizer"]))
        info = {
            "task": "Seq2SeqTask",
            "source": self.cfg.data.source or self.cfg.data.train,
            "max_target_length": max(len(t) for t in self.splits["train"].references),
            "max_source_length": max(len(ids) for ids in self.splits["train"].src_ids),
            "files": FILES,
            "signatures": self.signatures,
        }
        run_dir.write_json(TASK, info)

    @classmethod
    def load_predictor(cls, run_dir: RunDir, model: nn.Module) -> Seq2SeqPredictor:
        config = model.config
        src_tok, tgt_tok, src_vocab, tgt_vocab, max_target, max_source = load_artifacts(
            run_dir, config.src_vocab_size, config.tgt_vocab_size
        )
        return Seq2SeqPredictor(model, src_tok, tgt_tok, src_vocab, tgt_vocab, max_target, max_source)
