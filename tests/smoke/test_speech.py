"""Speech recognition end to end: the speech-digits recipe on a tiny synthesised data set through the command
line, `dnn transcribe` (greedy and beam), the report's pictures, a user's TSV of recordings (and a bad one).
That the model learns is tested on a toy task in tests/unit/test_speech_ctc.py; the recipes' headers hold the
full runs' measured error rates."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dnn.cli import main
from dnn.inspect import write_report
from dnn.run import load_run
from dnn.rundir import STATE, RunDir
from dnn.tasks import make_task
from dnn.train import train
from dnn.training.checkpoint import state_writer

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)

DNN = [sys.executable, "-m", "dnn.cli"]
TINY_DATA = ["data.sizes=[24,8,8]", "train.batch_size=8", "train.threads=1"]
TINY_MODEL = ["model.hidden_size=8", "model.conv_channels=8", "model.num_layers=1"]


def run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("speech-cache")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, cache):
    """speech-digits, 3 tiny steps through the command line: (run directory, stdout)."""
    run_dir = tmp_path_factory.mktemp("speech") / "digits"
    args = ["train", "speech-digits", *TINY_DATA, *TINY_MODEL, f"data.cache={cache}", "train.max_steps=3"]
    r = run(DNN + [*args, "--run-dir", str(run_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    return run_dir, r.stdout


def test_speech_digits_recipe_trains_through_the_cli(digits_run, cache):
    run_dir, stdout = digits_run
    results = json.loads(stdout.strip().splitlines()[-1])
    assert results["steps"] == 3
    assert set(results["valid"]) == {"cer", "wer", "exact_match", "loss", "ctc_infinite"}
    assert {"cer_unseen", "exact_match_unseen"} <= set(results["test"])  # half the test set speaks unseen voices
    for name in ("config.yaml", "model.safetensors", "last.safetensors", "state.pt", "task.json", "results.json"):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "task.json").read_text())
    assert info["task"] == "SpeechRecognition" and info["alphabet"] == list(" 0123456789")
    assert info["features"]["n_mels"] == 80 and info["features"]["sample_rate"] == 16000
    (folder,) = cache.iterdir()  # one cached data set, built once: 16 kHz mono WAVs and three TSVs
    assert sorted(p.name for p in folder.glob("*.tsv")) == ["test.tsv", "train.tsv", "valid.tsv"]
    assert len(list((folder / "wav" / "train").glob("*.wav"))) == 24
    assert "synthesising 40 utterances" in (run_dir / "log.txt").read_text()


def test_dnn_transcribe_prints_file_tab_transcript(digits_run, cache, capsys):
    run_dir, _ = digits_run
    (folder,) = cache.iterdir()
    files = [str(p) for p in sorted((folder / "wav" / "test").glob("*.wav"))[:3]]
    for beam in ("1", "4"):
        assert main(["transcribe", str(run_dir), *files, "--beam-size", beam]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[0] for line in lines] == files
        assert all(set(line.split("\t")[1]) <= set(" 0123456789") for line in lines)
    assert main(["transcribe", str(run_dir), str(folder / "test.tsv")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"dnn: error: .*test\.tsv: unreadable audio \(.*\); expected WAV, FLAC or OGG\n", err)


def test_the_report_draws_the_alignment_and_the_per_voice_error_rates(digits_run, tmp_path):
    """The speech task offers both figures as data; the report draws them."""
    run = load_run(digits_run[0])
    task = make_task(run.cfg)
    task.prepare(lambda message: None)
    figures = task.figures(run.model, run.predictor)
    assert [type(f).__name__ for f in figures] == ["SpectrogramAlignment", "ErrorsByGroup"]
    assert figures[0].chars and len(figures[0].chars) == len(figures[0].frames)
    write_report(run.path, out_dir=tmp_path, task=task)
    for name in ("speech_alignment.png", "speech_voices.png"):
        path = tmp_path / "figures" / name
        assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"


def users_corpus(tmp_path: Path, cache: Path, n: int = 12) -> Path:
    """A user's folder: WAV files named freely and a transcripts.tsv (taken from the synthesised data)."""
    (folder,) = cache.iterdir()
    lines = (folder / "train.tsv").read_text().splitlines()[:n]
    out = tmp_path / "corpus"
    (out / "clips").mkdir(parents=True)
    rows = []
    for i, line in enumerate(lines):
        name, text, _ = line.split("\t")
        shutil.copy(folder / name, out / "clips" / f"utt{i}.wav")
        rows.append(f"clips/utt{i}.wav\t{text}\n")
    (out / "transcripts.tsv").write_text("file\ttranscript\n" + "".join(rows))
    return out


def test_a_users_folder_of_recordings_trains_and_a_bad_file_stops_with_its_line(digits_run, cache, tmp_path, capsys):
    corpus = users_corpus(tmp_path, cache)
    overrides = ["data.source=null", f"data.train={corpus}", *TINY_DATA, *TINY_MODEL, "train.max_steps=2"]
    assert main(["train", "speech-digits", *overrides, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "cer" in results["test"] and "cer_unseen" not in results["test"]  # a user's data has no voices

    (corpus / "clips" / "utt3.wav").write_bytes(b"")  # line 5 of the TSV (after the header)
    assert main(["train", "speech-digits", *overrides, "--run-dir", str(tmp_path / "run2"), "--quiet"]) == 2
    tsv = re.escape(str(corpus / "transcripts.tsv"))
    pattern = rf"dnn: error: {tsv}:5: clips/utt3\.wav: unreadable audio \(.*\); expected WAV, FLAC or OGG\n"
    assert re.fullmatch(pattern, capsys.readouterr().err)
    assert not (tmp_path / "run2").exists()


def test_a_resumed_run_draws_the_same_masks_and_ends_with_the_same_weights(cache, tmp_path):
    """SpecAugment and dropout on: 5 steps straight equal 4 steps, then a resume (mid-epoch) for the 5th."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    overrides = [*TINY_DATA, *TINY_MODEL, f"data.cache={cache}", "train.schedule=constant", "model.dropout=0.3"]
    train("speech-digits", [*overrides, "train.max_steps=5"], run_dir=whole, progress=False)
    train("speech-digits", [*overrides, "train.max_steps=4"], run_dir=part, progress=False)  # 3 batches an epoch
    # what a run of 5 steps killed after step 4's checkpoint leaves: the same state, not yet finished
    config = yaml.safe_load((part / "config.yaml").read_text())
    config["train"]["max_steps"] = 5
    (part / "config.yaml").write_text(yaml.safe_dump(config))
    state = torch.load(part / "state.pt", weights_only=True)
    state["finished"], state["config"]["train"]["max_steps"] = None, 5
    with RunDir.open_run(part) as run:  # written as dnn writes it: a state.pt changed behind its back is refused
        run.write_hashed({STATE: state_writer(state)})
    train(None, [], run_dir=part, resume=True, progress=False)
    a, b = load_file(whole / "last.safetensors"), load_file(part / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((part / "results.json").read_text())["steps"] == 5
