"""Transfer learning set up for one run (``train.init_from``, ``freeze_up_to``, ``body_lr``, ``unfreeze_after``,
``gradual_unfreeze``): a CNN from another CNN run, or a sequence classifier from a language model run (ULMFiT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dnn import transfer
from dnn.errors import CheckpointError, ConfigError
from dnn.models.cnn_base import ImageClassifier
from dnn.models.sequence import SequenceClassifier
from dnn.rundir import MODEL, TASK, RunDir

__all__ = ["Unfreeze", "language_model_run", "parameters", "transfer_callbacks"]


def parameters(model: torch.nn.Module, t: Any, log) -> Any:
    """What the optimiser trains: the model's parameters, or the parameter groups transfer learning asks for."""
    if t.unfreeze_after and not t.freeze_up_to:
        raise ConfigError("train.unfreeze_after unfreezes what train.freeze_up_to froze; set train.freeze_up_to too")
    if not (t.init_from or t.freeze_up_to or t.body_lr or t.gradual_unfreeze):
        return model.parameters()
    if isinstance(model, SequenceClassifier):
        return _from_language_model(model, t, log)
    works = ("train.init_from / freeze_up_to / body_lr / unfreeze_after work for CNNs (the image models); "
             "train.init_from=LM_RUN with train.gradual_unfreeze for a sequence_classifier")  # fmt: skip
    if not isinstance(model, ImageClassifier) or t.gradual_unfreeze:
        raise ConfigError(
            f"{works}; not for {type(model).__name__}"
            + (" with train.gradual_unfreeze" if isinstance(model, ImageClassifier) else "")
        )
    if t.init_from:
        source = Path(t.init_from)
        weights = RunDir.reader(source).verified(MODEL, "weights file") if source.is_dir() else source
        try:  # strict: a checkpoint of another model, or of another shape, loads nothing silently
            result = transfer.load_pretrained(model, weights, strict=True, skip_head=True)
        except CheckpointError as err:
            reason = str(err).replace("; pass strict=False to load only what fits", "")
            raise CheckpointError(f"train.init_from: {reason} (start from a run of the same model, "
                                  f"model.name={model.name!r}, trained on images of the same size and channels)"
                                  ) from None  # fmt: skip
        fresh = f"; the head ({len(result.skipped)} tensors) starts afresh" if result.skipped else ", the head too"
        log(f"transfer: {len(result.loaded)} tensors from {weights}{fresh}")
    if t.freeze_up_to:
        frozen = transfer.freeze(model, None if t.freeze_up_to == "body" else t.freeze_up_to)
        log(f"transfer: frozen stages {', '.join(frozen)} (their BatchNorm statistics too)")
    return transfer.param_groups(model, t.body_lr or t.lr, t.lr, t.weight_decay, include_frozen=t.unfreeze_after > 0)


def language_model_run(init_from: str) -> RunDir:
    """The language model run that ``train.init_from`` names (ULMFiT): its weights, tokenizer and vocabulary are
    a text classifier's start. Any other run, or no run, is refused in one line."""
    source = Path(init_from)
    run = RunDir.reader(source) if source.is_dir() else None
    task = run.read_json(TASK, "a run's task.json").get("task") if run is not None and run.has(TASK) else None
    if task != "LanguageModelling":
        raise ConfigError(f"train.init_from={init_from}: a text classifier starts from a language model run "
                          f"(task.json says LanguageModelling), this is {task or 'no dnn run'}; train one with "
                          f"`dnn train lm-pydoc-words`")  # fmt: skip
    return run


def _from_language_model(model: torch.nn.Module, t: Any, log):
    """A sequence classifier from a language model run: its embedding and recurrent layers, a new head."""
    if t.freeze_up_to or t.body_lr or t.unfreeze_after or not t.init_from:
        raise ConfigError("a sequence_classifier transfers with train.init_from=LM_RUN (a language_model run of the "
                          "same tokenizer), train.gradual_unfreeze and train.layer_lr_factor; train.freeze_up_to, "
                          "body_lr and unfreeze_after are for CNNs")  # fmt: skip
    run = language_model_run(t.init_from)
    weights = run.verified(MODEL, "weights file")
    try:
        result = transfer.load_language_model(model, transfer.read_state_dict(weights), str(weights))
    except CheckpointError as err:
        raise CheckpointError(f"train.init_from: {err} (the classifier takes the language model's embedding_size, "
                              f"hidden_size, num_layers and cell, one direction)") from None  # fmt: skip
    log(f"transfer: {len(result.loaded)} encoder tensors from {weights}; the head starts afresh")
    groups = transfer.discriminative_groups(model, t.lr, t.layer_lr_factor, t.weight_decay)
    log("transfer: learning rates " + ", ".join(f"{g['name']} {g['lr']:.2g}" for g in groups))
    return groups


def transfer_callbacks(model: torch.nn.Module, t: Any, log) -> list[Any]:
    """The callbacks that unfreeze what transfer learning froze, as the config asks."""
    callbacks: list[Any] = []
    if t.unfreeze_after:
        callbacks.append(Unfreeze(model, t.unfreeze_after, log))
    if t.gradual_unfreeze:
        callbacks.append(transfer.GradualUnfreezing(model, log))
    return callbacks


class Unfreeze:
    """``train.unfreeze_after``: the frozen body trains again from epoch N on (also after a resume past it)."""

    def __init__(self, model: torch.nn.Module, after: int, log):
        self.model, self.after, self.log = model, after, log

    def on_epoch_start(self, trainer, epoch, **_):
        if epoch >= self.after and transfer.frozen_stages(self.model):
            stages = transfer.unfreeze(self.model)
            self.log(f"transfer: epoch {epoch + 1}: stages {', '.join(stages)} unfrozen (train.unfreeze_after)")
