"""Tasks: what turns a kind of data into batches, a loss, metrics and predictions (the trainer knows none of it).

The contract is :class:`~dnn.tasks.base.Task` (and :class:`~dnn.tasks.base.Predictor` for a trained run); the
classes are registered by ``data.task`` in :mod:`dnn.tasks.registry`.
"""

from dnn.tasks.base import Predictor, Task
from dnn.tasks.registry import get_task, list_tasks, make_task, register_task, task_class

__all__ = ["Predictor", "Task", "get_task", "list_tasks", "make_task", "register_task", "task_class"]
