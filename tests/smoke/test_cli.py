"""End to end through the installed `dnn` command and the benchmark script, as a user runs them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DNN = [sys.executable, "-m", "dnn.cli"]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def test_version_and_help():
    r = run(DNN + ["--version"])
    assert r.returncode == 0 and r.stdout.startswith("dnn ")
    r = run(DNN)
    assert r.returncode == 0 and "demo" in r.stdout


def test_user_error_is_one_line_on_stderr_and_exit_2():
    r = run(DNN + ["demo", "--steps", "0"])
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dnn: error: --steps must be at least 4")
    assert "Traceback" not in r.stderr


def test_demo_runs_end_to_end_and_draws(tmp_path):
    r = run(DNN + ["demo", "--steps", "8", "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    for section in ("Convolution arithmetic", "Vanishing gradients", "adding problem", "Attention"):
        assert section in r.stdout
    assert "✗" not in r.stdout  # every conv size formula matched the real layer
    png = tmp_path / "gradient_flow.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_benchmark_quick_run_prints_every_variant(tmp_path):
    out = tmp_path / "rows.json"
    r = run(
        [sys.executable, str(ROOT / "benchmarks" / "recurrent.py"), "--quick", "--cells", "lstm", "--json", str(out)]
    )
    assert r.returncode == 0, r.stderr
    for variant in ("torch.nn", "torch.nn, denormals", "dnn fused", "dnn reference"):
        assert f"| lstm | {variant} |" in r.stdout
    assert out.exists() and "samples_per_s" in out.read_text()
