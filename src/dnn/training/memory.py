"""How much memory a training run needs, estimated before its data is made and before its first step.

    check_memory(task, cfg)                        # before task.prepare(): the data it will hold
    check_memory(task, cfg, model, device)         # after: one training step of the model, built on meta

An :class:`Estimate` has six terms: the data the task holds (:meth:`Task.data_bytes`, from the config, before the
data exists), the parameters, their gradients, the optimiser's state (Adam/AdamW: two moments; SGD: one with
momentum, none without), the activations autograd keeps for the largest batch (:meth:`Task.batch_plan`) and what
torch's kernels take on a first step whatever the model (KERNELS, measured).

The activations follow the real model, the run's one build, made on the meta device and materialised after this
check (:class:`dnn.models.deferred.Deferred`): a structural copy of it (its tensors meta, nothing copied) has
them turned into fake CPU tensors (torch's FakeTensorMode:
shapes, dtypes and devices, no storage); the task's own ``step`` (forward and loss) runs on a batch of the plan
under :func:`torch.autograd.graph.saved_tensors_hooks`, which sum the bytes of every tensor saved for backward,
once per storage, parameters excluded. Fake rather than meta tensors: the fused recurrent kernels ask autocast
about their input's device, which meta is not. The batch's token ids and lengths stay real
(small) CPU tensors and ops on real tensors alone run for real, because the models check ids
(``int(tokens.max())``) and pack sequences by their lengths. Two ops do not run faithfully on fake tensors, and get
an analytic stand-in: oneDNN's LSTM layer, whose workspace for backward its fake kernel returns empty, is given the
size measured on the real kernel (64 bytes per step, example and hidden unit); the CTC loss has no fake kernel, so
what was saved before it counts (its own alpha table, B × T' × (2U + 1) floats, is left out).

The peak holds more than the saved tensors: the gradients backward computes beside them, and the allocator's slack;
against real steps of seven recipes (benchmarks/MEMORY.md) the activations' share of the peak was 1.2–2.6 times
the saved bytes (median 1.7); the estimate takes BACKWARD = 1.5 times them. The probe runs in fp32 (bf16/fp16
autocast saves less: there it overestimates).

A probe runs at most PROBE_SIZE examples and PROBE_LENGTH steps: activations grow linearly with the batch size, and
a longer time axis is extrapolated from three probes (exact for a + b·L + c·L²: recurrent layers are linear in L,
attention quadratic).

Available memory: ``MemAvailable`` in /proc/meminfo, else the machine's physical memory, else no check; on CUDA the
device's free memory (the data stays in the host's). The environment variable ``DNN_MEMORY_AVAILABLE`` (bytes, or
with a unit: 512M, 8G, 1.5T; binary units) overrides it, for tests that must not depend on the machine.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses import fake_tensor as fakes
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from dnn.errors import ConfigError

__all__ = ["OVERRIDE", "BatchPlan", "Estimate", "available_bytes", "check_memory", "estimate"]

OVERRIDE = "DNN_MEMORY_AVAILABLE"
PROBE_SIZE = 16  # examples in a probe batch
PROBE_LENGTH = 64  # steps in the longest probe
BACKWARD = 1.5  # the activations' peak over the bytes saved for backward (see the module docstring)
KERNELS = 16 * 2**20  # what a first step adds whatever the model: oneDNN's primitives and scratchpads, code paged in
# (measured: 13–17 MiB for a 1-unit LSTM and a batch of 1 through LeNet-5, benchmarks/memory.py)
LABELS = {"data": "data held in memory", "parameters": "parameters", "gradients": "gradients",
          "optimizer": "optimizer state", "activations": "activations", "kernels": "torch's kernels"}  # fmt: skip
MODEL_HINT = "choose a smaller model (fewer or narrower layers)"
NO_FAKE_KERNEL = (fakes.DynamicOutputShapeException, fakes.DataDependentOutputException,
                  fakes.UnsupportedOperatorException, NotImplementedError)  # fmt: skip


@dataclass(frozen=True)
class BatchPlan:
    """The largest batch training will see (what :meth:`dnn.tasks.Task.batch_plan` gives): only its shapes matter.

    ``make(size, length)`` builds a batch as the task's ``step`` takes it, of ``size`` examples whose time axis
    (tokens, steps) is ``length`` long; ``size`` and ``length`` are the largest training sees (``length`` 0: batches
    have no time axis, e.g. images, and ``make`` ignores it). ``keys`` are the settings that make it big.
    """

    size: int
    length: int
    make: Callable[[int, int], Any]
    keys: tuple[str, ...] = ("train.batch_size",)


@dataclass
class Estimate:
    """Bytes at the peak of a training step, by term (the keys of :data:`LABELS`); ``why`` says what a term was
    counted for ("batch 64 × length 100"), ``keys`` which settings lower it."""

    terms: dict[str, int] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.terms.values())

    @property
    def largest(self) -> str:
        return max(self.terms, key=self.terms.__getitem__)

    def without(self, term: str) -> Estimate:
        keep = [t for t in self.terms if t != term]
        return Estimate(*({t: d[t] for t in keep if t in d} for d in (self.terms, self.why, self.keys)))

    def refusal(self, available: int, who: str, scope: str, where: str = "") -> str:
        """One line: ``who`` ("training") needs the estimate ``scope`` (" for one step"), its largest term, more than
        the memory available; what to lower."""
        big = self.largest
        why = f" for {self.why[big]}" if big in self.why else ""
        largest = f" (largest: {LABELS[big]}, {_size(self.terms[big])}{why})" if len(self.terms) > 1 else ""
        return (f"{who} needs about {_size(self.total)}{scope}{largest}, more than the {_size(available)} available"
                f"{where}; {self.keys.get(big, MODEL_HINT)}")  # fmt: skip


def estimate(task: Any, cfg: Any, model: nn.Module, device: torch.device | None = None) -> Estimate:
    """Every term of one training step of ``cfg`` (a RunConfig): its ``task`` (a :class:`dnn.tasks.Task`, prepared),
    ``model`` the run's model (built on the meta device, or real). Nothing is allocated; ``device`` (default CPU) is
    where the probe's fake tensors pretend to be."""
    out = _data_estimate(task)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    t = cfg.train
    moments = {"adam": 2, "adamw": 2, "sgd": 1 if t.momentum > 0 else 0}.get(t.optimizer, 2)
    out.terms.update(parameters=weights, gradients=trainable, optimizer=moments * trainable, kernels=KERNELS)
    out.why["optimizer"] = f"{t.optimizer}, {moments} per parameter"
    plan = task.batch_plan()
    if plan is not None:
        activations = _activations(_meta_twin(model), task, plan, device)
        out.terms["activations"], out.why["activations"] = activations, _shape(plan)
        out.keys["activations"] = f"lower {' or '.join(plan.keys)}"
    return out


