"""Test-wide settings.

The suite's tensors are tiny: intra-op threads only add overhead, and on a shared 2-core machine they stall badly
when the other core is busy. Denormals are flushed as in every benchmark and recipe.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread_no_denormals():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)
