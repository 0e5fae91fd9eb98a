"""dnn — the CNNs and RNNs of "Deep Neural Networks II" as fast, tested, visible software on PyTorch.

import dnn
config = dnn.model_config("lenet5", num_classes=10, in_channels=1, image_size=8)  # typed and checked, once
model = dnn.create_model("lenet5", config)
dnn.list_models("resnet*")
"""

from dnn.errors import CheckpointError, ConfigError, DataError, DnnError

__version__ = "0.1.0"

_LAZY = {  # imported on first use, so that `import dnn` (and `dnn --help`) stays fast
    "create_model": "dnn.models.registry",
    "list_models": "dnn.models.registry",
    "model_config": "dnn.models.registry",
    "Trainer": "dnn.training.trainer",
    "load_run": "dnn.run",
    "train": "dnn.train",
    "make_task": "dnn.tasks",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DnnError",
    "Trainer",
    "__version__",
    "create_model",
    "list_models",
    "load_run",
    "make_task",
    "model_config",
    "train",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dnn' has no attribute {name!r}")
