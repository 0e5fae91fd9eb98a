"""Export a trained run for deployment: ONNX graphs (onnxruntime and other runtimes) or TorchScript (torch.jit.load).

    dnn export runs/NAME --format onnx|torchscript [--out DIR]        default DIR: runs/NAME/export/<format>

What is exported, by the run's kind (:attr:`dnn.tasks.base.Predictor.kind`); B, T and S are dynamic axes::

    image      model         images (B, C, H_img, W_img) float32 in [0, 1] → logits (B, K); normalisation inside
    classify   model         tokens (B, T) int64, lengths (B,) int64 → logits (B, K)
    tag        model         tokens (B, T) int64, lengths (B,) int64 → logits (B, T, K); rows past a length: ignore
    translate  encoder       src (B, S) int64, src_lengths (B,) int64 → the decoder's first state and its context
               decoder_step  prev_token (B,) int64, state, context → logits (B, V), the next state, attention (B, S)

Token batches are padded with <pad> = 0 at the end, lengths ≥ 1. The seq2seq graphs split the model where
:mod:`dnn.decoding` splits it, so greedy decoding is a loop over the decoder step (``manifest["decoding"]``)::

    state = encoder(src, src_lengths)            hidden (L, B, H), [cell], [feed] and the context: [memory (B, S, M),
                                                 mask (B, S), projected_memory], which every step reads unchanged
    y_0 = <sos> = 2; for t = 1 … max_len:
        logits, next_hidden, [next_cell], [next_feed], [attention] = decoder_step(y_{t−1}, state…, context…)
        y_t = argmax logits; state ← next_*; a row is done at <eos> = 3

``manifest.json`` beside the graphs names every input and output with its dtype and shape, the opset, the files a
deployment ships (copied beside the graphs: task.json, vocabularies, labels, tokenizers) and the largest difference
from the PyTorch model on a padded batch of another size than the one traced.

How: both formats trace the model with a padded batch. The recurrent runner decides in Python whether to pack a
batch (not when no row is padded); a padded example records the packed path, right for every batch. ONNX goes
through torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17), which turns the
packed LSTM / GRU / RNN kernels into ONNX's own operators with ``sequence_lens``, so lengths stay dynamic; the
torch.export-based one (torch's default) stops at the models' data-dependent input checks (``int(tokens.max())``)
and at packing. ONNX needs the ``onnx`` package: ``pip install 'dnn[export]'`` (with onnxruntime, for the check).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import dnn.layers.attention as attention_module
from dnn import __version__
from dnn.errors import ConfigError, DnnError
from dnn.io import EOS_ID, PAD_ID, SOS_ID, read_bytes_nofollow
from dnn.models.seq2seq import DecoderState, Seq2Seq
from dnn.run import LoadedRun, load_run
from dnn.rundir import EXPORT, EXPORT_MANIFEST, LOCK, TASK, RunDir
from dnn.tasks.base import PREDICTOR_KINDS
from dnn.tasks.seq2seq import MARGIN
from dnn.tasks.text import FILES as TEXT_FILES

__all__ = ["EXPORTABLE_KINDS", "FORMATS", "OPSET", "ExportResult", "export_run"]

FORMATS = ("onnx", "torchscript")
EXPORTABLE_KINDS = ("image", "classify", "tag", "translate")
OPSET = 17
TOLERANCE = 1e-4  # float32 graphs against the PyTorch model: measured differences are ~1e-6
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
TRACE_SHAPE, CHECK_SHAPE = (3, 6), (2, 9)  # (B, T) of the traced batch and of the batch the parity check runs

Log = Callable[[str], None]


@dataclass
class TensorSpec:
    """One input or output of a graph: ``shape`` holds an axis letter ("B", "T", "S") where the size is dynamic."""

    name: str
    dtype: str
    shape: list[str | int]

    @classmethod
    def of(cls, name: str, tensor: Tensor, letters: tuple[str | None, ...]) -> TensorSpec:
        shape = [letter if letter else size for letter, size in zip(letters, tensor.shape, strict=True)]
        return cls(name, str(tensor.dtype).removeprefix("torch."), shape)

    def dynamic_axes(self) -> dict[int, str]:
        return {i: size for i, size in enumerate(self.shape) if isinstance(size, str)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


@dataclass
class Graph:
    """A module to export, its inputs and outputs, and how to make an example batch of (B, T)."""

    name: str  # the file's stem
    module: nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    example: Callable[[int, int], tuple[Tensor, ...]]

    def to_dict(self, suffix: str) -> dict[str, Any]:
        return {"file": self.name + suffix, "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs]}  # fmt: skip


@dataclass
class ExportResult:
    """Where the export went: the folder, every file written in it, and the manifest (also in manifest.json)."""

    out: Path
    files: list[Path]
    manifest: dict[str, Any] = field(repr=False)  # its "parity" holds the measured max_abs_diff


# -- the graphs of each kind -------------------------------------------------------------------------------------


class ImageGraph(nn.Module):
    """logits = model(normalize(images)): the run's own normalisation inside the graph, images in [0, 1]."""

    def __init__(self, model: nn.Module, normalize: nn.Module):
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, images: Tensor) -> Tensor:
        return self.model(self.normalize(images))  # (B, K)


