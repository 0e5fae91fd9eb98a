"""bf16 and fp16 only where the device has units for them: a CPU without them refuses in one line before anything
runs, and a layer without a low-precision kernel runs in fp32 inside autocast, said once in the log.

A CPU without bf16 units is reproduced on any x86 machine: ``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN at AVX2, and
torch then reports no bf16 support, emulates bf16 matrix products and has no bf16 LSTM kernel, as on such a CPU.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys

import pytest
import torch

from dnn.device import check_precision, precision_supported, run_in_fp32
from dnn.errors import ConfigError

X86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's ISA cap is x86's")
AVX2 = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
CPU = torch.device("cpu")


def _dnn(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnn.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


@X86
def test_the_capability_follows_torchs_report_and_oneDNNs_isa_cap():
    code = "import torch; from dnn.device import precision_supported as p; print(p(torch.device('cpu'), 'bf16'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=AVX2, timeout=120)
    assert out.stdout.startswith("this CPU has no bf16 units (torch.ops.mkldnn._is_mkldnn_bf16_supported() is False")
    assert precision_supported(CPU, "fp32") is None
    assert (precision_supported(CPU, "bf16") is None) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert (precision_supported(CPU, "fp16") is None) == torch.ops.mkldnn._is_mkldnn_fp16_supported()


def test_a_precision_without_units_is_one_line_naming_the_setting_and_the_way_out(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: False)
    with pytest.raises(ConfigError) as err:
        check_precision(CPU, "bf16")
    message = str(err.value)
    assert message.startswith("train.precision=bf16: this CPU has no bf16 units") and "\n" not in message
    assert message.endswith("; use train.precision=fp32")
    with pytest.raises(ConfigError, match=r"^--precision=fp16: this CPU has no fp16 units .*; use --precision=fp32$"):
        check_precision(CPU, "fp16", where="--precision")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)  # fp16 refused, bf16 offered
    with pytest.raises(ConfigError, match=r"; use train.precision=bf16 or fp32$"):
        check_precision(CPU, "fp16")
    check_precision(CPU, "bf16")


@X86
def test_training_in_bf16_on_a_cpu_without_bf16_units_is_refused_before_anything_runs(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"a {'good' if i % 2 else 'bad'} film,{i % 2}\n" for i in range(40)))
    run_dir = tmp_path / "run"
    r = _dnn("train", "sentiment-lstm", f"data.train={data}", "train.precision=bf16", "--run-dir", str(run_dir),
             env=AVX2)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("dnn: error: train.precision=bf16: this CPU has no bf16 units")
    assert r.stderr.strip().endswith("use train.precision=fp32")
    assert not run_dir.exists()  # refused before the run directory was made


@pytest.mark.skipif(torch.ops.mkldnn._is_mkldnn_fp16_supported(), reason="this CPU has fp16 units")
def test_training_in_fp16_on_a_cpu_without_fp16_units_is_refused(tmp_path):
    r = _dnn("train", "digits-lenet5", "train.precision=fp16", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("dnn: error: train.precision=fp16: this CPU has no fp16 units")
    assert not (tmp_path / "run").exists()


def test_a_kernel_without_a_low_precision_implementation_runs_in_fp32_said_once(caplog):
    calls = []

    def kernel(x, pair):  # oneDNN's answer where it has no kernel for the autocast dtype
        calls.append((x.dtype, torch.is_autocast_enabled("cpu")))
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")
        return x * 2, [p + 1 for p in pair]

    x = torch.ones(3, dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING, logger="dnn"), torch.autocast("cpu", dtype=torch.bfloat16):
        out, pair = run_in_fp32("TEST_CELL", CPU, kernel, x, [torch.zeros(2, dtype=torch.bfloat16)])
        run_in_fp32("TEST_CELL", CPU, kernel, x, [torch.zeros(2, dtype=torch.bfloat16)])
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((3,), 2.0)) and pair[0].dtype == torch.float32
    assert calls[:2] == [(torch.bfloat16, True), (torch.float32, False)]
    said = [r.getMessage() for r in caplog.records if "TEST_CELL" in r.getMessage()]
    assert said == ["precision: TEST_CELL has no bfloat16 kernel on this CPU; it runs in fp32 inside autocast"]

    def broken(x):
        raise RuntimeError("shapes do not match")

    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="shapes do not match"):
        run_in_fp32("TEST_CELL", CPU, broken, x)  # any other error is the caller's to see


_FALLBACK = """
import logging, torch
from dnn.layers.recurrent import LSTM
logging.basicConfig(level=logging.WARNING, format="%(message)s")
torch.manual_seed(0)
lstm, x = LSTM(8, 16, batch_first=True), torch.randn(3, 5, 8)
lengths = torch.tensor([5, 3, 2])
fp32, (h32, _) = lstm(x)
padded32, _ = lstm(x, lengths=lengths)
with torch.autocast("cpu", dtype=torch.bfloat16):
    low, (h, _) = lstm(x)
    lstm(x)
    padded, _ = lstm(x, lengths=lengths)  # torch's packed kernel is not oneDNN's: it runs, in bf16
print(low.dtype, torch.equal(low, fp32), torch.equal(h, h32), torch.allclose(padded, padded32, atol=0.02))
"""


@X86
def test_our_lstm_under_bf16_autocast_on_a_cpu_without_its_kernel_runs_in_fp32_not_into_a_traceback():
    r = subprocess.run([sys.executable, "-c", _FALLBACK], capture_output=True, text=True, env=AVX2, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["torch.float32", "True", "True", "True"]  # the same numbers as fp32
    said = "precision: LSTM has no bfloat16 kernel on this CPU; it runs in fp32 inside autocast"
    assert r.stderr.splitlines() == [said]  # once
