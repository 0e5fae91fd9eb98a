"""Seeing inside the models: attention heatmaps, gradient flow through time, filters and feature maps, training
curves, confusion matrices, and ``report.html`` for a run.

    from dnn.inspect import write_report, attention_heatmap, gradient_flow
    write_report("runs/dates")                               # runs/dates/report.html + runs/dates/figures/*.png
    attention_heatmap(["a", "b"], ["x"], [[0.3, 0.7]], "heat.png")

Every picture has a function that takes plain data (:mod:`dnn.inspect.plots`, :mod:`dnn.inspect.curves`); the
data of a trained run comes from :mod:`dnn.inspect.collect`; :func:`write_report` puts them together.
"""

from dnn.inspect.collect import (
    attention_examples,
    confusion,
    first_conv_weights,
    stage_feature_maps,
    task_gradient_flow,
)
from dnn.inspect.curves import read_metrics, training_curves
from dnn.inspect.gradient_flow import GradientFlow, gradient_flow, gradient_norms_through_time, recurrent_stacks
from dnn.inspect.plots import (
    accuracy_by_length_plot,
    attention_heatmap,
    confusion_matrix_plot,
    feature_maps_plot,
    filters_plot,
    gradient_flow_plot,
)
from dnn.inspect.report import write_report

__all__ = [
    "GradientFlow",
    "accuracy_by_length_plot",
    "attention_examples",
    "attention_heatmap",
    "confusion",
    "confusion_matrix_plot",
    "feature_maps_plot",
    "filters_plot",
    "first_conv_weights",
    "gradient_flow",
    "gradient_flow_plot",
    "gradient_norms_through_time",
    "read_metrics",
    "recurrent_stacks",
    "stage_feature_maps",
    "task_gradient_flow",
    "training_curves",
    "write_report",
]
