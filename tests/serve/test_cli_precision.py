"""`--precision bf16` on the inference commands and the server: the same answers as fp32 within rounding, on the
tiny trained runs of conftest.py, and a bad precision is one line and exit 2."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pytest
from PIL import Image

from dnn.cli import main


def _run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "precision", [pytest.param("bf16", marks=pytest.mark.bf16), pytest.param("fp16", marks=pytest.mark.fp16)]
)
def test_eval_in_reduced_precision_matches_fp32(capsys, runs, precision):
    for run in (runs.dates, runs.sentiment, runs.digits):
        fp32 = json.loads(_run(capsys, "eval", str(run)))
        low = json.loads(_run(capsys, "eval", str(run), "--precision", precision))
        assert low["test"]["loss"] != fp32["test"]["loss"]  # it did run in reduced precision
        for split in ("valid", "test"):
            assert low[split].keys() == fp32[split].keys()
            for name, value in fp32[split].items():
                if name.endswith("loss") or name == "perplexity":
                    assert low[split][name] == pytest.approx(value, rel=0.05), (run.name, split, name)


@pytest.mark.bf16
def test_translate_predict_generate_take_bf16(capsys, runs, tmp_path):
    out = _run(capsys, "translate", str(runs.dates), "March 3, 2021", "--precision", "bf16", "--beam-size", "3",
               "--n-best", "2")  # fmt: skip
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("1", "2") for line in lines)
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(image)
    row = _run(capsys, "predict", str(runs.digits), str(image), "--precision", "bf16").strip().split("\t")
    assert row[0] == str(image) and 0.0 <= float(row[2]) <= 1.0
    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\nthe cat sat on the mat\n")
    rows = _run(capsys, "predict", str(runs.sentiment), str(texts), "--precision", "bf16").strip().splitlines()
    assert [r.split("\t")[1] in ("pos", "neg") for r in rows] == [True, True]
    tags = _run(capsys, "predict", str(runs.tagger), str(texts), "--precision", "bf16").strip().splitlines()
    assert tags[1].split() and all("/" in t for t in tags[1].split())
    text = _run(capsys, "generate", str(runs.charlm), "--prompt", "The ", "--length", "20", "--precision", "bf16")
    assert text.startswith("The ")


def _usage_error(argv: list[str]) -> int:
    """The exit status of ``dnn ARGV`` where argparse refuses it (a value outside a flag's choices)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


REFUSED = "dnn: error: argument --precision: invalid choice: 'int8' (choose from 'fp32', 'bf16', 'fp16')"


def test_a_precision_that_is_not_there_is_one_line_and_exit_2(capsys, runs):
    assert _usage_error(["translate", str(runs.dates), "x", "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(REFUSED) and err.count("\n") == 0


@pytest.mark.bf16
def test_the_server_answers_in_bf16_when_asked(runs, digit_png):
    """``dnn serve --precision bf16``: autocast is per thread, so the app enters it in each worker thread."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
    import torch
    from fastapi.testclient import TestClient

    from dnn.device import autocast
    from dnn.serve import create_app

    answers = {}
    for precision in ("fp32", "bf16"):
        context = partial(autocast, torch.device("cpu"), precision)
        with TestClient(create_app([runs.sentiment, runs.digits], context=context)) as client:
            for _ in range(300):
                if client.get("/health").status_code == 200:
                    break
                time.sleep(0.05)
            text = client.post("/runs/sentiment/predict", json={"text": "a great film"}).json()["probabilities"]
            image = client.post("/runs/digits/predict", json={"image": digit_png}).json()["probabilities"]
            answers[precision] = np.array(text + image)
    assert not np.array_equal(answers["bf16"], answers["fp32"])  # the workers did run in bf16
    np.testing.assert_allclose(answers["bf16"], answers["fp32"], atol=0.02)


def test_serve_refuses_a_precision_that_is_not_there_before_it_starts(capsys, runs):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
    assert _usage_error(["serve", str(runs.dates), "--precision", "int8", "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith(REFUSED)


X86 = platform.machine().lower() in ("x86_64", "amd64")
AVX2_ONLY = pytest.mark.skipif(not X86, reason="oneDNN's ISA cap is x86's")


@AVX2_ONLY
def test_bf16_on_a_cpu_without_bf16_units_is_one_line_on_every_inference_command_and_on_serve(runs, tmp_path):
    """As on an AVX2-only CPU (oneDNN capped at AVX2): exit 2, one line that says why and what to use, no output."""
    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\n")
    commands = [
        ["eval", str(runs.sentiment)],
        ["predict", str(runs.sentiment), str(texts)],
        ["translate", str(runs.dates), "March 3, 2021"],
        ["generate", str(runs.charlm), "--prompt", "The ", "--length", "5"],
        ["serve", str(runs.dates), "--port", "0"],
    ]
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    for args in commands:
        r = subprocess.run([sys.executable, "-m", "dnn.cli", *args, "--precision", "bf16", "--device", "cpu"],
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert r.returncode == 2 and r.stdout == "", (args, r.stdout, r.stderr[-2000:])
        assert r.stderr.startswith("dnn: error: --precision=bf16: this CPU has no bf16 units"), (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.strip().endswith("use --precision=fp32"), (args, r.stderr)
