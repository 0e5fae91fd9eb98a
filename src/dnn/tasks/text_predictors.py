"""The predictors of the text tasks (:mod:`dnn.tasks.text`): a trained classifier or tagger with its vocabulary.

``TextClassifierPredictor`` (kind ``classify``) gives every text its most likely label and that label's
probability; ``TaggingPredictor`` (kind ``tag``) gives every whitespace-separated token of a text its tag. Both
read their inputs in batches of ``EVAL_BATCH`` padded sequences, on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dnn.data.batching import pad_batch
from dnn.data.tokenizers import Tokenizer
from dnn.data.vocab import LabelVocab, Vocab
from dnn.device import model_device, to_device
from dnn.errors import ConfigError, DataError
from dnn.tasks.base import Predictor

__all__ = ["EVAL_BATCH", "TaggingPredictor", "TextClassifierPredictor", "check_texts", "on_model"]

EVAL_BATCH = 256


def on_model(model: nn.Module, *tensors: Tensor) -> tuple[Tensor, ...]:
    """``tensors`` on the model's device (evaluation and prediction build their batches on the CPU)."""
    return to_device(tensors, model_device(model))


def check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise ConfigError("texts must be a list of strings, got a single str")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"texts[{i}] must be a str, got {type(text).__name__}")
        if not text.strip():
            raise DataError(f"input {i + 1}: empty input, expected some text")


class TextClassifierPredictor(Predictor):
    """A trained text classifier with its tokenizer, vocabulary and labels.

    Unknown words become ``<unk>``. ``max_length`` (set when training truncated its texts) cuts the tokens the
    same way; otherwise the whole text is read.
    """

    kind = "classify"
    modality = "text"
    inputs = "texts"
    outputs = "the most likely label and its probability"

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, vocab: Vocab, labels: LabelVocab,
                 max_length: int | None = None):  # fmt: skip
        self.model, self.tokenizer, self.vocab, self.labels, self.max_length = (
            model, tokenizer, vocab, labels, max_length,
        )  # fmt: skip

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.tokenize(text))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        check_texts(texts)
        return [self.vocab.encode(self.tokenizer.tokenize(text)[: self.max_length]) for text in texts]

    def predict_proba(self, texts: Sequence[str]) -> Tensor:
        """Class probabilities ``(N, K)``, columns in the order of ``labels.labels``."""
        ids = self.encode(texts)
        self.model.eval()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(ids), EVAL_BATCH):
                tokens, lengths, _ = pad_batch(ids[start : start + EVAL_BATCH])  # (B, T), (B,)
                logits = self.model(*on_model(self.model, tokens, lengths)).float()  # (B, K)
                rows.append(torch.softmax(logits, -1).cpu())
        return torch.cat(rows) if rows else torch.empty(0, len(self.labels))

    def predict(self, texts: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        """``[{"input", "label", "probability"}]``: the most likely label of every text and its probability."""
        probs = self.predict_proba(texts)
        out = []
        for text, p in zip(texts, probs):
            top = int(p.argmax())
            out.append({"input": text, "label": self.labels.decode(top), "probability": float(p[top])})
        return out

    predict_texts = predict  # the name earlier versions used


class TaggingPredictor(Predictor):
    """A trained tagger with its vocabulary and tags; a text's tokens are its whitespace-separated words."""

    kind = "tag"
    modality = "text"
    inputs = "texts (tokens separated by whitespace)"
    outputs = "one tag per token"

    def __init__(self, model: nn.Module, vocab: Vocab, labels: LabelVocab, lowercase: bool = False):
        self.model, self.vocab, self.labels, self.lowercase = model, vocab, labels, lowercase

    def text(self, row: dict[str, Any]) -> str:
        return " ".join(f"{t}/{g}" for t, g in zip(row["tokens"], row["tags"]))

    def tag(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """One tag per token of every sentence (a list of tokens)."""
        ids = [self.vocab.encode(t.lower() if self.lowercase else t for t in tokens) for tokens in sentences]
        self.model.eval()
        out: list[list[str]] = []
        with torch.inference_mode():
            for start in range(0, len(ids), EVAL_BATCH):
                tokens, lengths, _ = pad_batch(ids[start : start + EVAL_BATCH])  # (B, T), (B,)
                best = self.model(*on_model(self.model, tokens, lengths)).argmax(-1).cpu()  # (B, T)
                out += [[self.labels.decode(k) for k in row[:n]] for row, n in zip(best.tolist(), lengths.tolist())]
        return out

    def predict(self, texts: Sequence[str], **options: Any) -> list[dict[str, Any]]:
        """``[{"input", "tokens", "tags"}]``: every text split at whitespace, one tag per token."""
        check_texts(texts)
        sentences = [text.split() for text in texts]
        return [
            {"input": text, "tokens": tokens, "tags": tags}
            for text, tokens, tags in zip(texts, sentences, self.tag(sentences))
        ]

    predict_texts = predict  # the name earlier versions used
