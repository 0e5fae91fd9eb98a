"""Data for dnn's models: users' files, built-in tasks, vocabularies, tokenizers and batching.

- text: :class:`Vocab`, :class:`LabelVocab`, tokenizers (character, word, BPE), streaming readers for CSV/TSV
  classification, ``aclImdb/``, CoNLL tagging, parallel corpora and plain text (``dnn.data.text``);
- images: :class:`ImageFolder`, scikit-learn's digits, augmentation, normalisation (``dnn.data.images``);
- built-in: the adding problem, copy-memory, text tasks (reverse, sort, addition, dates) and the pydoc corpus;
- batching: padding collates, length bucketing, streams for truncated BPTT (``dnn.data.batching``).
"""

from dnn.data.batching import BucketBatchSampler, pad_batch, stream_batches
from dnn.data.corpus import pydoc_corpus
from dnn.data.images import ImageFolder, digits_splits, load_digits_dataset
from dnn.data.splits import Splits, split_indices, split_list
from dnn.data.synthetic import adding_problem, copy_memory
from dnn.data.text import (
    read_classification,
    read_conll,
    read_imdb,
    read_lines,
    read_parallel_files,
    read_parallel_tsv,
    read_text,
)
from dnn.data.text_tasks import list_tasks, make_task, task_splits
from dnn.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, make_tokenizer
from dnn.data.vocab import LabelVocab, Vocab

__all__ = [
    "BPETokenizer",
    "BucketBatchSampler",
    "CharTokenizer",
    "ImageFolder",
    "LabelVocab",
    "Splits",
    "Vocab",
    "WordTokenizer",
    "adding_problem",
    "copy_memory",
    "digits_splits",
    "list_tasks",
    "load_digits_dataset",
    "make_task",
    "make_tokenizer",
    "pad_batch",
    "pydoc_corpus",
    "read_classification",
    "read_conll",
    "read_imdb",
    "read_lines",
    "read_parallel_files",
    "read_parallel_tsv",
    "read_text",
    "split_indices",
    "split_list",
    "stream_batches",
    "task_splits",
]
