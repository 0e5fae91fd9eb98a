"""dnn — the CNNs and RNNs of "Deep Neural Networks II" as fast, tested, visible software on PyTorch."""

from dnn.errors import CheckpointError, ConfigError, DataError, DnnError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "DataError", "DnnError", "__version__"]
