"""Limits with clear errors: nothing a user feeds dnn takes unbounded time or memory. Each case is one line
naming the file, line or field, and what to do instead."""

from __future__ import annotations

import os

import pytest
import torch

from dnn.data.images import load_image
from dnn.data.text import MAX_SENTENCE_TOKENS, iter_lines, read_conll
from dnn.data.tokenizers import make_tokenizer
from dnn.data.vocab import Vocab
from dnn.errors import ConfigError, DataError
from dnn.io import check_file
from dnn.run_config import RunConfig
from dnn.tasks import make_task
from dnn.tasks.language import MAX_GENERATE, TextGenerator
from dnn.tasks.seq2seq import Seq2SeqPredictor


def test_a_line_of_megabytes_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_bytes(b"a\tb\n" + b"x" * (2 << 20) + b"\tc\n")
    with pytest.raises(DataError, match=r"corpus\.tsv:2: a line of more than 1,048,576 bytes"):
        list(iter_lines(path))


def test_a_conll_sentence_of_200k_tokens_is_refused_naming_where_it_starts(tmp_path):
    path = tmp_path / "tags.conll"
    path.write_text("".join(f"w{i} N\n" for i in range(MAX_SENTENCE_TOKENS + 5)))
    with pytest.raises(DataError, match=r"tags\.conll:1: a sentence of more than 10,000 tokens"):
        list(read_conll(path))


def test_more_labels_than_examples_is_refused_before_anything_is_built(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"review {i},label{i}\n" for i in range(60)))
    cfg = RunConfig.from_dict({"data": {"task": "text_classification", "train": str(path)},
                               "model": {"name": "sequence_classifier"}})  # fmt: skip
    with pytest.raises(DataError, match=r"reviews\.csv: \d+ labels for \d+ training examples; expected at least 2"):
        make_task(cfg).prepare(lambda message: None)


def test_a_translation_input_far_longer_than_training_is_refused():
    tokenizer = make_tokenizer("char")
    vocab = Vocab.build([list("abc")])
    predictor = Seq2SeqPredictor(None, tokenizer, tokenizer, vocab, vocab, 10, max_source_length=40)
    with pytest.raises(DataError, match="input 1 has 5,000 tokens; this model accepts at most 40"):
        predictor.translate(["a" * 5000])


@pytest.mark.parametrize("length", [0, MAX_GENERATE + 1, 100_000_000_000, 2.5])
def test_a_generation_length_out_of_range_is_one_line(length):
    generator = TextGenerator(None, make_tokenizer("char"), Vocab.build([list("ab")]), [2], [])
    with pytest.raises(ConfigError, match=r"length must be an integer in \[1, 100,000\]"):
        generator.generate("a", length=length)


def test_a_fifo_is_never_read(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        check_file(fifo)
    with pytest.raises(DataError, match=r"pipe\.png: not a regular file, expected a PNG or JPEG image"):
        load_image(fifo, 8, grayscale=True)


def test_a_confusion_matrix_of_too_many_classes_is_refused_not_allocated():
    from dnn.inspect.collect import MAX_CLASSES, confusion
    from dnn.tasks.base import ClassPredictions

    class Many:
        def predictions(self, model, split, limit):
            return ClassPredictions([str(i) for i in range(100_000)], torch.zeros(3, dtype=torch.int64),
                                    torch.zeros(3, dtype=torch.int64))  # fmt: skip

    with pytest.raises(
        ConfigError, match=f"100,000 classes are too many for a confusion matrix \\(at most {MAX_CLASSES}"
    ):
        confusion(None, Many())


def test_a_folder_of_one_class_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "only" / "cat").mkdir(parents=True)
    for i in range(4):
        Image.new("L", (8, 8), i * 40).save(tmp_path / "only" / "cat" / f"{i}.png")
    cfg = RunConfig.from_dict({"data": {"task": "image_folder", "train": str(tmp_path / "only")},
                               "model": {"name": "convnet"}})  # fmt: skip
    with pytest.raises(DataError, match=r"only: one class \(cat\); a classifier needs at least 2 sub-folders"):
        make_task(cfg).prepare(lambda message: None)
