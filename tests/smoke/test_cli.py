"""End to end through the installed `dnn` command and the benchmark script, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    r = run(DNN + ["demo", "--max-steps", "-1"])
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dnn: error: --max-steps must be 0")
    assert "Traceback" not in r.stderr


def test_demo_runs_end_to_end_and_draws(tmp_path):
    r = run(DNN + ["demo", "--max-steps", "5", "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    for section in ("Convolution arithmetic", "Vanishing gradients", "Attention", "dnn train digits-lenet5",
                    "dnn train dates-attention", "results (test split)"):  # fmt: skip
        assert section in r.stdout
    assert (tmp_path / "digits-lenet5" / "model.safetensors").is_file()
    assert (tmp_path / "dates-attention" / "results.json").is_file()
    for recipe in ("digits-lenet5", "dates-attention"):  # the table says where each run's report is, and it is there
        assert f"   {tmp_path / recipe / 'report.html'}\n" in r.stdout and (tmp_path / recipe / "report.html").is_file()
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
        assert f"| IMDB LSTM training | {variant} |" in r.stdout
    assert out.exists() and '"unit": "samples/s"' in out.read_text()


def test_train_eval_predict_and_list_through_the_command(tmp_path):
    run_dir = tmp_path / "lenet"
    r = run(DNN + ["train", "digits-lenet5", "train.epochs=1", "--run-dir", str(run_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert results["steps"] == 40 and 0.0 <= results["test"]["accuracy"] <= 1.0
    for name in ("config.yaml", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "task.json"):
        assert (run_dir / name).is_file(), name
    r = run(DNN + ["eval", str(run_dir)])
    assert r.returncode == 0 and json.loads(r.stdout)["test"] == results["test"]
    from PIL import Image
    from sklearn.datasets import load_digits

    Image.fromarray((load_digits().images[0] * 15).astype("uint8")).save(tmp_path / "zero.png")
    r = run(DNN + ["predict", str(run_dir), str(tmp_path / "zero.png")])
    assert r.returncode == 0 and r.stdout.split("\t")[0].endswith("zero.png")

    # `dnn eval --data FOLDER`: a folder of the user's images, read exactly as `dnn predict` reads them
    digits = load_digits()
    files = []
    for i in range(30):
        folder = tmp_path / "mine" / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        files.append((folder / f"{i}.png", str(digits.target[i])))
        Image.fromarray((digits.images[i] * 15).astype("uint8")).save(files[-1][0])
    r = run(DNN + ["eval", str(run_dir), "--data", str(tmp_path / "mine")])
    assert r.returncode == 0, r.stderr
    evaluated = json.loads(r.stdout)
    assert evaluated["data"] == str(tmp_path / "mine") and set(evaluated["test"]) == {"accuracy", "macro_f1", "loss"}
    r = run(DNN + ["predict", str(run_dir), *(str(f) for f, _ in files)])
    labels = {line.split("\t")[0]: line.split("\t")[1] for line in r.stdout.splitlines()}
    right = sum(labels[str(f)] == label for f, label in files)
    assert evaluated["test"]["accuracy"] == pytest.approx(right / len(files))
    (tmp_path / "mine" / "eleven").mkdir()
    r = run(DNN + ["eval", str(run_dir), "--data", str(tmp_path / "mine")])
    assert r.returncode == 2 and "eleven" in r.stderr and r.stderr.count("\n") == 1
    r = run(DNN + ["list"])
    assert r.returncode == 0 and "digits-lenet5" in r.stdout and "resnet18" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "digits-lenet6"], "no recipe or YAML file named 'digits-lenet6'; did you mean 'digits-lenet5'?"),
        (["train", "digits-lenet5", "train.lr=fast"], "train.lr must be a number, got 'fast'"),
        (["train", "digits-lenet5", "model.num_clases=3"], "unknown key model.num_clases for model 'lenet5'"),
        (["train", "--resume"], "--resume needs --run-dir"),
        (["eval", "/nonexistent/run"], "/nonexistent/run: not a run directory"),
        (["predict", "/nonexistent/run", "x.png"], "/nonexistent/run: not a run directory"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message, capsys):
    from dnn.cli import main

    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own usage errors leave through sys.exit
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dnn: error: ") and message in err and err.count("\n") == 1


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    from safetensors.torch import load_file

    from dnn.cli import main
    from dnn.training.checkpoint import load_state

    run_dir = tmp_path / "nan"
    args = ["train", "digits-lenet5", "train.lr=1e6", "train.optimizer=sgd", "train.checkpoint_every=1"]
    code = main([*args, "--run-dir", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("dnn: error: step 2: the gradient norm is inf; training stopped")
    assert load_state(run_dir / "state.pt")["stats"]["step"] == 1  # the last good step
    assert all(torch.isfinite(t).all() for t in load_file(run_dir / "last.safetensors").values())


def test_digits_resnet_recipe_trains_a_few_steps_through_the_command(tmp_path):
    r = run(DNN + ["train", "digits-resnet", "train.max_steps=2", "--run-dir", str(tmp_path / "r"), "--quiet"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["steps"] == 2


def test_metrics_are_mirrored_to_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dnn.train import train

    run_dir = tmp_path / "tb"
    train("digits-lenet5", ["train.max_steps=6", "train.log_every=2", "train.eval_every=3"], run_dir, progress=False)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert losses == pytest.approx({r["step"]: r["loss"] for r in records if r["kind"] == "train"})
    accuracy = {e.step: e.value for e in events.Scalars("valid/accuracy")}
    assert accuracy == pytest.approx({r["step"]: r["accuracy"] for r in records if r["kind"] == "eval"})
    assert {"train/grad_norm", "train/clip_rate", "train/lr"} <= set(events.Tags()["scalars"])

    quiet = tmp_path / "off"
    assert (run_dir / "report.html").is_file()
    train(
        "digits-lenet5", ["train.max_steps=2", "train.tensorboard=false", "train.report=false"], quiet, progress=False
    )
    assert not (quiet / "tensorboard").exists() and not (quiet / "report.html").exists()
