"""Seeing inside the models: gradient flow through time (more pictures arrive with the inspection issue)."""

from dnn.inspect.gradient_flow import gradient_norms_through_time

__all__ = ["gradient_norms_through_time"]
