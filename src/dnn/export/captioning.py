"""The captioning export (Show, Attend and Tell, model ``caption_attention``): an image encoder and one decoder step,
split where :mod:`dnn.decoding` splits the model, so that greedy captioning is a loop over the step. B is dynamic;
the image size is the training canvas (``preprocessing``)::

    encoder       images (B, C, H_img, W_img) float32 in [0, 1] → hidden (L, B, H), [cell (L, B, H): LSTM],
                  memory (B, S, D), projected_memory (B, S, P)       the normalisation inside; S = h·w positions
    decoder_step  prev_token (B,) int64, hidden, [cell], memory, projected_memory
                  → logits (B, V), next_hidden, [next_cell], attention (B, S)   α over the positions, row by row

    state = encoder(images)                      hidden, [cell], then the context: memory, projected_memory
    y_0 = <sos> = 2; for t = 1 … max_len:
        logits, next_hidden, [next_cell], attention = decoder_step(y_{t−1}, state…, context…)
        y_t = argmax logits; state ← next_*; a row is done at <eos> = 3
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dnn.export.graphs import Exporter, Graph, make_graph
from dnn.io import EOS_ID, PAD_ID, SOS_ID
from dnn.models.captioning import CaptionModel, CaptionState
from dnn.run import LoadedRun
from dnn.rundir import TASK, RunDir

__all__ = ["CAPTION", "CaptionEncoderGraph", "CaptionStepGraph"]

CONTEXT = ["memory", "projected_memory"]


def _state_names(model: CaptionModel) -> list[str]:
    """What a step changes: hidden (L, B, H), and cell (L, B, H) for an LSTM."""
    return ["hidden", *(["cell"] if model.config.cell == "lstm" else [])]


def _flatten(state: CaptionState) -> tuple[Tensor, ...]:
    hidden = state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)  # (L, B, H) each
    return *hidden, state.annotations, state.projected


class CaptionEncoderGraph(nn.Module):
    """``CaptionModel.encode(normalize(images))`` as tensors: hidden, [cell], memory (the annotations a_1 … a_S),
    projected_memory (the attention's key projection of them)."""

    def __init__(self, model: CaptionModel, normalize: nn.Module):
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return _flatten(self.model.encode(self.normalize(images)))


class CaptionStepGraph(nn.Module):
    """``CaptionModel.decode_step`` with its state as explicit inputs and outputs (module docstring)."""

    def __init__(self, model: CaptionModel, grid: tuple[int, int]):
        super().__init__()
        self.model, self.grid = model, grid
        self.state_names = _state_names(model)

    def forward(self, prev_token: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        *hidden, memory, projected = state
        hidden = tuple(hidden) if len(hidden) == 2 else hidden[0]  # LSTM: (h, c)
        logits, new, alpha = self.model.decode_step(prev_token, CaptionState(hidden, memory, projected, self.grid))
        return logits, *_flatten(new)[: len(self.state_names)], alpha  # (B, V), (L, B, H)…, (B, S)


def _images(run: LoadedRun, B: int, seed: int) -> Tensor:
    p = run.predictor
    return torch.rand(B, p.channels, *p.image_size, generator=torch.Generator().manual_seed(seed))  # (B, C, H, W)


def _graphs(run: LoadedRun) -> list[Graph]:
    model, p = run.model, run.predictor
    encoder = CaptionEncoderGraph(model, p.normalize).eval()
    with torch.no_grad():
        grid = model.encode(p.normalize(_images(run, 1, 0))).grid
    step = CaptionStepGraph(model, grid).eval()
    names = [*step.state_names, *CONTEXT]
    axes = {"hidden": (None, "B", None), "cell": (None, "B", None), "memory": ("B", None, None),
            "projected_memory": ("B", None, None)}  # fmt: skip

    def images(B: int, T: int) -> tuple[Tensor, ...]:
        return (_images(run, B, B * 1000 + T),)

    def step_inputs(B: int, T: int) -> tuple[Tensor, ...]:
        """The state after ``T // 3`` steps (from <sos>, then given words), and the next word."""
        g = torch.Generator().manual_seed(B * 1000 + T)
        prev = torch.full((B,), SOS_ID, dtype=torch.long)
        with torch.no_grad():
            state = encoder(*images(B, T))
            for _ in range(T // 3):
                out = step(prev, *state)
                state = (*out[1 : 1 + len(step.state_names)], *state[len(step.state_names) :])
                prev = torch.randint(4, model.config.vocab_size, (B,), generator=g)
        return (prev, *state)

    return [
        make_graph("encoder", encoder, ["images"], names, images, [("B", None, None, None)],
                   [axes[n] for n in names]),
        make_graph("decoder_step", step, ["prev_token", *names], ["logits", *(f"next_{n}" for n in step.state_names),
                   "attention"], step_inputs, [("B",), *(axes[n] for n in names)],
                   [("B", None), *(axes[n] for n in step.state_names), ("B", None)]),
    ]  # fmt: skip


def _files(run: LoadedRun, source: RunDir) -> dict[str, str]:
    info = source.read_json(TASK, "a captioning run's task.json", required=("vocab",))
    return {"task": TASK, "vocab": str(info["vocab"])}


def _preprocessing(run: LoadedRun) -> dict[str, Any]:
    p = run.predictor
    height, width = p.image_size
    return {"height": height, "width": width, "channels": p.channels, "normalize": p.normalize.to_dict(),
            "input": "images (B, C, height, width), float32 in [0, 1] (grey, resized to the training canvas); the "
                     "normalisation is inside the graph",
            "output": "word ids of the vocabulary file, one per step until <eos>"}  # fmt: skip


def _decoding(run: LoadedRun) -> dict[str, Any]:
    model, p = run.model, run.predictor
    with torch.no_grad():
        h, w = model.encode(p.normalize(_images(run, 1, 0))).grid
    return {"sos_id": SOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID, "state": _state_names(model), "context": CONTEXT,
            "step_outputs": "logits, then next_<name> for each name of state, then attention",
            "max_len": p.max_len, "grid": [h, w],
            "attention": "per step, the weights over the S = h·w feature-map positions, row by row over grid"
            }  # fmt: skip


CAPTION = Exporter(_graphs, _files, _preprocessing, _decoding)
