"""The lecture's claims, reproduced and measured: ``dnn experiment NAME [--quick]``, ``dnn experiment list``.

Each experiment trains a small grid through the ordinary training code, compares what it measured with an
expectation written in the code before the runs (PASS / FAIL, never adjusted afterwards), and writes
``experiments/<name>/results.md`` with the tables, the papers' numbers it echoes and a plot::

    from dnn.experiments import run_experiment
    result = run_experiment("adding-problem", quick=True, out="/tmp/exp")
    result.verdict                       # "PASS", "FAIL" or "n/a (quick)"
    result.tables[0].rows                # the measured numbers, one dict per row

``--quick`` runs a tiny version in seconds (the test suite runs every one); its verdict is "n/a (quick)" where
the expectation needs the full budget.
"""

from dnn.experiments.base import Check, Context, ExperimentResult, Run, Table
from dnn.experiments.registry import Experiment, experiment, get_experiment, list_experiments, run_experiment

__all__ = [
    "Check",
    "Context",
    "Experiment",
    "ExperimentResult",
    "Run",
    "Table",
    "experiment",
    "get_experiment",
    "list_experiments",
    "run_experiment",
]
