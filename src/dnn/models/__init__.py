"""The architectures the lecture names, registered by name: ``create_model(name, model_config(name, **options))``."""

from dnn.models.registry import create_model, get_model_spec, list_models, model_config, register_model

__all__ = ["create_model", "get_model_spec", "list_models", "model_config", "register_model"]
