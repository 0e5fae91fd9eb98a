"""What a training process sets up before its first step: threads, denormals and memory reuse, the device, and
the check that the model fits this machine's memory at all."""

from __future__ import annotations

import os
from typing import Any

import torch

from dnn.device import check_precision, keep_freed_memory, release_freed_memory, resolve_device
from dnn.errors import ConfigError
from dnn.models.registry import create_model
from dnn.training.distributed import Distributed

__all__ = ["check_memory", "setup_device", "setup_process"]


def setup_process(t: Any) -> None:
    """``train.threads``, ``train.flush_denormal`` and ``train.keep_memory`` (``t``: the train section)."""
    if t.threads:
        cores = os.cpu_count() or 1
        if t.threads > 4 * cores:  # checked here, not in the config: a run trained elsewhere still loads
            raise ConfigError(f"train.threads={t.threads} is more than 4× this machine's {cores} cores; use 0 "
                              f"(torch's choice) or at most {4 * cores}")  # fmt: skip
        torch.set_num_threads(t.threads)
    torch.set_flush_denormal(t.flush_denormal)
    if t.keep_memory:
        keep_freed_memory()
        release_freed_memory()  # start from a compact heap, not the layout an earlier run in this process left


def setup_device(t: Any, ddp: Distributed) -> torch.device:
    """train.device resolved; under torchrun on CUDA each rank takes its local GPU."""
    device = resolve_device(t.device)
    check_precision(device, t.precision)
    if device.type == "cuda" and ddp.enabled:
        device = torch.device("cuda", ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def check_memory(name: str, model_cfg: Any) -> None:
    """Refuse a model whose weights, gradients and optimiser state would not fit in this machine's memory,
    before allocating any of it (the model is built on the meta device: shapes only)."""
    with torch.device("meta"):
        meta = create_model(name, model_cfg)
    n = sum(p.numel() for p in meta.parameters())
    need = n * 4 * 4  # fp32 weights, gradients and Adam's two moments
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: no estimate of the machine, no check
        total = 0
    if total and need > 0.8 * total:
        raise ConfigError(
            f"model {name!r} has {n:,} parameters: training needs about {need / 2**30:.1f} GiB for weights, gradients "
            f"and optimiser state, more than this machine's {total / 2**30:.1f} GiB; choose a smaller model "
            f"(e.g. model.hidden_size)"
        )
