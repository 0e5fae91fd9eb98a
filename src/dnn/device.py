"""Where a model runs and in what precision: the device a user has (CPU, CUDA, Apple's MPS) and fp32 / bf16 / fp16.

    device = resolve_device("auto")                 # CUDA when there is one, else MPS, else the CPU
    batch = to_device(batch, device)                # tensors inside tuples, lists, dicts and dataclasses
    check_precision(device, "bf16")                 # refused in one line where the device has no bf16 units
    with autocast(device, "bf16"): loss = ...       # mixed precision (on the CPU only where it has bf16 units)
    cpu_info()                                      # the CPU's model and instruction sets, for every speed figure
    keep_freed_memory()                             # CPU training: reuse freed buffers instead of zeroing new pages

Asking for a device that is not there is one line naming the setting (``train.device=cuda: no CUDA device ...``),
and so is a precision the device has no units for: bf16 on a CPU without AVX-512 BF16 or AMX (there torch emulates
it, a matrix product ~160× slower than fp32, and its LSTM has no bf16 kernel at all), fp16 on a CPU without
AVX-512 FP16 or AMX-FP16, either on a GPU older than its kernels. The answer comes from torch's own report
(``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, the CUDA compute capability), which follows oneDNN's
``ONEDNN_MAX_CPU_ISA``: ``ONEDNN_MAX_CPU_ISA=AVX2`` makes any x86 machine answer, and compute, as an AVX2-only one.
Checkpoints never hold a device: weights are saved from the CPU side and load anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import platform
import typing
from typing import Any, Literal

import torch
from torch import nn

from dnn.errors import ConfigError

__all__ = [
    "DEVICES", "PRECISIONS", "CpuInfo", "Precision", "autocast", "check_precision", "cpu_info", "keep_freed_memory",
    "model_device", "precision_supported", "release_freed_memory", "resolve_device", "run_in_fp32", "to_device",
]  # fmt: skip

DEVICES = "auto, cpu, cuda, cuda:N or mps"  # what train.device and --device take (auto: CUDA, else MPS, else CPU)
Precision = Literal["fp32", "bf16", "fp16"]  # train.precision's type; --precision's choices
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
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


def precision_supported(device: torch.device, precision: str) -> str | None:
    """None when ``device`` has units for ``precision``; otherwise why not, and what to use instead (one clause).

    CPU: bf16 needs torch's report of oneDNN bf16 support (AVX-512 BF16 or AMX), fp16 its report of fp16 support
    (AVX-512 FP16 or AMX-FP16); elsewhere both are emulated (bf16 matrix products ~160× and fp16 ~30× slower than
    fp32, measured) and torch's LSTM has no kernel for them. CUDA: bf16 from compute capability 8.0 (Ampere),
    fp16 from 5.3. MPS: fp32 only here.
    """
    if precision == "fp32":
        return None
    if device.type == "cpu":
        bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        if precision == "bf16" and not bf16:
            return ("this CPU has no bf16 units (torch.ops.mkldnn._is_mkldnn_bf16_supported() is False: it needs "
                    "AVX-512 BF16 or AMX); bf16 would be emulated, ~100× slower than fp32, and torch's LSTM has no "
                    "bf16 kernel here")  # fmt: skip
        if precision == "fp16" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
            return ("this CPU has no fp16 units (torch.ops.mkldnn._is_mkldnn_fp16_supported() is False: it needs "
                    "AVX-512 FP16 or AMX-FP16); fp16 would be emulated, ~30× slower than fp32, and torch's LSTM has "
                    "no fp16 kernel here")  # fmt: skip
        return None
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if precision == "bf16" and (major, minor) < (8, 0):
            return (f"this GPU (compute capability {major}.{minor}) has no bf16 units (they start at 8.0, Ampere); "
                    "use fp16 (with its gradient scaler)")  # fmt: skip
        if precision == "fp16" and (major, minor) < (5, 3):
            return f"this GPU (compute capability {major}.{minor}) has no fp16 arithmetic (it starts at 5.3)"
        return None
    return f"{precision} is not supported on {device.type.upper()} here"


def check_precision(device: torch.device, precision: str, where: str = "train.precision") -> None:
    """Refuse, in one line naming the setting, a precision that is unknown or that ``device`` has no units for
    (see :func:`precision_supported`); called before anything is read or built."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    why = precision_supported(device, precision)
    if why is not None:
        instead = [p for p in ("bf16", "fp16") if p != precision and precision_supported(device, p) is None]
        raise ConfigError(f"{where}={precision}: {why}; use {where}={' or '.join([*instead, 'fp32'])}")