class EncoderGraph(nn.Module):
    """``Seq2Seq.encode`` with its :class:`DecoderState` as a flat tuple: hidden, [cell], [feed], [context]."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        return flatten_state(self.model.encode(src, src_lengths), self.model)


class DecoderStepGraph(nn.Module):
    """``Seq2Seq.decode_step`` with its state as explicit inputs and outputs (see the module docstring)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model
        self.state_names = state_names(model)
        self.context_names = context_names(model)

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


def token_batch(B: int, T: int, vocab_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Token ids ``(B, T)`` padded with <pad> at the end, and lengths ``(B,)``: the first row full, the others
    shorter (a padded batch, so that a trace records the packed path)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T] + [max(1, T - 2 * (b + 1)) for b in range(B - 1)])  # (B,)
    low = 4 if vocab_size > 4 else 1  # past the special tokens where the vocabulary has words
    tokens = torch.randint(low, vocab_size, (B, T), generator=g)  # (B, T)
    tokens.masked_fill_(torch.arange(T) >= lengths.unsqueeze(1), PAD_ID)
    return tokens, lengths


def _graphs(run: LoadedRun) -> list[Graph]:
    kind, model = run.predictor.kind, run.model
    if kind == "image":
        p = run.predictor
        module = ImageGraph(model, p.normalize).eval()

        def images(B: int, T: int) -> tuple[Tensor, ...]:
            g = torch.Generator().manual_seed(B * 1000 + T)
            return (torch.rand(B, p.channels, p.image_size, p.image_size, generator=g),)

        return [_graph("model", module, ["images"], ["logits"], images, [("B", None, None, None)], [("B", None)])]
    if kind in ("classify", "tag"):
        vocab_size = model.config.vocab_size

        def tokens(B: int, T: int) -> tuple[Tensor, ...]:
            return token_batch(B, T, vocab_size, seed=B * 1000 + T)

        logits = ("B", None) if kind == "classify" else ("B", "T", None)
        return [_graph("model", model, ["tokens", "lengths"], ["logits"], tokens, [("B", "T"), ("B",)], [logits])]
    if not isinstance(model, Seq2Seq):
        raise ConfigError(
            f"{run.path}: dnn export handles the RNN encoder–decoder (model seq2seq); this run's model is "
            f"{run.cfg.model['name']!r}"
        )
    return _seq2seq_graphs(model)


