"""The task registry: every task class registered under the ``data.task`` values it trains.

    @register_task("digits", "image_folder")
    class ImageClassification(Task): ...

    task = make_task(cfg)                 # cfg.data.task → the class, built with the run's config
    get_task("seq2seq")                   # the class
    task_class("Seq2SeqTask")             # the class a run's task.json names

Each ``data.task`` value has its own data config (:data:`dnn.run_config.DATA_CONFIGS`); a task registered under a
name that has none is a programming error caught at import.
"""

from __future__ import annotations

import difflib
from typing import Any

from dnn.errors import CheckpointError, ConfigError
from dnn.run_config import DATA_CONFIGS
from dnn.tasks.base import PREDICTOR_KINDS, Predictor, Task

__all__ = ["get_task", "list_tasks", "make_task", "predictor_classes", "register_task", "task_class"]

_REGISTRY: dict[str, type[Task]] = {}
_BUILTIN = (
    "dnn.tasks.images", "dnn.tasks.text", "dnn.tasks.seq2seq", "dnn.tasks.language", "dnn.tasks.adding",
    "dnn.tasks.speech", "dnn.tasks.captioning", "dnn.tasks.video",
)  # fmt: skip
_LEGACY_NAMES = {"image_classification": "ImageClassification"}  # task.json of runs made before it named classes


def register_task(*names: str):
    """Register a :class:`~dnn.tasks.base.Task` subclass under the ``data.task`` values ``names``."""

    def decorator(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"@register_task: {cls!r} is not a subclass of dnn.tasks.base.Task")
        for name in names:
            if name not in DATA_CONFIGS:
                raise TypeError(f"@register_task: data.task {name!r} has no data config in dnn.run_config")
            if name in _REGISTRY and _REGISTRY[name] is not cls:
                raise TypeError(f"data.task {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
            _REGISTRY[name] = cls
        cls.task_names = tuple(names)
        return cls

    return decorator


def _load_builtin_tasks() -> None:
    import importlib

    for module in _BUILTIN:
        importlib.import_module(module)


def predictor_classes() -> list[type[Predictor]]:
    """Every predictor class of the built-in tasks, in the order of :data:`dnn.tasks.base.PREDICTOR_KINDS`."""
    _load_builtin_tasks()
    found, todo = [], list(Predictor.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    order = list(PREDICTOR_KINDS)
    # a class whose declaration was refused (an unknown kind) may linger among the subclasses until it is collected
    valid = {cls for cls in found if cls.kind in PREDICTOR_KINDS}
    return sorted(valid, key=lambda cls: (order.index(cls.kind), cls.__name__))


def list_tasks() -> list[str]:
    """The ``data.task`` values dnn can train."""
    _load_builtin_tasks()
    return sorted(_REGISTRY)


def get_task(name: str) -> type[Task]:
    _load_builtin_tasks()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"data.task must be one of {', '.join(sorted(_REGISTRY))}; got {name!r}{hint}")
    return _REGISTRY[name]


def make_task(cfg: Any) -> Task:
    """The task that trains ``cfg`` (a :class:`~dnn.run_config.RunConfig`), built but not yet prepared."""
    return get_task(cfg.data.task)(cfg)


def task_class(name: str) -> type[Task]:
    """The task class a run's task.json names (by class name)."""
    _load_builtin_tasks()
    name = _LEGACY_NAMES.get(name, name)
    for cls in _REGISTRY.values():
        if cls.__name__ == name:
            return cls
    raise CheckpointError(f"task.json names an unknown task {name!r}")
