"""Device and precision: a device that is not there is one line; batches of every shape follow the device;
autocast really computes in bf16 on the CPU."""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import NamedTuple

import pytest
import torch

from dnn.data.batching import collate_seq2seq
from dnn.device import autocast, check_precision, model_device, resolve_device, to_device
from dnn.errors import ConfigError


def test_auto_is_the_cpu_here_and_an_absent_gpu_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^train.device=cuda: no CUDA device here .*use train.device=cpu or auto$"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"^--device=cuda:1: no CUDA device here"):
        resolve_device("cuda:1", where="--device")
    with pytest.raises(ConfigError, match="train.device must be one of auto, cpu, cuda, cuda:N or mps, got 'gpu'"):
        resolve_device("gpu")


class Pair(NamedTuple):
    a: torch.Tensor
    b: list


def test_to_device_reaches_tensors_in_dataclasses_tuples_named_tuples_and_dicts():
    batch = collate_seq2seq([([4, 5, 6], [7, 8]), ([4], [9])])
    moved = to_device({"batch": batch, "pair": Pair(torch.ones(2), [torch.zeros(1), "x"])}, torch.device("meta"))
    assert moved["batch"].src.device.type == "meta" and moved["batch"].tgt_out.device.type == "meta"
    assert type(moved["batch"]) is type(batch)
    assert moved["pair"].a.device.type == "meta" and moved["pair"].b[0].device.type == "meta"
    assert moved["pair"].b[1] == "x" and isinstance(moved["pair"], Pair)
    assert batch.src.device.type == "cpu"  # the original is untouched


def test_bf16_autocast_computes_in_bf16_on_the_cpu_and_fp32_changes_nothing():
    x, w = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (x @ w).dtype == torch.float32
    with pytest.raises(ConfigError, match="train.precision must be one of fp32, bf16, fp16"):
        check_precision(torch.device("cpu"), "fp8")


def test_model_device_of_a_model_without_parameters_is_the_cpu():
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")


GLIBC_ONLY = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

_FAULTS = """
import resource, sys, torch
from dnn.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
layer = torch.nn.Linear(256, 8000)  # a seq2seq output layer: (B·T, H) → (B·T, V) logits of 82 MB
x, y = torch.randn(2560, 256), torch.randint(0, 8000, (2560,))
faults = []
for step in range(20):  # the first steps grow the heap; the later ones are what every training step sees
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.nn.functional.cross_entropy(layer(x), y).backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, sorted(faults[-8:])[4])  # the median step of the last 8
"""


@GLIBC_ONLY
def test_kept_memory_is_reused_without_page_faults():
    """train.keep_memory: a training step's big buffers (82 MB of logits, their log-softmax and gradients) come
    back from the heap, not as fresh pages the kernel must map and zero on every step (~20,000 faults per 82 MB
    otherwise). Each side runs in its own process: the setting is process-wide and cannot be undone."""
    runs = {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True).stdout
        kept, faults = out.split()
        runs[mode] = (kept == "True", int(faults))
    assert runs["keep"][0] and not runs["default"][0]
    assert runs["default"][1] > 50_000  # a typical late step: every big buffer mapped and zeroed afresh
    assert runs["keep"][1] < 5_000  # none (0 on glibc 2.36 here; a step now and then still moves the heap)


_RELEASE = """
import os, torch
from dnn.device import keep_freed_memory, release_freed_memory
assert keep_freed_memory()
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
x = torch.ones(200 * 2**20 // 4)  # 200 MB, kept on the heap once freed
del x
kept = resident_mb()
release_freed_memory()
print(kept, resident_mb())
"""


@GLIBC_ONLY
def test_released_memory_goes_back_to_the_os():
    """After a run, `dnn train` hands what it kept back: resident memory falls by the freed buffer's size."""
    out = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, check=True).stdout
    kept, released = map(float, out.split())
    assert kept - released > 150, (kept, released)