def check_memory(task: Any, cfg: Any, model: nn.Module | None = None, device: torch.device | None = None) -> None:
    """Refuse, in one line (a ConfigError), a run that would not fit the memory available now. With ``model`` None
    (before ``task.prepare``): its data; else (``model`` built on the meta device, not yet materialised) its first
    training step — the data is held by then, so the memory available already excludes it."""
    if model is None:
        need, who, scope, on_gpu = _data_estimate(task), "the data", " in memory", False
    else:
        need = estimate(task, cfg, model, device).without("data")
        who, scope = "training", " for one step"
        on_gpu = device is not None and device.type == "cuda"
    available = available_bytes(device if on_gpu else None)
    if available is not None and need.total > available:
        raise ConfigError(need.refusal(available, who, scope, f" on {device}" if on_gpu else ""))


def available_bytes(device: torch.device | None = None) -> int | None:
    """Memory free for a run now: ``$DNN_MEMORY_AVAILABLE`` if set; a CUDA ``device``'s free memory; else the host's
    ``MemAvailable``, else its physical memory; None where none of them is known."""
    given = os.environ.get(OVERRIDE, "").strip()
    if given:
        return _parse_size(given)
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None


# -- the terms -------------------------------------------------------------------------------------------------


def _data_estimate(task: Any) -> Estimate:
    return Estimate({"data": task.data_bytes()}, keys={"data": "lower data.sizes"})


