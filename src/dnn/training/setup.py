"""What a training process sets up before its first step: threads, denormals and memory reuse, the device, and
the check that its data and first step fit the memory available (:mod:`dnn.training.memory`)."""

from __future__ import annotations

import os
from typing import Any

import torch

from dnn.device import check_precision, keep_freed_memory, release_freed_memory, resolve_device
from dnn.errors import ConfigError
from dnn.training.distributed import Distributed
from dnn.training.memory import check_memory

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
