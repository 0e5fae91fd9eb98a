"""Checkpoints that a crash cannot corrupt and that never unpickle code.

- weights: ``*.safetensors`` (tied weights handled by ``safetensors.torch.save_model``);
- training state (optimiser, scheduler, counters, the RNG state of every generator): ``state.pt`` written with
  ``torch.save`` and read back with ``torch.load(weights_only=True)`` — tensors, numbers, strings, lists and dicts
  only, so a state file from elsewhere cannot run code.

Every file is written to a temporary name in the same folder and renamed over the old one: a reader sees the old
file or the new one, never half of one.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dnn.errors import CheckpointError
from dnn.io import atomic_write, read_bytes_nofollow

__all__ = [
    "atomic_write",
    "load_state",
    "load_weights",
    "rng_state",
    "save_state",
    "save_weights",
    "set_rng_state",
    "state_writer",
    "weights_writer",
]


def weights_writer(model: nn.Module) -> Callable[[str], None]:
    """``write(path)`` of the model's weights as safetensors (for :func:`dnn.io.atomic_write` and its kin)."""
    from safetensors.torch import save_model

    return lambda tmp: save_model(model, tmp)


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    return atomic_write(path, weights_writer(model))


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        missing, unexpected = load_model(model, path, strict=False)
    except (SafetensorError, OSError, ValueError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None
    except RuntimeError as err:  # shape mismatch
        reason = (str(err).splitlines() or [type(err).__name__])[-1].strip()
        raise CheckpointError(f"{path}: does not fit this model: {reason}") from None
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {sorted(missing)[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {sorted(unexpected)[0]})")
        raise CheckpointError(f"{path}: weights do not match the model: {'; '.join(parts)}")


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's generators, as values ``torch.load(weights_only=True)`` reads."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_writer(state: dict[str, Any]) -> Callable[[str], None]:
    """``write(path)`` of a training state with ``torch.save``, through a Python file object: a full disk is then
    the OSError it is, not torch's "unexpected pos"."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return write


def save_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    return atomic_write(path, state_writer(state))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """A training state, read with ``weights_only=True`` (tensors and plain values only: nothing runs); a missing,
    empty, cut-off or damaged file is a one-line CheckpointError naming it."""
    path = Path(path)
    try:
        raw = read_bytes_nofollow(path, "training state")
    except CheckpointError as err:
        if not path.exists() and not path.is_symlink():
            raise CheckpointError(f"{path}: no such training state file") from None
        raise err from None
    if not raw:
        raise CheckpointError(f"{path}: empty (0 bytes), not a training state: it was cut off (a full disk, or a "
                              "copy that stopped); restore it from a copy, or train the run again")  # fmt: skip
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — any failure to read is the same user-facing problem
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"{path}: not a readable training state, cut off or damaged ({reason}); restore it "
                              "from a copy, or train the run again") from None  # fmt: skip
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training state (it holds a {type(state).__name__})")
    return state
