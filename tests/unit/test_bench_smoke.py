"""``make bench`` runs: every section at tiny sizes prints its ratio lines and writes its results file.

A smoke test only: the numbers of a ``--quick`` run are meaningless and nothing here looks at a time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_all_quick_prints_every_ratio_and_writes_the_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    expected = [
        "ratio  seq2seq training: dnn 1t vs plain 1t: ",
        "ratio  beam search, beam 5, translate-tsv size: batched 1t vs per sentence 1t: ",
        "ratio  beam search, beam 5, dates-attention size: batched 1t vs per sentence 1t: ",
        "ratio  beam search, beam 5, translate-tsv size: batched bf16 1t vs per sentence bf16 1t: ",
        "ratio  IMDB LSTM training: dnn fused vs torch.nn: ",
        "rate   matmul peak: matmul fp32 (torch.mm): ",
        "rate   matmul peak: matmul bf16 (1×1 conv): ",
        "ratio  lenet5 training, batch 2: lenet5 bf16 vs lenet5 fp32: ",
        "ratio  lenet5 channels_last: lenet5 fp32 channels_last vs lenet5 fp32: ",
        "ratio  threads: LeNet-5 32×32, batch 128: 2 threads vs 1 thread: ",
    ]
    for start in expected:
        unit = "GFLOP/s" if start.startswith("rate") else "×"
        assert any(line.startswith(start) and unit in line for line in lines), (start, proc.stdout[-3000:])
    assert any(line.startswith("load average before: ") and "after: " in line for line in lines)
    assert any(line.startswith("Keras 3: skipped") for line in lines)  # --quick never imports Keras
    text = out.read_text()
    assert "## Targets" in text and "Load average" in text and "| lenet5 training, batch 2: lenet5 bf16 ≥ 2×" in text
    assert "- lenet5 channels_last, batch 2, what bounds bf16: convolution and matrix-product kernels are " in text
