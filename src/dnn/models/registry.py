"""The model registry: every architecture registered by name with a typed config.

    @register_model("lenet5", LeNet5Config)
    def lenet5(config: LeNet5Config) -> nn.Module: ...

    config = model_config("lenet5", num_classes=10)      # the typed config: every argument checked, once
    model = create_model("lenet5", config)                # built from it, never from loose keywords
    list_models("resnet*")                                # ['resnet18', 'resnet34', 'resnet50']

A config is a dataclass, and building it is where its values are checked: :func:`model_config` (or the config
class itself, ``LeNet5Config(num_classes=10)``) refuses an unknown name with a ConfigError that names the closest
valid one, and a value of the wrong type naming the field, what it expected and what it got. A run builds its
model's config once (:class:`dnn.run_config.ModelSection`) and passes it whole to :func:`create_model`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from dnn.config import config_from_kwargs
from dnn.errors import ConfigError, did_you_mean

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "model_config", "register_model"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type
    factory: Callable[[Any], nn.Module]
    summary: str


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, config_cls: type):
    """Register ``factory(config) -> nn.Module`` under ``name`` with the dataclass ``config_cls``."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config_cls of model {name!r} must be a dataclass, got {config_cls!r}")

    def decorator(factory: Callable[[Any], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        summary = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        _REGISTRY[name] = ModelSpec(name, config_cls, factory, summary)
        return factory

    return decorator


def _load_builtin_models() -> None:
    """Import the modules that register dnn's own models (late, so that the registry has no import cycle)."""
    import importlib

    for module in (
        "dnn.models.cnn",
        "dnn.models.sequence",
        "dnn.models.seq2seq",
        "dnn.models.language",
        "dnn.models.regression",
        "dnn.models.speech",
        "dnn.models.mlp",
        "dnn.models.convnet",
        "dnn.models.transformer",
        "dnn.models.captioning",
        "dnn.models.video",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real import error inside the module: let it show
                raise


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models that match the shell-style ``pattern``, sorted."""
    _load_builtin_models()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_model_spec(name: str) -> ModelSpec:
    _load_builtin_models()
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY, f"; known models: {', '.join(sorted(_REGISTRY))}")
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def model_config(name: str, /, **options: Any) -> Any:
    """The typed config of the model registered as ``name``, filled from keyword arguments and checked; an unknown
    argument or a bad value is a one-line ConfigError (``model 'lenet5': unknown argument 'num_clases'; ...``)."""
    return config_from_kwargs(get_model_spec(name).config_cls, options, context=f"model {name!r}")


def create_model(name: str, config: Any, /) -> nn.Module:
    """Build the model registered as ``name`` from its typed config (:func:`model_config`), checked when it was
    built and passed whole."""
    spec = get_model_spec(name)
    if not isinstance(config, spec.config_cls):
        raise ConfigError(f"model {name!r} takes a {spec.config_cls.__name__}, got {type(config).__name__} (build "
                          f"it with dnn.model_config({name!r}, ...))")  # fmt: skip
    return spec.factory(config)