_log = logging.getLogger("dnn")
_fp32_noted: set[tuple[str, str, str]] = set()  # (layer, device type, dtype) already said once in the log


def run_in_fp32(layer: str, device: torch.device, kernel, *args: Any):
    """``kernel(*args)`` as it is; where autocast is on and the kernel has no low-precision implementation on
    this device (oneDNN: "could not create a primitive descriptor"), ``kernel`` again in fp32 with autocast off,
    said once per layer, device and precision in dnn's log. Any other error is raised as it is."""
    if not torch.is_autocast_enabled(device.type):
        return kernel(*args)
    try:
        return kernel(*args)
    except RuntimeError as err:
        if "primitive descriptor" not in str(err):
            raise
    dtype = str(torch.get_autocast_dtype(device.type)).removeprefix("torch.")
    key = (layer, device.type, dtype)
    if key not in _fp32_noted:
        _fp32_noted.add(key)
        _log.warning("precision: %s has no %s kernel on this %s; it runs in fp32 inside autocast", layer, dtype,
                     device.type.upper())  # fmt: skip
    with torch.autocast(device.type, enabled=False):
        return kernel(*(_fp32(a) for a in args))


def _fp32(obj: Any) -> Any:
    """Floating tensors in ``obj`` (alone, or in lists and tuples) as fp32; anything else as it is."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fp32(x) for x in obj)
    return obj


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """The CPU a figure was measured on: its model and the instruction sets that decide dnn's speed."""

    model: str
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool
    bf16_units: bool  # torch's own answer (follows ONEDNN_MAX_CPU_ISA), what dnn decides bf16 by
    capability: str  # the kernel set torch dispatches to (torch.backends.cpu.get_cpu_capability())

    def describe(self) -> str:
        """``AMD EPYC (AVX2, AVX-512, AVX-512 BF16; no AMX); torch kernels AVX512, bf16 units: yes``."""
        sets = {"AVX2": self.avx2, "AVX-512": self.avx512, "AVX-512 BF16": self.avx512_bf16, "AMX": self.amx}
        has = ", ".join(k for k, v in sets.items() if v) or "none of AVX2, AVX-512, AMX"
        lacks = ", ".join(k for k, v in sets.items() if not v)
        return (f"{self.model} ({has}{'; no ' + lacks if lacks else ''}); torch kernels {self.capability}, "
                f"bf16 units: {'yes' if self.bf16_units else 'no'}")  # fmt: skip


def cpu_info() -> CpuInfo:
    """The CPU's model name and instruction-set flags (Linux: /proc/cpuinfo; elsewhere what platform says), with
    what torch decides by: ``ONEDNN_MAX_CPU_ISA=AVX2`` makes ``bf16_units`` False on any CPU, as on an AVX2 one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return CpuInfo(
        model=model, avx2="avx2" in flags, avx512="avx512f" in flags, avx512_bf16="avx512_bf16" in flags,
        amx="amx_tile" in flags, bf16_units=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        capability=torch.backends.cpu.get_cpu_capability(),
    )  # fmt: skip


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
    # probe: a NamedTuple is a tuple with _fields (there is no NamedTuple class to test): rebuilt field by field
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
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
