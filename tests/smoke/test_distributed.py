"""The same `dnn train` under torchrun with 2 CPU processes (gloo): it runs, and both ranks end identical."""

import json
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_data_parallel_training_ends_with_identical_weights(tmp_path):
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "--master_addr=127.0.0.1", "-m", "dnn.cli", "train", "digits-lenet5", "train.epochs=2", "train.threads=1",
        "model.dropout=0.2", "--run-dir", str(run_dir), "--quiet",
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["processes"] == 2
    assert results["weights_identical_across_processes"] is True
    assert results["steps"] == 2 * (40 // 2)  # 40 batches of 32 an epoch, shared by 2 processes
    assert r.stdout.count('"processes": 2') == 1  # only rank 0 speaks
    log = (run_dir / "log.txt").read_text()
    assert log.count("distributed: 2 processes, gloo") == 1  # only rank 0 writes