def _seq2seq_graphs(model: Seq2Seq) -> list[Graph]:
    encoder, step = EncoderGraph(model).eval(), DecoderStepGraph(model).eval()
    names = [*step.state_names, *step.context_names]
    src_vocab = model.config.src_vocab_size

    def sources(B: int, S: int) -> tuple[Tensor, ...]:
        return token_batch(B, S, src_vocab, seed=B * 1000 + S)

    def step_inputs(B: int, S: int) -> tuple[Tensor, ...]:
        with torch.no_grad():
            state = encoder(*sources(B, S))
        return (torch.full((B,), SOS_ID, dtype=torch.long), *state)

    outputs = ["logits", *(f"next_{name}" for name in step.state_names)]
    out_axes = [("B", None), *(STATE_AXES[name] for name in step.state_names)]
    if step.context_names:
        outputs, out_axes = [*outputs, "attention"], [*out_axes, ("B", "S")]
    return [
        _graph("encoder", encoder, ["src", "src_lengths"], names, sources, [("B", "S"), ("B",)],
               [STATE_AXES[name] for name in names]),
        _graph("decoder_step", step, ["prev_token", *names], outputs, step_inputs,
               [("B",), *(STATE_AXES[name] for name in names)], out_axes),
    ]  # fmt: skip


def _graph(name, module, inputs, outputs, example, in_axes, out_axes) -> Graph:
    args = example(*TRACE_SHAPE)
    with torch.no_grad():
        result = _as_tuple(module(*args))
    ins = [TensorSpec.of(n, t, axes) for n, t, axes in zip(inputs, args, in_axes, strict=True)]
    outs = [TensorSpec.of(n, t, axes) for n, t, axes in zip(outputs, result, out_axes, strict=True)]
    return Graph(name, module, ins, outs, example)


def _as_tuple(x: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)


