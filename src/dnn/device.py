"""Where a model runs and in what precision: the device a user has (CPU, CUDA, Apple's MPS) and fp32 / bf16 / fp16.

    device = resolve_device("auto")                 # CUDA when there is one, else MPS, else the CPU
    batch = to_device(batch, device)                # tensors inside tuples, lists, dicts and dataclasses
    with autocast(device, "bf16"): loss = ...       # mixed precision (bf16 runs on the CPU's matrix units too)
    keep_freed_memory()                             # CPU training: reuse freed buffers instead of zeroing new pages

Asking for a device that is not there is one line naming the setting (``train.device=cuda: no CUDA device ...``).
Checkpoints never hold a device: weights are saved from the CPU side and load anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import platform
from typing import Any

import torch
from torch import nn

from dnn.errors import ConfigError

__all__ = [
    "DEVICES", "PRECISIONS", "autocast", "keep_freed_memory", "model_device", "release_freed_memory", "resolve_device",
    "to_device",
]  # fmt: skip

DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str = "auto", where: str = "train.device") -> torch.device:
    """``auto`` → CUDA (the current device) if available, else MPS, else CPU; an explicit device must exist."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{where} must be one of {DEVICES}, got {spec!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}={spec}: no CUDA device here (torch.cuda.is_available() is False); "
                              f"use {where}=cpu or auto")  # fmt: skip
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{where}={spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}={spec}: no Apple MPS device here; use {where}=cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{where} must be one of {DEVICES}, got {spec!r}")
    return device


def check_precision(device: torch.device, precision: str, where: str = "train.precision") -> None:
    """fp16 and bf16 need a device that runs them: CUDA, or the CPU (bf16 natively; fp16 emulated, slowly)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{where}=bf16: this GPU has no bfloat16; use fp16 (with its gradient scaler) or fp32")
    if precision != "fp32" and device.type == "mps":
        raise ConfigError(f"{where}={precision} is not supported on MPS here; use fp32")


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (fp32: nothing changes)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor in it on ``device``: tensors, and tuples, lists, dicts and dataclasses of them
    (batches are dataclasses); anything else is returned as it is. A tensor already there is not copied."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: to_device(getattr(obj, f.name), device, non_blocking) for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple: rebuilt field by field
        return type(obj)(*(to_device(x, device, non_blocking) for x in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(x, device, non_blocking) for x in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    return obj


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_memory_kept = False


def keep_freed_memory() -> bool:
    """Let this process reuse the CPU memory it frees instead of handing it back to the OS (glibc only; elsewhere
    nothing changes and the answer is False).

    glibc's malloc serves every buffer over 32 MB (at most; less for smaller ones early on) with a fresh mmap and
    unmaps it when freed, so the logits of a seq2seq batch (B × T × V floats: 82 MB at 64 × 40 × 8000) and their
    gradients are mapped, zeroed page by page by the kernel and unmapped again on every step. Measured on the
    translate-tsv model (batch 64, 2 threads): ~75,000 page faults and 0.11 s of kernel time in a 0.34 s step. Kept
    on the heap instead, dnn's step ran 1.28× faster, and the plain PyTorch script of the same model 1.44–1.55×
    faster in fresh processes (``make bench``, "train.keep_memory"). The cost: the process's resident memory stays
    at its peak, as a GPU caching allocator's does, until :func:`release_freed_memory`. ``train.keep_memory``
    (default true) applies it for training; it cannot be undone within a process (restoring glibc's settings would
    not restore its adaptive threshold).
    """
    global _memory_kept
    if _memory_kept:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # no mmap for large blocks (they come from the heap and return to it), and never trim the heap's top
    _memory_kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _memory_kept


def release_freed_memory() -> None:
    """Give the memory freed so far back to the OS (glibc's ``malloc_trim``; elsewhere nothing happens).

    ``dnn train`` calls it before and after each run. Memory kept by :func:`keep_freed_memory` is laid out for the
    run that freed it; the next run in the same process (``dnn experiment``, a notebook) would otherwise fit its
    buffers between what is left, and ran measurably slower: an IMDB LSTM step in bf16 at 0.70× after a seq2seq
    model had trained in the process, 1.0× again once trimmed.
    """
    if not _memory_kept:
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
