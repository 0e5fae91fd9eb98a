"""dates-transformer end to end: `dnn train` through the command line, the run loads, translates with greedy and
beam search (one attention row per output token, over the source's own tokens), `dnn translate` prints it, and the
recipe is listed."""

import json
import subprocess
import sys

import pytest

from dnn.run import list_recipes, load_run

DNN = [sys.executable, "-m", "dnn.cli"]
TINY = ["data.sizes=[64,16,16]", "train.max_steps=20", "train.batch_size=16", "train.threads=1", "train.eval_every=0",
        "model.d_model=16", "model.num_heads=2", "model.feedforward_size=32", "model.num_encoder_layers=1",
        "model.num_decoder_layers=1", "train.report=false"]  # fmt: skip


def run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dates_transformer(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("transformer") / "dates"
    r = run(DNN + ["train", "dates-transformer", *TINY, "--run-dir", str(run_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    return run_dir, json.loads(r.stdout.strip().splitlines()[-1])


def test_the_recipe_trains_and_its_run_translates_with_attention(dates_transformer):
    run_dir, results = dates_transformer
    assert "dates-transformer" in list_recipes()
    assert results["steps"] == 20
    assert 0.0 <= results["test"]["exact_match"] <= results["test"]["token_accuracy"] <= 1.0
    loaded = load_run(run_dir)
    assert type(loaded.model).__name__ == "TransformerSeq2Seq" and loaded.model.config.d_model == 16
    texts = ["March 3, 2021", "the 7th of April, 1957"]
    for beam in (1, 3):
        rows = loaded.predictor.translate(texts, beam_size=beam)
        for row, text in zip(rows, texts):
            assert row["source_tokens"] == list(text)
            assert len(row["attention"]) == len(row["output_tokens"])
            for weights in row["attention"]:
                assert len(weights) == len(text) and sum(weights) == pytest.approx(1.0, abs=1e-5)


def test_dnn_translate_prints_the_output_and_its_attention(dates_transformer):
    run_dir, _ = dates_transformer
    r = run(DNN + ["translate", str(run_dir), "2019.02.15", "--attention"])
    assert r.returncode == 0, r.stderr
    (expected,) = load_run(run_dir).predictor.translate(["2019.02.15"], beam_size=5)
    lines = r.stdout.rstrip("\n").split("\n")
    assert lines[0] == expected["output"] and len(lines) == 1 + len(expected["output_tokens"])
