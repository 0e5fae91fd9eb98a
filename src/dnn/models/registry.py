"""The model registry: every architecture registered by name with a typed config.

    @register_model("lenet5", LeNet5Config)
    def lenet5(config: LeNet5Config) -> nn.Module: ...

    model = create_model("lenet5", num_classes=10)       # keyword arguments fill the config
    list_models("resnet*")                                # ['resnet18', 'resnet34', 'resnet50']

A config is a dataclass. ``create_model`` checks every argument against it before anything is built: an unknown
name is a ConfigError that names the closest valid one, a value of the wrong type names the field, what it
expected and what it got.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from dnn.errors import ConfigError

__all__ = ["ModelSpec", "config_from_kwargs", "create_model", "get_model_spec", "list_models", "register_model"]


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

    for module in ("dnn.models.cnn", "dnn.models.sequence", "dnn.models.seq2seq", "dnn.models.language"):
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
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known models: {', '.join(sorted(_REGISTRY))}"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def create_model(name: str, **config: Any) -> nn.Module:
    """Build the model registered as ``name``; keyword arguments fill its config (see :func:`list_models`)."""
    spec = get_model_spec(name)
    return spec.factory(config_from_kwargs(spec.config_cls, config, context=f"model {name!r}"))


def config_from_kwargs(config_cls: type, values: dict[str, Any], context: str) -> Any:
    """Fill the dataclass ``config_cls`` from ``values``, checking names and types; errors name the field."""
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    hints = typing.get_type_hints(config_cls)
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(fields)}"
            raise ConfigError(f"{context}: unknown argument {key!r}{hint}")
    coerced = {}
    for key, value in values.items():
        coerced[key] = _coerce(value, hints[key], f"{context}: {key}")
    missing = [
        n
        for n, f in fields.items()
        if n not in coerced and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{context}: missing required argument {missing[0]!r}")
    try:
        return config_cls(**coerced)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a __post_init__ check written with a plain exception
        raise ConfigError(f"{context}: {err}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow int → float and list → tuple, nothing else."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a sequence, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value))]
        else:
            items = [_coerce(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else list(items)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value
