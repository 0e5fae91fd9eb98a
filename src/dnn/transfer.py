"""Transfer learning: reuse a trained CNN body, train a new head (and maybe the top of the body).

A CNN of :mod:`dnn.models.cnn` names its parts in input-to-output order (``model.stages()``; ResNet:
``stem, layer1, layer2, layer3, layer4, head``). The usual recipe::

    model = create_model("resnet18", num_classes=10)
    load_pretrained(model, "resnet18.pt")             # body from the checkpoint; a 1000-class head is skipped
    freeze(model, up_to="layer3")                     # stem … layer3 fixed: no gradient, BatchNorm statistics kept
    optimizer = torch.optim.SGD(param_groups(model, body_lr=1e-3, head_lr=1e-2, weight_decay=1e-4), momentum=0.9)
    ...
    unfreeze(model)                                   # then fine-tune everything, usually with a small body_lr

Frozen means ``requires_grad = False`` *and* frozen BatchNorm statistics: a BatchNorm layer whose parameters are
all frozen stays in eval mode (normalising with its running mean and variance, never updating them) even when
``model.train()`` is called — the rule lives in :meth:`dnn.models.cnn_base.ImageClassifier.train`, so it holds
for whoever switches the mode (a trainer, a wrapper module). Unfreezing hands the statistics back to training.

Checkpoints are read without unpickling code: ``.safetensors`` files through the ``safetensors`` package (an
optional dependency), anything else through ``torch.load(path, weights_only=True)``, which only accepts tensors
and plain containers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from dnn.checks import number_in
from dnn.errors import CheckpointError, ConfigError
from dnn.models.cnn_base import HEAD_STAGE, ImageClassifier

__all__ = [
    "GradualUnfreezing",
    "LoadResult",
    "discriminative_groups",
    "freeze",
    "frozen_stages",
    "load_language_model",
    "load_pretrained",
    "param_groups",
    "read_state_dict",
    "replace_head",
    "set_trainable_groups",
    "stage_names",
    "text_layer_groups",
    "unfreeze",
]


# ----------------------------------------------------------------------------------------------------------
# stages
# ----------------------------------------------------------------------------------------------------------


def _stages(model: nn.Module) -> dict[str, list[nn.Module]]:
    if not isinstance(model, ImageClassifier):
        raise ConfigError(
            f"transfer learning needs a dnn CNN (an ImageClassifier with named stages), got {type(model).__name__}"
        )
    return model.stages()


def stage_names(model: ImageClassifier) -> list[str]:
    """The model's stage names in input-to-output order; the last one is ``"head"``."""
    return list(_stages(model))


