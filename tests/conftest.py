"""Test-wide settings.

The suite's tensors are tiny: intra-op threads only add overhead, and on a shared 2-core machine they stall badly
when the other core is busy. Denormals are flushed as in every benchmark and recipe.

Tests marked ``bf16`` or ``fp16`` need the CPU's units for that precision and are skipped, with the reason, on a
CPU without them (as the ``cuda`` tests are without a GPU); dnn refuses those precisions there, and that refusal is
tested on every CPU (``ONEDNN_MAX_CPU_ISA=AVX2`` makes any machine answer as an AVX2-only one).
To run the whole suite as such a machine: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 make test``.
"""

import pytest
import torch

from dnn.device import precision_supported


def pytest_collection_modifyitems(config, items):
    cpu = torch.device("cpu")
    for precision in ("bf16", "fp16"):
        why = precision_supported(cpu, precision)
        if why is None:
            continue
        skip = pytest.mark.skip(reason=f"needs {precision} units: {why.split(' (')[0]}")
        for item in items:
            if precision in item.keywords and item.get_closest_marker(precision) is not None:
                item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_thread_no_denormals():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)