# -- writing and checking ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _traceable_attention() -> Iterator[None]:
    """The concat score ``vᵀ tanh(p_t + k_s)`` as plain operations while a graph is traced.

    :func:`dnn.layers.attention.additive_scores` is a ``torch.autograd.Function`` (it saves memory in the
    backward pass), and a trace cannot hold a Python function: TorchScript refuses to save it. Its forward is this
    one line, which an inference graph needs and nothing more.
    """
    original = attention_module.additive_scores

    def plain(p: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return torch.matmul(torch.tanh(p.unsqueeze(2) + k.unsqueeze(1)), v.reshape(-1))  # (B, T, S)

    attention_module.additive_scores = plain
    try:
        yield
    finally:
        attention_module.additive_scores = original


@contextlib.contextmanager
def _quiet_trace() -> Iterator[None]:
    # The models' input checks read values in Python (int(tokens.max())); a trace warns that it records them as
    # constants, which is right here: they check, they do not compute. The TorchScript-based exporter warns that
    # it is deprecated in favour of the torch.export one, which cannot export these models (module docstring).
    with warnings.catch_warnings(), _traceable_attention(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*[Dd]ynamo.*")
        # "a batch_size other than 1 ... can cause an error": the initial state is made from the input's shape,
        # and the parity check runs another batch size than the one traced
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        yield


@contextlib.contextmanager
def _native_stderr_kept() -> Iterator[None]:
    """Hold what torch's C++ side writes to stderr (descriptor 2) meanwhile; print it only if the export fails.

    The exporter warns that it cannot infer the shapes of packed sequences (``prim::PackPadded``), which exist only
    while the graph is built (the ONNX LSTM reads ``sequence_lens``); the parity check runs the result.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            kept.seek(0)
            sys.stderr.write(kept.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _write_onnx(graph: Graph, out: RunDir, name: str) -> None:
    args = graph.example(*TRACE_SHAPE)
    axes = {spec.name: spec.dynamic_axes() for spec in (*graph.inputs, *graph.outputs)}

    def write(tmp: str) -> None:
        torch.onnx.export(
            graph.module, args, tmp, dynamo=False, opset_version=OPSET, input_names=[s.name for s in graph.inputs],
            output_names=[s.name for s in graph.outputs], dynamic_axes=axes, do_constant_folding=True,
        )  # fmt: skip

    with _quiet_trace(), _native_stderr_kept():
        out.write_hashed({name: write})


def _write_torchscript(graph: Graph, out: RunDir, name: str) -> None:
    with _quiet_trace():
        traced = torch.jit.trace(graph.module, graph.example(*TRACE_SHAPE), check_trace=False)
        out.write_hashed({name: lambda tmp: torch.jit.save(traced, tmp)})


def _runner(fmt: str, path: Path, graph: Graph) -> tuple[Callable[[tuple[Tensor, ...]], list[np.ndarray]], str]:
    """A function that runs the written graph on torch inputs, and the name of what runs it."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit is, in favour of torch.export
            loaded = torch.jit.load(str(path))

        def run_script(args: tuple[Tensor, ...]) -> list[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in _as_tuple(loaded(*args))]

        return run_script, f"torch.jit.load (torch {torch.__version__})"
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run_onnx(args: tuple[Tensor, ...]) -> list[np.ndarray]:
        return session.run(None, {spec.name: t.numpy() for spec, t in zip(graph.inputs, args, strict=True)})

    return run_onnx, f"onnxruntime {onnxruntime.__version__}"


def _max_abs_diff(fmt: str, path: Path, graph: Graph) -> tuple[float, str]:
    """The largest difference between the written graph and the PyTorch module on a padded batch of CHECK_SHAPE."""
    run, checked_with = _runner(fmt, path, graph)
    args = graph.example(*CHECK_SHAPE)
    with torch.no_grad():  # the model as dnn runs it (concat attention through its own autograd.Function)
        expected = _as_tuple(graph.module(*args))
    got = run(args)
    diff = 0.0
    for spec, want, have in zip(graph.outputs, expected, got, strict=True):
        if tuple(have.shape) != tuple(want.shape):
            raise DnnError(f"{path}: output {spec.name} has shape {have.shape}, expected {tuple(want.shape)}")
        diff = max(diff, float(np.abs(have.astype(np.float64) - want.numpy().astype(np.float64)).max(initial=0.0)))
    return diff, checked_with


def _check_onnx_stack(run: LoadedRun) -> None:
    """Residual and dense stacks run the kernel one layer at a time on packed data with sums or concatenations
    between the layers, which the exporter cannot map onto ONNX's RNN operators with ``sequence_lens``."""
    joins = {"classify": ("residual", "dense"), "tag": ("residual", "dense"), "translate": ("residual",)}
    for joined in joins.get(run.predictor.kind, ()):
        if getattr(run.model.config, joined):
            raise ConfigError(f"{run.path}: a {joined} recurrent stack cannot go to ONNX; --format torchscript can")


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


# -- the manifest and the files a deployment ships -------------------------------------------------------------


def _shipped_files(run: LoadedRun, source: RunDir) -> dict[str, str]:
    """What prediction reads besides the weights, by role: task.json, vocabularies, labels, tokenizers."""
    kind = run.predictor.kind
    if kind == "image":
        return {"task": TASK}
    if kind == "classify":
        return dict(TEXT_FILES)
    if kind == "tag":
        return {role: TEXT_FILES[role] for role in ("vocab", "labels", "task")}
    info = source.read_json(TASK, "a seq2seq run's task.json", required=("files",))
    return {"task": TASK, **{str(k): str(v) for k, v in dict(info["files"]).items()}}


def _preprocessing(run: LoadedRun) -> dict[str, Any]:
    p = run.predictor
    if p.kind == "image":
        return {"image_size": p.image_size, "channels": p.channels,
                "input": "images (B, C, image_size, image_size), float32 in [0, 1]; the normalisation is inside the "
                         "graph", "normalize": p.normalize.to_dict(), "classes": list(p.classes),
                "output": "logits (B, K); softmax gives the class probabilities, columns in the order of classes"
                }  # fmt: skip
    tokens = {"pad_id": PAD_ID, "input": "ids of the vocabulary file (<unk> = 1), padded with <pad> = 0 at the end"}
    if p.kind == "classify":
        return {**tokens, "max_length": p.max_length, "output": "logits (B, K), columns in the order of labels.json"}
    if p.kind == "tag":
        return {**tokens, "lowercase": p.lowercase, "output": "logits (B, T, K); rows past a length mean nothing"}
    return tokens


def _decoding(run: LoadedRun) -> dict[str, Any]:
    model, p = run.model, run.predictor
    return {"sos_id": SOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID, "state": state_names(model),
            "context": context_names(model),
            "step_outputs": "logits, then next_<name> for each name of state, then attention (models with attention)",
            "max_len": f"max(max_target_length, 2·S) + {MARGIN} tokens for a batch of source length S",
            "max_target_length": p.max_target_length, "max_source_length": p.max_source_length}  # fmt: skip


def export_run(path: str | os.PathLike, fmt: str = "onnx", out: str | os.PathLike | None = None,
               log: Log = lambda line: None) -> ExportResult:  # fmt: skip
    """Export the run at ``path`` as ``fmt`` (``"onnx"`` or ``"torchscript"``) into ``out`` (default
    ``<run>/export/<fmt>``; a new or empty folder, or one that holds this run's export in this format): the graphs,
    ``manifest.json`` and the files prediction needs; see the module docstring."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "onnx" and not _installed("onnx"):  # torch.onnx writes the model through it
        raise ConfigError("dnn export --format onnx needs the onnx package: pip install 'dnn[export]'")
    run = load_run(path)
    kind = run.predictor.kind
    if kind not in EXPORTABLE_KINDS:
        can = ", ".join(PREDICTOR_KINDS[k] for k in EXPORTABLE_KINDS)
        raise ConfigError(f"{run.path}: dnn export takes {can}; this is {PREDICTOR_KINDS[kind]}")
    graphs = _graphs(run)  # refuses a translate run whose model is not dnn's RNN Seq2Seq
    if fmt == "onnx":
        _check_onnx_stack(run)
    source = RunDir.reader(run.path)
    with RunDir.open_output(source.file(f"{EXPORT}/{fmt}") if out is None else out, "export", source,
                            {"format": fmt}) as out:  # fmt: skip
        return _export(run, source, out, fmt, kind, graphs, log)


def _export(run: LoadedRun, source: RunDir, out: RunDir, fmt: str, kind: str, graphs: list[Graph],
            log: Log) -> ExportResult:  # fmt: skip
    written: list[Path] = []
    parity: dict[str, Any] = {"max_abs_diff": None, "tolerance": TOLERANCE, "checked_with": None,
                              "batch": {"B": CHECK_SHAPE[0], "T": CHECK_SHAPE[1], "padded": True}}  # fmt: skip
    checkable = fmt == "torchscript" or _installed("onnxruntime")
    for graph in graphs:
        name = f"{graph.name}{SUFFIX[fmt]}"
        (_write_onnx if fmt == "onnx" else _write_torchscript)(graph, out, name)
        file = out.file(name)
        written.append(file)
        log(f"written: {file}")
        if checkable:
            diff, parity["checked_with"] = _max_abs_diff(fmt, file, graph)
            parity["max_abs_diff"] = max(diff, parity["max_abs_diff"] or 0.0)
    if not checkable:
        parity["checked_with"] = "not checked: onnxruntime is not installed (pip install 'dnn[export]')"
    elif parity["max_abs_diff"] > TOLERANCE:
        raise DnnError(
            f"{run.path}: the exported graph differs from the PyTorch model by {parity['max_abs_diff']:.3g} "
            f"(more than {TOLERANCE:g}); please report it"
        )
    files = _shipped_files(run, source)
    for name in files.values():
        written.append(out.write_bytes(name, read_bytes_nofollow(source.file(name), "file of the run")))
    manifest: dict[str, Any] = {
        "format": fmt,
        **({"opset": OPSET} if fmt == "onnx" else {}),
        "torch": torch.__version__,
        "dnn": __version__,
        "run": str(run.path),
        "kind": kind,
        "model": run.cfg.model["name"],
        "graphs": {g.name: g.to_dict(SUFFIX[fmt]) for g in graphs},
        "files": files,
        "preprocessing": _preprocessing(run),
        **({"decoding": _decoding(run)} if kind == "translate" else {}),
        "parity": parity,
    }
    written.append(out.write_json(EXPORT_MANIFEST, manifest))
    # what an earlier export of this run wrote (its manifest says so) and this one did not: removed
    out.remove_listed(keep={LOCK, *(str(path.relative_to(out.path)) for path in written)})
    return ExportResult(out.path, written, manifest)
