"""The one-graph exports: image classifiers, text classifiers and taggers, video classifiers.

image     model  images (B, C, H_img, W_img) float32 in [0, 1] → logits (B, K); the normalisation inside
classify  model  tokens (B, T) int64, lengths (B,) int64 → logits (B, K)
tag       model  tokens (B, T) int64, lengths (B,) int64 → logits (B, T, K); rows past a length: ignore
video     model  clips (B, T, C, H_img, W_img) float32 in [0, 1], lengths (B,) int64 → logits (B, K); T is the
                 frame count (dynamic), frames past a clip's length are ignored; the normalisation inside
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dnn.export.graphs import Exporter, Graph, make_graph, padded_lengths, token_batch
from dnn.io import PAD_ID
from dnn.run import LoadedRun
from dnn.rundir import TASK
from dnn.tasks.text import FILES as TEXT_FILES

__all__ = ["CLASSIFY", "IMAGE", "TAG", "VIDEO", "NormalizedGraph"]


class NormalizedGraph(nn.Module):
    """``model(normalize(x), *rest)``: the run's own normalisation inside the graph, inputs in [0, 1]."""

    def __init__(self, model: nn.Module, normalize: nn.Module):
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, x: Tensor, *rest: Tensor) -> Tensor:
        return self.model(self.normalize(x), *rest)  # (B, K)


# -- images --------------------------------------------------------------------------------------------------------


def _image_graphs(run: LoadedRun) -> list[Graph]:
    p = run.predictor
    module = NormalizedGraph(run.model, p.normalize).eval()

    def images(B: int, T: int) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(B * 1000 + T)
        return (torch.rand(B, p.channels, p.image_size, p.image_size, generator=g),)

    return [make_graph("model", module, ["images"], ["logits"], images, [("B", None, None, None)], [("B", None)])]


def _image_preprocessing(run: LoadedRun) -> dict[str, Any]:
    p = run.predictor
    return {"image_size": p.image_size, "channels": p.channels,
            "input": "images (B, C, image_size, image_size), float32 in [0, 1]; the normalisation is inside the "
                     "graph", "normalize": p.normalize.to_dict(), "classes": list(p.classes),
            "output": "logits (B, K); softmax gives the class probabilities, columns in the order of classes"
            }  # fmt: skip


IMAGE = Exporter(_image_graphs, lambda run, source: {"task": TASK}, _image_preprocessing)


# -- text classifiers and taggers ----------------------------------------------------------------------------------

TOKENS = {"pad_id": PAD_ID, "input": "ids of the vocabulary file (<unk> = 1), padded with <pad> = 0 at the end"}


def _sequence_graphs(logits_axes: tuple[str | None, ...]):
    def graphs(run: LoadedRun) -> list[Graph]:
        vocab_size = run.model.config.vocab_size

        def tokens(B: int, T: int) -> tuple[Tensor, ...]:
            return token_batch(B, T, vocab_size, seed=B * 1000 + T)

        return [make_graph("model", run.model, ["tokens", "lengths"], ["logits"], tokens, [("B", "T"), ("B",)],
                           [logits_axes])]  # fmt: skip

    return graphs


def _joined_stack(run: LoadedRun) -> str | None:
    """Residual and dense stacks run the kernel one layer at a time on packed data with sums or concatenations
    between the layers, which the exporter cannot map onto ONNX's RNN operators with ``sequence_lens``."""
    c = run.model.config
    joined = "residual" if c.residual else "dense" if c.dense else None
    return None if joined is None else f"a {joined} recurrent stack cannot go to ONNX"


CLASSIFY = Exporter(
    _sequence_graphs(("B", None)),
    lambda run, source: dict(TEXT_FILES),
    lambda run: {
        **TOKENS,
        "max_length": run.predictor.max_length,
        "output": "logits (B, K), columns in the order of labels.json",
    },  # fmt: skip
    onnx_refusal=_joined_stack,
)
TAG = Exporter(
    _sequence_graphs(("B", "T", None)),
    lambda run, source: {role: TEXT_FILES[role] for role in ("vocab", "labels", "task")},
    lambda run: {
        **TOKENS,
        "lowercase": run.predictor.lowercase,
        "output": "logits (B, T, K); rows past a length mean nothing",
    },  # fmt: skip
    onnx_refusal=_joined_stack,
)


# -- video ---------------------------------------------------------------------------------------------------------


def _video_graphs(run: LoadedRun) -> list[Graph]:
    p, model = run.predictor, run.model
    module = NormalizedGraph(model, p.normalize).eval()
    C, size = model.config.in_channels, p.frame_size

    def clips(B: int, T: int) -> tuple[Tensor, ...]:
        """Clips ``(B, T, C, size, size)`` in [0, 1], blank after each one's length (a padded batch, as
        :meth:`~dnn.tasks.video.VideoPredictor.predict_files` makes one), and the lengths ``(B,)``."""
        g = torch.Generator().manual_seed(B * 1000 + T)
        lengths = padded_lengths(B, T)  # (B,)
        x = torch.rand(B, T, C, size, size, generator=g)  # (B, T, C, H_img, W_img)
        x.masked_fill_((torch.arange(T) >= lengths.unsqueeze(1))[:, :, None, None, None], 0.0)
        return x, lengths

    return [make_graph("model", module, ["clips", "lengths"], ["logits"], clips,
                       [("B", "T", None, None, None), ("B",)], [("B", None)])]  # fmt: skip


def _video_preprocessing(run: LoadedRun) -> dict[str, Any]:
    p = run.predictor
    return {"frame_size": p.frame_size, "channels": run.model.config.in_channels, "frames": p.frames,
            "input": "clips (B, T, C, frame_size, frame_size), float32 in [0, 1] (grey frames resized to frame_size); "
                     "lengths (B,): the real frames of each clip, the rest padding at the end. Any T ≥ 1; training "
                     "clips had `frames` frames. The normalisation is inside the graph",
            "normalize": p.normalize.to_dict(), "classes": list(p.classes),
            "output": "logits (B, K); softmax gives the class probabilities, columns in the order of classes"
            }  # fmt: skip


VIDEO = Exporter(_video_graphs, lambda run, source: {"task": TASK}, _video_preprocessing)
