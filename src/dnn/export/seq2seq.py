"""The encoder–decoder exports: two graphs, split where :mod:`dnn.decoding` splits the model, so that greedy
decoding is a loop over the decoder step. B, S (source length) and t (steps decoded) are dynamic::

    encoder       src (B, S) int64, src_lengths (B,) int64 → the step's first state, then its context
    decoder_step  prev_token (B,) int64, state…, context… → logits (B, V), next_<state>…, attention (B, S)

    state = encoder(src, src_lengths)            the names in manifest["decoding"]["state"], then ["context"]
    y_0 = <sos> = 2; for t = 1 … max_len:
        logits, next_state…, attention = decoder_step(y_{t−1}, state…, context…)
        y_t = argmax logits; state ← next_state; a row is done at <eos> = 3

dnn's RNN encoder–decoder (model ``seq2seq``): the state is hidden (L, B, H), [cell (L, B, H): LSTM], [feed (B,
H): input feeding]; the context, with attention, is memory (B, S, M), mask (B, S) and projected_memory (the
attention's key projection), read unchanged by every step; without attention there is no context and no attention
output.

The Transformer (model ``transformer_seq2seq``) steps with its self-attention key/value cache as explicit inputs and
outputs: the state is past_keys and past_values (L, B, h, t, d), each decoder layer's keys and values of the t
steps decoded so far (the encoder gives them empty, t = 0; a step returns them one step longer, t + 1, and reads
its own position t off their length); the context is memory_keys and memory_values (L, B, h, S, d), each decoder
layer's cross-attention keys and values of the encoder's output, and mask (B, S). So each step costs one position,
as in :meth:`~dnn.models.transformer.TransformerSeq2Seq.decode_step`, not the whole prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dnn.errors import ConfigError
from dnn.export.graphs import Axes, Exporter, Graph, make_graph, token_batch
from dnn.io import EOS_ID, PAD_ID, SOS_ID
from dnn.models.seq2seq import DecoderState, Seq2Seq
from dnn.models.transformer import TransformerSeq2Seq, TransformerState
from dnn.run import LoadedRun
from dnn.rundir import TASK, RunDir
from dnn.tasks.seq2seq import MARGIN

__all__ = ["SEQ2SEQ", "DecoderStepGraph", "EncoderGraph", "TransformerEncoderGraph", "TransformerStepGraph"]


# -- dnn's RNN encoder–decoder -------------------------------------------------------------------------------------


class EncoderGraph(nn.Module):
    """``Seq2Seq.encode`` with its :class:`DecoderState` as a flat tuple: hidden, [cell], [feed], [context]."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model
        self.state_names, self.context_names = state_names(model), context_names(model)

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        return flatten_state(self.model.encode(src, src_lengths), self.model)


