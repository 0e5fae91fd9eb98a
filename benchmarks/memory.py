"""The memory estimate (dnn.training.memory) against the real peak of a few training steps, recipe by recipe.

    .venv/bin/python benchmarks/memory.py            # the table, printed and written to benchmarks/MEMORY.md

Each case runs in a fresh process: the recipe's data is prepared (as ``dnn train`` does, threads and allocator set
up by ``train.*``), the estimate made, then the peak resident memory is reset (``echo 5 > /proc/self/clear_refs``)
and the baseline read (VmRSS); the model and its optimiser are built and trained for a few steps by the library's
Trainer on the recipe's first batches, then one step on the largest batch the task describes (its batch plan, at
full size). The measured peak is VmHWM (the peak RSS, what ``ru_maxrss`` reports) minus that baseline: what the
step adds to a process that already holds its data. So the estimate compared is the step's (parameters,
gradients, optimiser state, activations), without the data term; the data term is compared apart for built-in
data, as the RSS that ``task.prepare`` adds.
"""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = 4  # training steps on the recipe's first batches, before the one on the largest batch
REPEATS = 3  # fresh processes per case: the table shows the median and the range of the measured peaks
CASES = [  # (recipe, overrides): five kinds of model and data, at their default sizes unless noted
    ("digits-resnet", ["data.image_size=32"]),  # an image CNN (ResNet-18), digits upsampled so activations count
    ("sentiment-lstm", ["data.train={reviews}"]),  # the lecture's sentiment LSTM, on generated reviews
    ("dates-attention", []),  # seq2seq: bidirectional GRU encoder, decoder with concat attention
    ("charlm-pydoc", []),  # character LSTM language model, truncated BPTT
    ("video-moving-digits", []),  # a CNN per frame, an LSTM over the frames
    ("adding-lstm", ["train.batch_size=500"]),  # a regression LSTM over 50 steps
    ("speech-digits", []),  # conv front end + BiLSTM + CTC (the CTC loss has no fake kernel: counted up to it)
]
DATA_CASES = [("adding-lstm", ["data.sizes=[200000,10,10]"]), ("dates-attention", ["data.sizes=[200000,10,10]"])]
ROOT = Path(__file__).resolve().parent


