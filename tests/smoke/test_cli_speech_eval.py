"""`dnn eval RUN --data PATH` on a speech run trained on a user's recordings: the run's alphabet, the utterances
PATH lists as the test data; a run on built-in data says --data does not apply to it."""

import json
import shutil
from pathlib import Path

import pytest

from dnn.cli import main
from dnn.run import load_run
from dnn.tasks.speech import error_rates
from dnn.train import train

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)

TINY = ["data.sizes=[24,8,8]", "train.batch_size=8", "train.threads=1", "model.hidden_size=8",
        "model.conv_channels=8", "model.num_layers=1", "train.max_steps=2"]  # fmt: skip


def _corpus(cache: Path, out: Path, split: str, n: int) -> Path:
    """A user's folder of WAVs named freely and a transcripts.tsv, taken from the synthesised ``split``."""
    (folder,) = cache.iterdir()
    (out / "clips").mkdir(parents=True)
    rows = []
    for i, line in enumerate((folder / f"{split}.tsv").read_text().splitlines()[:n]):
        name, text, _ = line.split("\t")
        shutil.copy(folder / name, out / "clips" / f"utt{i}.wav")
        rows.append(f"clips/utt{i}.wav\t{text}\n")
    (out / "transcripts.tsv").write_text("file\ttranscript\n" + "".join(rows))
    return out


def test_eval_data_on_a_speech_run_of_the_users_recordings(tmp_path, capsys):
    cache = tmp_path / "cache"
    builtin = tmp_path / "builtin"
    train("speech-digits", [*TINY, f"data.cache={cache}"], run_dir=builtin, progress=False)
    mine = _corpus(cache, tmp_path / "mine", "train", 12)
    held_out = _corpus(cache, tmp_path / "held-out", "test", 5)

    assert main(["eval", str(builtin), "--data", str(held_out)]) == 2
    assert capsys.readouterr().err == (f"dnn: error: {builtin} is a speech run on built-in data (data.source=digits); "
                                       f"--data applies to a run trained on recordings of yours (data.train=FILE.tsv)"
                                       f"\n")  # fmt: skip

    run_dir = tmp_path / "run"
    train("speech-digits", ["data.source=null", f"data.train={mine}", *TINY], run_dir=run_dir, progress=False)
    assert main(["eval", str(run_dir), "--data", str(held_out)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"] == str(held_out)
    assert set(out["test"]) == {"cer", "wer", "exact_match", "loss", "ctc_infinite"}
    rows = [line.split("\t") for line in (held_out / "transcripts.tsv").read_text().splitlines()[1:]]
    heard = load_run(run_dir).predictor.transcribe([held_out / name for name, _ in rows])  # greedy, as eval decodes
    expected = error_rates([row["text"] for row in heard], [text for _, text in rows])
    assert out["test"]["cer"] == pytest.approx(expected["cer"]) and out["test"]["wer"] == pytest.approx(expected["wer"])
    assert main(["eval", str(run_dir), "--data", str(held_out / "transcripts.tsv")]) == 0  # the TSV itself
    assert json.loads(capsys.readouterr().out)["test"] == out["test"]
    assert main(["eval", str(run_dir), "--data", str(tmp_path / "nothing.tsv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dnn: error: {tmp_path / 'nothing.tsv'}") and err.count("\n") == 1
