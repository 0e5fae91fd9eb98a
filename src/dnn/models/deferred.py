"""A model built once, on the meta device, and materialised later into the very same weights a direct build gives.

    deferred = Deferred(lambda: create_model("seq2seq", config))   # shapes only: nothing allocated
    check_memory(task, cfg, deferred.model, device)                 # the memory estimate reads this model
    model = deferred.materialise()                                  # the same module, its tensors now real

While the model is built on the meta device every torch operation is recorded (its inputs, keyword arguments
and outputs): the empty tensors of its parameters, the slices an initialiser writes through, the random
initialisers themselves (``uniform_``, ``normal_``, ``fill_``, ...), the arithmetic of a computed buffer.
:meth:`Deferred.materialise` replays that record on the CPU in the same order, so the random initialisers draw the
same numbers from the same generator state as a direct build would (tests/unit/test_deferred.py checks every
registered model bit for bit), and gives each parameter and buffer of the meta model its real counterpart
(through the storage it is a view of, so tied weights stay tied). The module objects are the meta build's own:
the model is built once.

Meta tensors carry no values, so a model whose construction reads a tensor's value (``int(t.sum())``) cannot be
deferred; it fails on the meta device with torch's error, as the memory estimate would.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

__all__ = ["Deferred"]

META = torch.device("meta")


def _is_meta(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "meta"


class _Recorder(TorchDispatchMode):
    """Every op that touches a meta tensor, in order: (op, args, kwargs, outputs)."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, Any]] = []
        self.paused = 0  # inside a factory from data, recorded whole by _FromData

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        leaves = tree_flatten((args, kwargs, out))[0]
        if not self.paused and (any(_is_meta(x) for x in leaves) or kwargs.get("device") == META):
            self.ops.append((func, args, kwargs, out))
        return out


class _FromData(TorchFunctionMode):
    """``torch.tensor(data)`` and ``torch.as_tensor(data)`` make their tensor from Python data below the dispatcher
    (BatchNorm's ``num_batches_tracked``): the call is recorded whole, in the dispatch record's order."""

    FACTORIES = (torch.tensor, torch.as_tensor)

    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.FACTORIES:
            return func(*args, **kwargs)
        self.recorder.paused += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self.recorder.paused -= 1
        if _is_meta(out):
            self.recorder.ops.append((func, args, kwargs, out))
        return out


def _storage(t: torch.Tensor) -> int:
    """The identity of the storage ``t`` is a view of (views of one tensor share it)."""
    return t.untyped_storage()._cdata  # _cdata: the StorageImpl itself, the same for every view of it


def _view(base: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The real tensor that ``like`` (meta) stands for: its offset, shape and strides on ``base``'s storage."""
    return torch.empty(0, dtype=like.dtype).set_(base.untyped_storage(), like.storage_offset(), like.shape,
                                                 like.stride())  # fmt: skip


# torch.nn.init's initialisers that return at once on a meta tensor ("sampling is a no-op"): recorded whole
META_NO_OPS = ("trunc_normal_", "orthogonal_", "dirac_", "sparse_")


@contextlib.contextmanager
def _recording_meta_no_ops(recorder: _Recorder):
    """While a model is built, each of :data:`META_NO_OPS` is recorded with its arguments, for the replay."""
    originals = {name: getattr(nn.init, name) for name in META_NO_OPS}

    def recording(original):
        @functools.wraps(original)
        def initialise(tensor, *args, **kwargs):
            if _is_meta(tensor):
                recorder.ops.append((original, (tensor, *args), kwargs, tensor))
            return original(tensor, *args, **kwargs)

        return initialise

    try:
        for name, original in originals.items():
            setattr(nn.init, name, recording(original))
        yield
    finally:
        for name, original in originals.items():
            setattr(nn.init, name, original)


class Deferred:
    """``build()`` run once on the meta device, recorded; :meth:`materialise` makes its tensors real."""

    def __init__(self, build: Callable[[], nn.Module]):
        recorder = _Recorder()
        with torch.device(META), _FromData(recorder), recorder, _recording_meta_no_ops(recorder):
            self.model = build()
        self._ops = recorder.ops
        self.materialised = False

    def _replay(self, real: dict[int, torch.Tensor], storages: dict[int, torch.Tensor], swap) -> None:
        for func, args, kwargs, out in self._ops:
            result = func(*tree_map(swap, args), **tree_map(swap, kwargs))
            for o, r in zip(tree_flatten(out)[0], tree_flatten(result)[0]):
                if _is_meta(o) and isinstance(r, torch.Tensor):
                    real[id(o)] = r
                    storages.setdefault(_storage(o), r)

    def materialise(self) -> nn.Module:
        """The model, its parameters and buffers now CPU tensors holding what a direct build holds (move it with
        ``.to(device)`` as any model); once."""
        if self.materialised:
            raise RuntimeError("a deferred model is materialised once")
        real: dict[int, torch.Tensor] = {}  # id(meta tensor) → its real counterpart
        storages: dict[int, torch.Tensor] = {}  # storage of a meta tensor → a real tensor on the real storage

        def swap(x: Any) -> Any:
            if not isinstance(x, torch.Tensor):
                return torch.device("cpu") if x == META else x
            if not _is_meta(x):
                return x
            if id(x) not in real:  # a Parameter wrapping a recorded tensor: the same storage, another object
                real[id(x)] = _view(storages[_storage(x)], x)
            return real[id(x)]

        with torch.no_grad():
            self._replay(real, storages, swap)
        self._ops = []  # the record holds every meta tensor of the build: let it go
        made: dict[int, torch.Tensor] = {}  # id(meta parameter or buffer) → the real one (tied weights stay tied)

        def counterpart(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in made:
                view = _view(storages[_storage(t)], t)
                made[id(t)] = nn.Parameter(view, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else view
            return made[id(t)]

        for module in self.model.modules():
            for name, p in list(module.named_parameters(recurse=False)):
                setattr(module, name, counterpart(p))
            for name, b in list(module.named_buffers(recurse=False)):
                setattr(module, name, counterpart(b))
            left = [k for k, v in vars(module).items() if _is_meta(v)]
            if left:
                raise RuntimeError(f"{type(module).__name__}.{left[0]} is a tensor that is neither a parameter nor a "
                                   "buffer: a deferred build cannot make it real")  # fmt: skip
        self.materialised = True
        return self.model
