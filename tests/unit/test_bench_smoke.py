"""``make bench`` runs: every section at tiny sizes prints its ratio lines and writes its results file.

A smoke test only: the numbers of a ``--quick`` run are meaningless and nothing here looks at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnn.device import precision_supported

ROOT = Path(__file__).resolve().parents[2]
BF16_HERE = precision_supported(torch.device("cpu"), "bf16") is None
FP32_LINES = [
    "ratio  seq2seq training: dnn 1t vs plain 1t: ",
    "ratio  beam search, beam 5, translate-tsv size: batched 1t vs per sentence 1t: ",
    "ratio  beam search, beam 5, dates-attention size: batched 1t vs per sentence 1t: ",
    "ratio  IMDB LSTM training: dnn fused vs torch.nn: ",
    "rate   matmul peak: matmul fp32 (torch.mm): ",
    "ratio  lenet5 channels_last: lenet5 fp32 channels_last vs lenet5 fp32: ",
    "ratio  threads: LeNet-5 32×32, batch 128: 2 threads vs 1 thread: ",
]
BF16_LINES = [
    "ratio  beam search, beam 5, translate-tsv size: batched bf16 1t vs per sentence bf16 1t: ",
    "rate   matmul peak: matmul bf16 (1×1 conv): ",
    "ratio  lenet5 training, batch 2: lenet5 bf16 vs lenet5 fp32: ",
    "ratio  IMDB LSTM training: dnn fused, bf16 vs torch.nn: ",
]


# as this CPU is, and (where it has bf16 units) as an AVX2-only one: oneDNN capped at AVX2 answers as such a CPU does
@pytest.mark.parametrize("cpu", ["this CPU", pytest.param("AVX2", marks=pytest.mark.bf16)])
def test_run_all_quick_prints_every_ratio_and_writes_the_results(tmp_path, cpu):
    out = tmp_path / "RESULTS.md"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2") if cpu == "AVX2" else None
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    bf16 = BF16_HERE and cpu == "this CPU"
    for start in FP32_LINES + (BF16_LINES if bf16 else []):
        unit = "GFLOP/s" if start.startswith("rate") else "×"
        assert any(line.startswith(start) and unit in line for line in lines), (start, proc.stdout[-3000:])
    assert not any("bf16" in line for line in lines if line.startswith(("ratio", "rate"))) or bf16
    assert any(line.startswith("cpu: ") and "AVX2" in line and f"bf16 units: {'yes' if bf16 else 'no'}" in line
               for line in lines)  # fmt: skip
    assert bf16 or any(line.startswith("bf16 rows skipped: this CPU has no bf16 units") for line in lines)
    assert any(line.startswith("load average before: ") and "after: " in line for line in lines)
    assert any(line.startswith("Keras 3: skipped") for line in lines)  # --quick never imports Keras
    text = out.read_text()
    assert "## Targets" in text and "Load average" in text and "\nCPU: " in text
    if bf16:
        assert "| lenet5 training, batch 2: lenet5 bf16 ≥ 2×" in text
        assert "- lenet5 channels_last, batch 2, what bounds bf16: convolution and matrix-product kernels are " in text
    else:
        assert "bf16" not in text.split("## Targets")[1].split("## Notes")[0]