def _status(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:  # then VmHWM is the process's peak since it started: the baseline below may be too low
        return False


def measure(recipe: str, overrides: list[str], data_only: bool) -> dict:
    """One case, in this process: the estimate's terms and the measured bytes."""
    import torch

    from dnn.models.registry import create_model
    from dnn.run import resolve_config
    from dnn.tasks import make_task
    from dnn.training import Trainer
    from dnn.training.memory import estimate
    from dnn.training.optim import make_optimizer
    from dnn.training.seed import seed_everything
    from dnn.training.setup import setup_process

    cfg = resolve_config(recipe, overrides)
    setup_process(cfg.train)
    seed_everything(cfg.seed, cfg.deterministic)
    task = make_task(cfg)
    exact = _reset_peak()
    before = _status("VmRSS")
    task.prepare(lambda message: None)
    if data_only:
        return {"estimate": task.data_bytes(), "measured": _status("VmHWM") - before, "exact": exact}
    exact = _reset_peak()
    base = _status("VmRSS")
    model = create_model(cfg.model.name, cfg.model.resolve(task.model_options()))
    terms = estimate(task, cfg, model).terms  # the probe's tensors are fakes: nothing of it stays in the peak
    t = cfg.train
    optimizer = make_optimizer(model.parameters(), t.optimizer, t.lr, t.weight_decay, t.momentum)
    trainer = Trainer(model, optimizer, task.step, clip_norm=t.clip_norm, on_nonfinite="skip")
    model.train()
    for i, batch in enumerate(task.train_batches(0)):
        if i == STEPS:
            break
        trainer.train_step(batch)
    plan = task.batch_plan()
    largest = plan.make(plan.size, plan.length)  # real tensors of the largest shape; floats zeroed (values unused)
    for tensor in (x for x in _tensors(largest) if x.is_floating_point()):
        tensor.zero_()
    trainer.train_step(largest)
    step = sum(v for k, v in terms.items() if k != "data")
    shape = f"{plan.size}×{plan.length}" if plan.length else f"{plan.size}"
    del torch
    return {"terms": terms, "estimate": step, "measured": _status("VmHWM") - base, "exact": exact, "batch": shape}


def _tensors(batch):
    import dataclasses

    import torch

    if isinstance(batch, torch.Tensor):
        return [batch]
    if dataclasses.is_dataclass(batch):
        return [x for x in (getattr(batch, f.name) for f in dataclasses.fields(batch)) if isinstance(x, torch.Tensor)]
    return [x for item in batch for x in _tensors(item)]


def _reviews(folder: Path) -> Path:
    """2,000 generated reviews of 50–250 words from a 5,000-word vocabulary, labelled pos / neg."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    path = folder / "reviews.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        for _ in range(2000):
            out.writerow([" ".join(rng.choices(words, k=rng.randint(50, 250))), rng.choice(["pos", "neg"])])
    return path


def _run(recipe: str, overrides: list[str], data_only: bool = False) -> dict:
    flag = ["--data-only"] if data_only else []
    command = [sys.executable, __file__, "--one", recipe, *flag, *overrides]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _repeated(recipe: str, overrides: list[str], data_only: bool = False) -> dict:
    """The case run REPEATS times: its (deterministic) estimate, and the median and range of the measured peaks."""
    results = [_run(recipe, overrides, data_only) for _ in range(REPEATS)]
    peaks = sorted(r["measured"] for r in results)
    return {**results[0], "measured": peaks[len(peaks) // 2], "low": peaks[0], "high": peaks[-1]}


def _row(name: str, r: dict, *extra: str) -> str:
    spread = f"{_mib(r['low'])}–{_mib(r['high'])}" if r["high"] > r["low"] else "—"
    cells = [name, *extra, _mib(r["estimate"]), _mib(r["measured"]), spread, f"{r['estimate'] / r['measured']:.2f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    rows, data_rows = [], []
    with tempfile.TemporaryDirectory(prefix="dnn-memory-") as tmp:
        reviews = _reviews(Path(tmp))
        for recipe, overrides in CASES:
            result = _repeated(recipe, [o.format(reviews=reviews) for o in overrides])
            name = " ".join([recipe, *(o for o in overrides if "{reviews}" not in o)])
            rows.append(_row(name, result, result["batch"], _mib(result["terms"]["activations"])))
            print(rows[-1], flush=True)
        for recipe, overrides in DATA_CASES:
            data_rows.append(_row(" ".join([recipe, *overrides]), _repeated(recipe, overrides, data_only=True)))
            print(data_rows[-1], flush=True)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), "unknown")
    lines = [
        "# Memory: the estimate against the measured peak",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu} (`lscpu`), 2 cores shared with other work, with",
        "`.venv/bin/python benchmarks/memory.py` (torch's default threads, `train.keep_memory` as the recipe has it).",
        "",
        "One training step: the estimate of `dnn.training.memory` (parameters + gradients + optimiser state +",
        "activations of the largest batch + 16 MiB for torch's kernels) against the peak resident memory a fresh",
        "process adds from just before",
        f"the model is built through {STEPS} training steps on the recipe's first batches and one on the largest",
        "batch (VmHWM after `clear_refs`, i.e. `ru_maxrss`, minus VmRSS at that point; the data is already held).",
        f"Each case ran in {REPEATS} fresh processes: the median peak, and the range. sentiment-lstm reads 2,000",
        "generated reviews of 50–250 words (the recipe takes the user's file).",
        "",
        "| recipe | largest batch | of which activations | estimate | measured peak | range | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "The data term (built-in data, from the config before the data exists) against the peak RSS that",
        "`task.prepare` adds:",
        "",
        "| recipe | estimate | measured peak | range | ratio |",
        "|---|---:|---:|---:|---:|",
        *data_rows,
    ]
    (ROOT / "MEMORY.md").write_text("\n".join(lines) + "\n")
    print(f"written to {ROOT / 'MEMORY.md'}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        args = sys.argv[2:]
        data_only = "--data-only" in args
        args = [a for a in args if a != "--data-only"]
        print(json.dumps(measure(args[0], args[1:], data_only)))
    else:
        main()
