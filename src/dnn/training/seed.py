"""One seed fixes Python, NumPy and torch (DataLoader workers are seeded from it by dnn.data.batching)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed every generator; with ``deterministic`` also turn on torch's deterministic algorithms.

    Returns a fresh ``torch.Generator`` seeded with ``seed`` for samplers and data order, so that the data order
    does not depend on how many random numbers the model's initialisation drew.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)