class DecoderStepGraph(nn.Module):
    """``Seq2Seq.decode_step`` with its state as explicit inputs and outputs (see the module docstring)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model
        self.state_names, self.context_names = state_names(model), context_names(model)

    def forward(self, prev_token: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        named = dict(zip((*self.state_names, *self.context_names), state, strict=True))
        hidden = (named["hidden"], named["cell"]) if "cell" in named else named["hidden"]
        decoder_state = DecoderState(
            hidden, named.get("memory"), named.get("mask"), named.get("projected_memory"), named.get("feed")
        )
        logits, new, weights = self.model.decode_step(prev_token, decoder_state)  # (B, V), ..., (B, S) | None
        out = [logits, *flatten_state(new, self.model)[: len(self.state_names)]]
        return (*out, weights) if weights is not None else tuple(out)


def state_names(model: Seq2Seq) -> list[str]:
    """What a decoder step changes: hidden (L, B, H), cell (LSTM), feed (B, H) with input feeding."""
    c = model.config
    return ["hidden", *(["cell"] if c.cell == "lstm" else []), *(["feed"] if c.input_feeding else [])]


def context_names(model: Seq2Seq) -> list[str]:
    """What every step reads unchanged: the memory, its mask and the key projection (models with attention)."""
    return [] if model.config.attention == "none" else ["memory", "mask", "projected_memory"]


def flatten_state(state: DecoderState, model: Seq2Seq) -> tuple[Tensor, ...]:
    hidden = state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)  # (L, B, H) each
    named = {"hidden": hidden[0], "cell": hidden[-1], "feed": state.feed, "memory": state.memory,
             "mask": state.mask, "projected_memory": state.projected_memory}  # fmt: skip
    return tuple(named[name] for name in (*state_names(model), *context_names(model)))


STATE_AXES = {"hidden": (None, "B", None), "cell": (None, "B", None), "feed": ("B", None),
              "memory": ("B", "S", None), "mask": ("B", "S"), "projected_memory": ("B", "S", None)}  # fmt: skip


# -- the Transformer, with its key/value cache ---------------------------------------------------------------------


class TransformerEncoderGraph(nn.Module):
    """``TransformerSeq2Seq.encode`` as tensors: the empty cache past_keys, past_values ``(L, B, h, 0, d)``, then
    memory_keys, memory_values ``(L, B, h, S, d)`` and mask ``(B, S)``."""

    state_names = ("past_keys", "past_values")
    context_names = ("memory_keys", "memory_values", "mask")

    def __init__(self, model: TransformerSeq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        s = self.model.encode(src, src_lengths)
        return (torch.stack(s.past_keys), torch.stack(s.past_values), torch.stack(s.memory_keys),
                torch.stack(s.memory_values), s.mask)  # (L, B, h, 0, d) ×2, (L, B, h, S, d) ×2, (B, S)  # fmt: skip


class TransformerStepGraph(nn.Module):
    """``TransformerSeq2Seq.decode_step`` with the cache as explicit tensors: prev_token ``(B,)``, past_keys,
    past_values ``(L, B, h, t, d)``, memory_keys, memory_values ``(L, B, h, S, d)``, mask ``(B, S)`` → logits
    ``(B, V)``, next_past_keys, next_past_values ``(L, B, h, t + 1, d)``, attention ``(B, S)``."""

    state_names, context_names = TransformerEncoderGraph.state_names, TransformerEncoderGraph.context_names

    def __init__(self, model: TransformerSeq2Seq):
        super().__init__()
        self.model = model

    def forward(self, prev_token: Tensor, past_keys: Tensor, past_values: Tensor, memory_keys: Tensor,
                memory_values: Tensor, mask: Tensor) -> tuple[Tensor, ...]:  # fmt: skip
        position = past_keys.shape[3]  # t: prev_token's position is the number of steps in the cache
        state = TransformerState(tuple(memory_keys.unbind(0)), tuple(memory_values.unbind(0)), mask,
                                 tuple(past_keys.unbind(0)), tuple(past_values.unbind(0)), position)  # fmt: skip
        logits, new, weights = self.model.decode_step(prev_token, state)  # (B, V), ..., (B, S)
        return logits, torch.stack(new.past_keys), torch.stack(new.past_values), weights  # (L, B, h, t + 1, d)


CACHE, MEMORY_KV = (None, "B", None, "t", None), (None, "B", None, "S", None)
TRANSFORMER_AXES = {"past_keys": CACHE, "past_values": CACHE, "memory_keys": MEMORY_KV, "memory_values": MEMORY_KV,
                    "mask": ("B", "S")}  # fmt: skip


# -- the graphs, by model ------------------------------------------------------------------------------------------

Halves = tuple[nn.Module, nn.Module, list[Axes], list[Axes], list[Axes]]


def _halves(run: LoadedRun) -> Halves:
    """The encoder and decoder-step modules of the run's model, and the axes of the encoder's outputs, of the
    step's inputs after prev_token (the state, then the context) and of its next_<state> outputs."""
    model = run.model
    if isinstance(model, TransformerSeq2Seq):
        step = TransformerStepGraph(model)
        inputs = [TRANSFORMER_AXES[name] for name in (*step.state_names, *step.context_names)]
        empty = (None, "B", None, None, None)  # the cache before the first step: t = 0
        longer = (None, "B", None, "t+1", None)
        return TransformerEncoderGraph(model), step, [empty, empty, *inputs[2:]], inputs, [longer, longer]
    if isinstance(model, Seq2Seq):
        step = DecoderStepGraph(model)
        inputs = [STATE_AXES[name] for name in (*step.state_names, *step.context_names)]
        return EncoderGraph(model), step, inputs, inputs, [STATE_AXES[name] for name in step.state_names]
    raise ConfigError(
        f"{run.path}: dnn export handles the seq2seq models seq2seq (dnn's RNN encoder–decoder) and "
        f"transformer_seq2seq; this run's model is {run.cfg.model.name!r}"
    )


