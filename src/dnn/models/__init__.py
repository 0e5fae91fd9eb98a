"""The architectures the lecture names, registered by name: ``create_model(name, **config)``."""

from dnn.models.registry import create_model, get_model_spec, list_models, register_model

__all__ = ["create_model", "get_model_spec", "list_models", "register_model"]