def _meta_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules whose parameters and buffers are meta tensors of the same shapes: nothing of
    its storage is copied, and the model itself is left as it is."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _activations(model: nn.Module, task: Any, plan: BatchPlan, device: torch.device | None) -> int:
    """Bytes autograd saves for one batch of ``plan``: probes of at most PROBE_SIZE × PROBE_LENGTH, scaled up."""
    fake = fakes.FakeTensorMode(allow_non_fake_inputs=True)  # the batch's real CPU tensors join in as fakes
    where = device if device is not None and device.type == "cuda" else torch.device("cpu")
    model = model._apply(lambda t: fake.fake_tensor_converter.from_meta_and_device(fake, t, where)).train()
    size = min(plan.size, PROBE_SIZE)

    def probe(length: int) -> int:
        return _saved_bytes(model, task, plan.make(size, length), fake)

    if plan.length <= PROBE_LENGTH:
        per_batch = probe(plan.length)
    else:  # a + b·L + c·L² through three probes, never below the straight line through the last two
        xs = (PROBE_LENGTH // 4, PROBE_LENGTH // 2, PROBE_LENGTH)
        ys = [probe(x) for x in xs]
        line = ys[2] + (ys[2] - ys[1]) * (plan.length - xs[2]) / (xs[2] - xs[1])
        per_batch = max(_through(xs, ys, plan.length), line)
    return round(BACKWARD * per_batch * plan.size / size)


class _Probe(TorchDispatchMode):
    """Above FakeTensorMode: an op whose tensors are all real (a batch's ids and lengths) runs for real, so that a
    model can read their values; an op with any fake tensor (the model's) or none at all (factories) stays fake.
    oneDNN's LSTM layer gets its workspace (empty from its fake kernel): 64 bytes per step, example, hidden unit."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        if tensors and not any(isinstance(a, fakes.FakeTensor) for a in tensors):
            with fakes.unset_fake_temporarily():
                return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if func is torch.ops.aten.mkldnn_rnn_layer.default and args[15]:  # (input, ..., hidden_size=10, ..., train=15)
            steps_by_batch = args[0].shape[0] * args[0].shape[1]  # T·B, whichever comes first
            out = (*out[:3], torch.empty(64 * steps_by_batch * args[10], dtype=torch.uint8, device=out[0].device))
        return out


def _saved_bytes(model: nn.Module, task: Any, batch: Any, fake: fakes.FakeTensorMode) -> int:
    """What autograd saves for backward in ``task.step`` on ``batch``, once per storage, the model's own tensors
    excluded."""
    own = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in own:  # _cdata: the storage itself, shared by all views of it
            saved[storage._cdata] = storage.nbytes()
        return t

    with torch.random.fork_rng(devices=[]), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        try:
            with fake, _Probe():
                task.step(model, batch, {})
        except NO_FAKE_KERNEL:  # e.g. the CTC loss: what was saved before it counts
            pass
    return sum(saved.values())


def _through(xs: tuple[int, ...], ys: list[int], x: float) -> float:
    """The parabola through the points (xs, ys), at ``x`` (Lagrange)."""
    return sum(y * math.prod((x - b) / (a - b) for b in xs if b != a) for a, y in zip(xs, ys))


# -- words -----------------------------------------------------------------------------------------------------


def _shape(plan: BatchPlan) -> str:
    return f"batch {plan.size:,}" + (f" × length {plan.length:,}" if plan.length else "")


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if match is None:
        raise ConfigError(f"{OVERRIDE} must be a number of bytes, or one with a unit (512M, 8G), got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