def _graphs(run: LoadedRun) -> list[Graph]:
    encoder, step, encoder_axes, step_axes, next_axes = _halves(run)
    encoder, step = encoder.eval(), step.eval()
    names, n_state = [*step.state_names, *step.context_names], len(step.state_names)
    src_vocab, tgt_vocab = run.model.config.src_vocab_size, run.model.config.tgt_vocab_size

    def sources(B: int, S: int) -> tuple[Tensor, ...]:
        return token_batch(B, S, src_vocab, seed=B * 1000 + S)

    def step_inputs(B: int, S: int) -> tuple[Tensor, ...]:
        """The state after S // 3 steps (from <sos>, then random words: a Transformer's cache is not empty) and the
        next word."""
        g = torch.Generator().manual_seed(B * 1000 + S)
        prev = torch.full((B,), SOS_ID, dtype=torch.long)
        with torch.no_grad():
            state = encoder(*sources(B, S))
            for _ in range(S // 3):
                state = (*step(prev, *state)[1 : 1 + n_state], *state[n_state:])
                prev = torch.randint(4 if tgt_vocab > 4 else 1, tgt_vocab, (B,), generator=g)
        return (prev, *state)

    outputs = ["logits", *(f"next_{name}" for name in step.state_names)]
    out_axes = [("B", None), *next_axes]
    if step.context_names:
        outputs, out_axes = [*outputs, "attention"], [*out_axes, ("B", "S")]
    return [
        make_graph("encoder", encoder, ["src", "src_lengths"], names, sources, [("B", "S"), ("B",)], encoder_axes),
        make_graph("decoder_step", step, ["prev_token", *names], outputs, step_inputs, [("B",), *step_axes],
                   out_axes),
    ]  # fmt: skip


def _files(run: LoadedRun, source: RunDir) -> dict[str, str]:
    info = source.read_json(TASK, "a seq2seq run's task.json", required=("files",))
    return {"task": TASK, **{str(k): str(v) for k, v in dict(info["files"]).items()}}


def _decoding(run: LoadedRun) -> dict[str, Any]:
    model, p = run.model, run.predictor
    _, step, *_ = _halves(run)
    out = {"sos_id": SOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID, "state": list(step.state_names),
           "context": list(step.context_names),
           "step_outputs": "logits, then next_<name> for each name of state, then attention (models with attention)",
           "max_len": f"max(max_target_length, 2·S) + {MARGIN} tokens for a batch of source length S",
           "max_target_length": p.max_target_length, "max_source_length": p.max_source_length}  # fmt: skip
    if isinstance(model, TransformerSeq2Seq):
        c = model.config
        shape = (
            "(L, B, h, t, d): the encoder gives past_keys and past_values empty (t = 0); each step returns "
            "them one step longer and reads its position t off their length"
        )
        out["cache"] = {"layers": c.num_decoder_layers, "heads": c.num_heads, "head_size": c.d_model // c.num_heads,
                        "shape": shape}  # fmt: skip
    return out


def _onnx_refusal(run: LoadedRun) -> str | None:
    stack = isinstance(run.model, Seq2Seq) and run.model.config.residual
    return "a residual recurrent stack cannot go to ONNX" if stack else None


SEQ2SEQ = Exporter(
    _graphs,
    _files,
    lambda run: {
        "pad_id": PAD_ID,
        "input": "ids of the source vocabulary file (<unk> = 1), padded with <pad> = 0 at the end",
    },  # fmt: skip
    _decoding,
    _onnx_refusal,
)
