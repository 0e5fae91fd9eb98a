"""Export a trained run for deployment: ONNX graphs (onnxruntime and other runtimes) or TorchScript (torch.jit.load).

    dnn export runs/NAME --format onnx|torchscript [--out DIR]        default DIR: runs/NAME/export/<format>

What is exported, by the class of the run's predictor (:mod:`dnn.export.kinds`); B, T, S and t are dynamic::

    image      model         images (B, C, H_img, W_img) float32 in [0, 1] → logits (B, K); normalisation inside
    classify   model         tokens (B, T) int64, lengths (B,) int64 → logits (B, K)
    tag        model         tokens (B, T) int64, lengths (B,) int64 → logits (B, T, K); rows past a length: ignore
    video      model         clips (B, T, C, H_img, W_img) float32 in [0, 1], lengths (B,) → logits (B, K)
    translate  encoder       src (B, S) int64, src_lengths (B,) int64 → the decoder's first state and its context
               decoder_step  prev_token (B,) int64, state, context → logits (B, V), the next state, attention (B, S)
               (dnn's RNN encoder–decoder, and the Transformer with its key/value cache as state)
    caption    encoder       images (B, C, H_img, W_img) float32 in [0, 1] → the first state and the feature memory
               decoder_step  prev_token (B,) int64, state, memory → logits (B, V), the next state, attention (B, S)

The layouts are in :mod:`dnn.export.classifiers`, :mod:`dnn.export.seq2seq` and :mod:`dnn.export.captioning`.
Language-model, speech and regression runs are refused in one line that says why (:data:`dnn.export.kinds.REFUSED`).
Token batches are padded with <pad> = 0 at the end, lengths ≥ 1. Greedy decoding over an encoder and a decoder step
is a loop that ``manifest["decoding"]`` describes: its special token ids, the names of the state and the context,
the longest output.

``manifest.json`` beside the graphs names every input and output with its dtype and shape, the opset, the files a
deployment ships (copied beside the graphs: task.json, vocabularies, labels, tokenizers), what to do to raw inputs
(``preprocessing``: image size and normalisation, token ids) and the largest difference from the PyTorch model on a
padded batch of another size than the one traced.

How: both formats trace the model with a padded batch. The recurrent runner decides in Python whether to pack a
batch (not when no row is padded); a padded example records the packed path, right for every batch. ONNX goes
through torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17), which turns the
packed LSTM / GRU / RNN kernels into ONNX's own operators with ``sequence_lens``, so lengths stay dynamic; the
torch.export-based one (torch's default) stops at the models' data-dependent input checks (``int(tokens.max())``)
and at packing. ONNX needs the ``onnx`` package: ``pip install 'dnn[export]'`` (with onnxruntime, for the check).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dnn import __version__
from dnn.errors import ConfigError, DnnError
from dnn.export.graphs import Exporter, Graph, token_batch
from dnn.export.kinds import EXPORTERS, exporter_for
from dnn.export.tracing import OPSET, max_abs_diff, write_onnx, write_torchscript
from dnn.io import read_bytes_nofollow
from dnn.run import LoadedRun, load_run
from dnn.rundir import EXPORT, EXPORT_MANIFEST, LOCK, RunDir

__all__ = ["EXPORTABLE_KINDS", "FORMATS", "OPSET", "ExportResult", "export_run", "token_batch"]

FORMATS = ("onnx", "torchscript")
EXPORTABLE_KINDS = tuple(cls.kind for cls in EXPORTERS)
TOLERANCE = 1e-4  # float32 graphs against the PyTorch model: measured differences are ~1e-6
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
CHECK_SHAPE = (2, 9)  # (B, T) of the batch the parity check runs: other than the traced one (graphs.TRACE_SHAPE)

Log = Callable[[str], None]


@dataclass
class ExportResult:
    """Where the export went: the folder, every file written in it, and the manifest (also in manifest.json)."""

    out: Path
    files: list[Path]
    manifest: dict[str, Any] = field(repr=False)  # its "parity" holds the measured max_abs_diff


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


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
    exporter = exporter_for(run)  # a run that cannot be exported: a one-line ConfigError saying why
    graphs = exporter.graphs(run)
    refusal = exporter.onnx_refusal(run) if fmt == "onnx" else None
    if refusal:
        raise ConfigError(f"{run.path}: {refusal}; --format torchscript can")
    source = RunDir.reader(run.path)
    with RunDir.open_output(source.file(f"{EXPORT}/{fmt}") if out is None else out, "export", source,
                            {"format": fmt}) as out:  # fmt: skip
        return _export(run, exporter, source, out, fmt, graphs, log)


def _export(run: LoadedRun, exporter: Exporter, source: RunDir, out: RunDir, fmt: str, graphs: list[Graph],
            log: Log) -> ExportResult:  # fmt: skip
    written: list[Path] = []
    parity: dict[str, Any] = {"max_abs_diff": None, "tolerance": TOLERANCE, "checked_with": None,
                              "batch": {"B": CHECK_SHAPE[0], "T": CHECK_SHAPE[1], "padded": True}}  # fmt: skip
    checkable = fmt == "torchscript" or _installed("onnxruntime")
    for graph in graphs:
        name = f"{graph.name}{SUFFIX[fmt]}"
        (write_onnx if fmt == "onnx" else write_torchscript)(graph, out, name)
        file = out.file(name)
        written.append(file)
        log(f"written: {file}")
        if checkable:
            diff, parity["checked_with"] = max_abs_diff(fmt, file, graph, CHECK_SHAPE)
            parity["max_abs_diff"] = max(diff, parity["max_abs_diff"] or 0.0)
    if not checkable:
        parity["checked_with"] = "not checked: onnxruntime is not installed (pip install 'dnn[export]')"
    elif parity["max_abs_diff"] > TOLERANCE:
        raise DnnError(
            f"{run.path}: the exported graph differs from the PyTorch model by {parity['max_abs_diff']:.3g} "
            f"(more than {TOLERANCE:g}); please report it"
        )
    files = exporter.files(run, source)
    for name in files.values():
        written.append(out.write_bytes(name, read_bytes_nofollow(source.file(name), "file of the run")))
    manifest: dict[str, Any] = {
        "format": fmt,
        **({"opset": OPSET} if fmt == "onnx" else {}),
        "torch": torch.__version__,
        "dnn": __version__,
        "run": str(run.path),
        "kind": run.predictor.kind,
        "model": run.cfg.model.name,
        "graphs": {g.name: g.to_dict(SUFFIX[fmt]) for g in graphs},
        "files": files,
        "preprocessing": exporter.preprocessing(run),
        **({"decoding": exporter.decoding(run)} if exporter.decoding is not None else {}),
        "parity": parity,
    }
    written.append(out.write_json(EXPORT_MANIFEST, manifest))
    # what an earlier export of this run wrote (its manifest says so) and this one did not: removed
    out.remove_listed(keep={LOCK, *(str(path.relative_to(out.path)) for path in written)})
    return ExportResult(out.path, written, manifest)