def _stage_params(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


def _body_slice(model: ImageClassifier, stage: str | None, argument: str, first: bool) -> list[str]:
    """Body stages up to and including ``stage`` (``first=False``) or from ``stage`` on (``first=True``)."""
    body = [name for name in _stages(model) if name != HEAD_STAGE]
    if stage is None:
        return body
    if stage not in body:
        raise ConfigError(
            f"{argument}: {model.name} has no body stage {stage!r}; valid stages: {', '.join(body)}"
            + (" (the head is never frozen: use the model's last body stage)" if stage == HEAD_STAGE else "")
        )
    i = body.index(stage)
    return body[i:] if first else body[: i + 1]


def _set_frozen(model: ImageClassifier, names: list[str], frozen: bool) -> None:
    stages = model.stages()
    for name in names:
        for p in _stage_params(stages[name]):
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None  # a stale gradient would still move the parameter in a momentum/decay step
        if model.training:  # apply the BatchNorm rule of ImageClassifier.train now, not at the next train()
            for m in stages[name]:
                for bn in m.modules():
                    if isinstance(bn, _BatchNorm):
                        bn.train(not frozen)


def freeze(model: ImageClassifier, up_to: str | None = None) -> list[str]:
    """Freeze the body from its first stage up to and including ``up_to`` (``None``: the whole body).

    Their parameters get ``requires_grad = False`` (and lose any stored gradient) and their BatchNorm layers stay
    in eval mode from now on. Later stages and the head are left as they are. Returns the frozen stage names.
    A stage name that is not one of the body's raises :class:`ConfigError` listing the valid ones.
    """
    names = _body_slice(model, up_to, "up_to", first=False)
    _set_frozen(model, names, True)
    return names


def unfreeze(model: ImageClassifier, from_stage: str | None = None) -> list[str]:
    """Make the body trainable again from ``from_stage`` to its end (``None``: the whole body; gradual
    unfreezing calls this with earlier and earlier stages). Returns the unfrozen stage names."""
    names = _body_slice(model, from_stage, "from_stage", first=True)
    _set_frozen(model, names, False)
    return names


def frozen_stages(model: ImageClassifier) -> list[str]:
    """Names of the stages whose parameters all have ``requires_grad = False`` (stages without any are skipped)."""
    out = []
    for name, modules in _stages(model).items():
        params = _stage_params(modules)
        if params and not any(p.requires_grad for p in params):
            out.append(name)
    return out


def replace_head(model: ImageClassifier, num_classes: int) -> nn.Linear:
    """A new, freshly initialised output layer with ``num_classes`` outputs (``model.reset_classifier``)."""
    _stages(model)
    return model.reset_classifier(num_classes)


# ----------------------------------------------------------------------------------------------------------
# optimizer parameter groups
# ----------------------------------------------------------------------------------------------------------


def param_groups(
    model: ImageClassifier, body_lr: float, head_lr: float, weight_decay: float = 0.0, include_frozen: bool = False
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the trainable body with ``body_lr``, the head with ``head_lr``.

    Returns ``[{"name": "body", "params": [...], "lr": body_lr, "weight_decay": weight_decay},
    {"name": "head", ...}]`` for ``torch.optim.*(groups, ...)``; frozen parameters are left out (unless
    ``include_frozen``: a body unfrozen later trains on in the same optimiser; a parameter without a gradient is
    not changed by it), and so is a group with nothing left in it. Raises :class:`ConfigError` if every parameter
    is frozen.
    """
    rates = {n: number_in(f"param_groups: {n}", v, 0) for n, v in (("body_lr", body_lr), ("head_lr", head_lr))}
    decay = number_in("param_groups: weight_decay", weight_decay, 0)
    head_ids = {id(p) for p in _stage_params(_stages(model)[HEAD_STAGE])}
    body, head = [], []
    for p in model.parameters():
        if p.requires_grad or include_frozen:
            (head if id(p) in head_ids else body).append(p)
    groups = [
        {"name": name, "params": params, "lr": rates[f"{name}_lr"], "weight_decay": decay}
        for name, params in (("body", body), ("head", head))
        if params
    ]
    if not groups:
        raise ConfigError(f"param_groups: every parameter of {model.name} is frozen; nothing to train")
    return groups


# ----------------------------------------------------------------------------------------------------------
# pretrained weights
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_pretrained` did, by state-dict key.

    ``loaded``: copied into the model. ``missing``: model keys the checkpoint did not fill (they keep their
    values). ``unexpected``: checkpoint keys the model has no place for. ``skipped``: checkpoint keys left out on
    purpose — a head of another size, keys the model ignores (GoogLeNet's ``aux1.*``/``aux2.*``) and, with
    ``strict=False``, tensors of the wrong shape.
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    skipped: tuple[str, ...]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``path`` without running pickled code.

    ``.safetensors`` → ``safetensors.torch.load_file`` (needs the ``safetensors`` package); anything else →
    ``torch.load(path, map_location="cpu", weights_only=True)``. A ``{"state_dict": ...}`` or ``{"model": ...}``
    wrapper is unwrapped and a ``module.`` prefix (DataParallel) is removed. Errors are :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ModuleNotFoundError:
            raise CheckpointError(
                f"reading {path} needs the safetensors package (pip install safetensors); "
                f"or save the weights with torch.save(model.state_dict(), 'weights.pt')"
            ) from None
        try:
            obj: Any = load_file(str(path))
        except Exception as err:  # any decoding failure means a bad file
            raise CheckpointError(f"cannot read {path} as safetensors: {_first_line(err)}") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError (a refused object), EOFError, …
            raise CheckpointError(
                f"cannot read {path} as a weights-only torch checkpoint: {_first_line(err)}"
            ) from None
    return _as_state_dict(obj, str(path))


def _as_state_dict(obj: object, where: str) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{where}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(
                f"{where}: expected a state dict of tensors, but key {key!r} holds {type(value).__name__}"
            )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _preview(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", … ({len(keys) - n} more)" if len(keys) > n else "")


def load_pretrained(
    model: ImageClassifier,
    source: Mapping[str, Tensor] | str | os.PathLike,
    *,
    strict: bool = True,
    skip_head: bool = True,
) -> LoadResult:
    """Copy weights from ``source`` (a state dict or a checkpoint path, see :func:`read_state_dict`) into ``model``.

    ``skip_head``: head tensors whose shape differs from the model's (another number of classes) are skipped and
    the model keeps its own head; a checkpoint without a head is fine too. ``strict``: any other missing key,
    unexpected key or shape mismatch raises a one-line :class:`CheckpointError` naming them, *before* the model is
    changed; with ``strict=False`` whatever fits by name and shape is loaded and the rest is reported in the
    returned :class:`LoadResult`. BatchNorm's ``num_batches_tracked`` may be absent (older checkpoints).
    """
    _stages(model)  # a dnn CNN, else ConfigError
    where = "state dict" if isinstance(source, Mapping) else str(source)
    state = _as_state_dict(source, where) if isinstance(source, Mapping) else read_state_dict(source)
    own = model.state_dict()
    head_prefix = model.head_path + "."

    kept: dict[str, Tensor] = {}
    skipped, unexpected, mismatched = [], [], []
    for key, value in state.items():
        if key.startswith(model.checkpoint_ignore):
            skipped.append(key)
        elif key not in own:
            unexpected.append(key)
        elif value.shape == own[key].shape:
            kept[key] = value
        elif skip_head and key.startswith(head_prefix):
            skipped.append(key)
        elif not strict:
            skipped.append(key)
        else:
            mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(own[key].shape)}")
    # model keys absent from the checkpoint; num_batches_tracked is optional, a head of its own is fine
    missing = [
        k
        for k in own
        if k not in state and not k.endswith("num_batches_tracked") and not (skip_head and k.startswith(head_prefix))
    ]

    if strict and (missing or unexpected or mismatched):
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys ({_preview(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches ({_preview(mismatched, 2)})")
        raise CheckpointError(
            f"{where} does not fit {model.name}: {'; '.join(problems)}; pass strict=False to load only what fits"
        )

    model.load_state_dict(kept, strict=False)
    return LoadResult(
        loaded=tuple(kept),
        missing=tuple(k for k in own if k not in kept and not (k.endswith("num_batches_tracked") and k not in state)),
        unexpected=tuple(unexpected),
        skipped=tuple(skipped),
    )


# ----------------------------------------------------------------------------------------------------------
# text: a language model's encoder in a sequence classifier (ULMFiT, Howard & Ruder 2018)
# ----------------------------------------------------------------------------------------------------------

LM_TO_CLASSIFIER = {"embedding.": "encoder.embedding.", "rnn.": "encoder.rnn.", "output.": None}  # None: dropped


def text_layer_groups(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """ULMFiT's layer groups of a sequence classifier, input to output: ``embedding``, ``rnn0`` … ``rnn{L-1}``
    (each recurrent layer, both directions), ``head`` (everything above the encoder: head, attention pooling)."""
    from dnn.models.sequence import SequenceClassifier

    if not isinstance(model, SequenceClassifier):
        raise ConfigError(f"text transfer needs a sequence_classifier, got {type(model).__name__}")
    layers = model.config.num_layers
    groups: dict[str, list[nn.Parameter]] = {"embedding": [], **{f"rnn{k}": [] for k in range(layers)}, "head": []}
    for name, p in model.named_parameters():
        if name.startswith("encoder.embedding."):
            groups["embedding"].append(p)
        elif name.startswith("encoder.rnn."):
            layer = name.rsplit("_l", 1)[-1].split("_")[0]  # weight_ih_l1_reverse → 1
            groups[f"rnn{int(layer)}" if layer.isdigit() else f"rnn{layers - 1}"].append(p)
        else:
            groups["head"].append(p)
    return [(name, params) for name, params in groups.items() if params]


def load_language_model(model: nn.Module, state: Mapping[str, Tensor], where: str) -> LoadResult:
    """Copy a language model's ``embedding.*`` → ``encoder.embedding.*`` and ``rnn.*`` → ``encoder.rnn.*``.

    Every encoder tensor of the classifier must be filled, with its shape; else a one-line
    :class:`CheckpointError` naming what did not fit, before anything is changed. The LM's output layer is
    dropped; the classifier's head keeps its fresh initialisation.
    """
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        for prefix, target in LM_TO_CLASSIFIER.items():
            if key.startswith(prefix):
                if target is not None:
                    mapped[target + key[len(prefix) :]] = value
                break
    encoder = [k for k in own if k.startswith("encoder.")]
    missing = [k for k in encoder if k not in mapped]
    extra = [k for k in mapped if k not in own]
    wrong = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}"
             for k in encoder if k in mapped and mapped[k].shape != own[k].shape]  # fmt: skip
    if missing or extra or wrong:
        problems = [f"{len(v)} {what} ({_preview(v, 2)})"
                    for what, v in (("not in the language model", missing), ("without a place", extra),
                                    ("of another shape", wrong)) if v]  # fmt: skip
        raise CheckpointError(f"{where} does not fit the classifier's encoder: {'; '.join(problems)}")
    model.load_state_dict(mapped, strict=False)
    return LoadResult(
        tuple(mapped), tuple(k for k in own if k not in mapped), (), tuple(k for k in state if k.startswith("output."))
    )


def discriminative_groups(model: nn.Module, lr: float, factor: float = 2.6, weight_decay: float = 0.0
                          ) -> list[dict[str, Any]]:  # fmt: skip
    """One optimiser group per layer group, ``lr`` for the head and ``lr / factor^d`` d groups below it
    (ULMFiT's discriminative fine-tuning: η^{l−1} = η^l / 2.6). Frozen parameters are included: a group
    unfrozen later trains on in the same optimiser (a parameter without a gradient is not stepped)."""
    lr = number_in("discriminative_groups: lr", lr, 0)
    factor = number_in("discriminative_groups: factor", factor, 0, low_open=True)  # lr / factor^d
    decay = number_in("discriminative_groups: weight_decay", weight_decay, 0)
    groups = text_layer_groups(model)
    top = len(groups) - 1
    return [{"name": name, "params": params, "lr": lr / factor ** (top - i), "weight_decay": decay}
            for i, (name, params) in enumerate(groups)]  # fmt: skip


def set_trainable_groups(model: nn.Module, top: int) -> list[str]:
    """Only the ``top`` highest layer groups train; those below are frozen. Returns the trainable names."""
    groups = text_layer_groups(model)
    cut = max(0, len(groups) - top)
    for i, (_, params) in enumerate(groups):
        for p in params:
            p.requires_grad_(i >= cut)
            if i < cut:
                p.grad = None
    return [name for name, _ in groups[cut:]]


class GradualUnfreezing:
    """A trainer callback (ULMFiT's gradual unfreezing): epoch 1 trains the head only, each next epoch one more
    layer group from the top, until all train. A function of the epoch alone, so a resumed run agrees."""

    def __init__(self, model: nn.Module, log=None):
        self.model, self.log, self.shown = model, log, -1

    def on_epoch_start(self, trainer, epoch, **_):
        names = set_trainable_groups(self.model, epoch + 1)
        if self.log is not None and epoch != self.shown:
            self.shown = epoch
            self.log(f"transfer: epoch {epoch + 1}: training {', '.join(names)} (train.gradual_unfreeze)")
