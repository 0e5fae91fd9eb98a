"""Writing a graph (ONNX through torch's TorchScript-based exporter, or TorchScript) and running what was written.

Both formats trace the module with a padded example batch (:data:`~dnn.export.graphs.TRACE_SHAPE`). The models'
input checks read values in Python (``int(tokens.max())``); a trace records them as constants, which is right
here: they check, they do not compute.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import dnn.layers.attention as attention_module
from dnn.errors import DnnError
from dnn.export.graphs import TRACE_SHAPE, Graph, as_tuple
from dnn.rundir import RunDir

__all__ = ["OPSET", "max_abs_diff", "write_onnx", "write_torchscript"]

OPSET = 17

Runner = Callable[[tuple[Tensor, ...]], list[np.ndarray]]


@contextlib.contextmanager
def traceable_attention() -> Iterator[None]:
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
def quiet_trace() -> Iterator[None]:
    # A trace warns that it records the input checks as constants (module docstring). The TorchScript-based
    # exporter warns that it is deprecated in favour of the torch.export one, which cannot export these models: it
    # stops at the data-dependent input checks and at packing.
    with warnings.catch_warnings(), traceable_attention(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*[Dd]ynamo.*")
        # "a batch_size other than 1 ... can cause an error": the initial state is made from the input's shape,
        # and the parity check runs another batch size than the one traced
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        yield


@contextlib.contextmanager
def native_stderr_kept() -> Iterator[None]:
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


def write_onnx(graph: Graph, out: RunDir, name: str) -> None:
    """``graph`` as ONNX (opset :data:`OPSET`) into ``out/name``, its B / T / S axes declared dynamic."""
    args = graph.example(*TRACE_SHAPE)
    axes = {spec.name: spec.dynamic_axes() for spec in (*graph.inputs, *graph.outputs)}

    def write(tmp: str) -> None:
        torch.onnx.export(
            graph.module, args, tmp, dynamo=False, opset_version=OPSET, input_names=[s.name for s in graph.inputs],
            output_names=[s.name for s in graph.outputs], dynamic_axes=axes, do_constant_folding=True,
        )  # fmt: skip

    with quiet_trace(), native_stderr_kept():
        out.write_hashed({name: write})


def write_torchscript(graph: Graph, out: RunDir, name: str) -> None:
    """``graph`` traced into TorchScript (``torch.jit.load``) into ``out/name``."""
    with quiet_trace():
        traced = torch.jit.trace(graph.module, graph.example(*TRACE_SHAPE), check_trace=False)
        out.write_hashed({name: lambda tmp: torch.jit.save(traced, tmp)})


def runner(fmt: str, path: Path, graph: Graph) -> tuple[Runner, str]:
    """A function that runs the written graph on torch inputs, and the name of what runs it."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit is, in favour of torch.export
            loaded = torch.jit.load(str(path))

        def run_script(args: tuple[Tensor, ...]) -> list[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in as_tuple(loaded(*args))]

        return run_script, f"torch.jit.load (torch {torch.__version__})"
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run_onnx(args: tuple[Tensor, ...]) -> list[np.ndarray]:
        return session.run(None, {spec.name: t.numpy() for spec, t in zip(graph.inputs, args, strict=True)})

    return run_onnx, f"onnxruntime {onnxruntime.__version__}"


def max_abs_diff(fmt: str, path: Path, graph: Graph, shape: tuple[int, int]) -> tuple[float, str]:
    """The largest difference between the written graph and the PyTorch module on a padded example batch of
    ``shape`` (B, T), and what ran the graph."""
    run, checked_with = runner(fmt, path, graph)
    args = graph.example(*shape)
    with torch.no_grad():  # the model as dnn runs it (concat attention through its own autograd.Function)
        expected = as_tuple(graph.module(*args))
    got = run(args)
    diff = 0.0
    for spec, want, have in zip(graph.outputs, expected, got, strict=True):
        if tuple(have.shape) != tuple(want.shape):
            raise DnnError(f"{path}: output {spec.name} has shape {have.shape}, expected {tuple(want.shape)}")
        diff = max(diff, float(np.abs(have.astype(np.float64) - want.numpy().astype(np.float64)).max(initial=0.0)))
    return diff, checked_with
