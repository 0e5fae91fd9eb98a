"""Speech data: a user's TSV of recordings (every bad input named by file and line), padded CTC batches, the
built-in data set's draws (unseen voices only in test), and the message when espeak-ng is missing."""

import numpy as np
import pytest
import soundfile
import torch

from dnn.data import speech
from dnn.data.speech import HELD_OUT_VARIANTS, Utterance, collate_speech, read_transcripts
from dnn.errors import ConfigError, DataError
from dnn.run_config import RunConfig
from dnn.tasks.speech import SpeechRecognition


def wav(path, seconds=0.2, sr=16000):
    soundfile.write(str(path), (0.1 * np.sin(np.arange(int(seconds * sr)) / 3)).astype(np.float32), sr)
    return path


def corpus(tmp_path, lines: list[str], name="transcripts.tsv"):
    for f in ("a.wav", "b.wav"):
        wav(tmp_path / f)
    (tmp_path / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return tmp_path / name


def test_a_tsv_lists_files_relative_to_its_folder_and_skips_a_header_and_blank_lines(tmp_path):
    tsv = corpus(tmp_path, ["file\ttranscript", "a.wav\thello  world", "", "b.wav\tbye\textra column"])
    utterances = read_transcripts(tsv)
    assert [(u.text, u.line, u.voice) for u in utterances] == [("hello world", 2, None), ("bye", 4, None)]
    assert utterances[0].path == str(tmp_path / "a.wav") and utterances[0].where == f"{tsv}:2: a.wav"
    assert read_transcripts(tmp_path) == utterances  # the folder: its transcripts.tsv


@pytest.mark.parametrize(
    "line,message",
    [
        ("a.wav hello", r":1: expected file<TAB>transcript, got 'a.wav hello' \(no tab\)"),
        ("a.wav\t  ", r":1: a\.wav: missing transcript"),
        ("c.wav\thi", r":1: c\.wav: no such audio file"),
        ("\thi", r":1: the file column is empty"),
    ],
)
def test_bad_tsv_lines_are_errors_naming_file_and_line(tmp_path, line, message):
    tsv = corpus(tmp_path, [line])
    with pytest.raises(DataError, match=str(tsv).replace(".", r"\.") + message):
        read_transcripts(tsv)


def test_a_folder_needs_exactly_one_tsv(tmp_path):
    with pytest.raises(DataError, match="expected transcripts.tsv or exactly one .* found none"):
        read_transcripts(tmp_path)
    corpus(tmp_path, ["a.wav\thi"], name="train.tsv")
    corpus(tmp_path, ["b.wav\tho"], name="test.tsv")
    with pytest.raises(DataError, match="found test.tsv, train.tsv"):
        read_transcripts(tmp_path)


def cfg(**data):
    return RunConfig.from_dict({"data": {"task": "speech", **data}, "model": {"name": "speech_ctc"}})


def prepared(tmp_path, lines, **data):
    task = SpeechRecognition(cfg(train=str(corpus(tmp_path, lines)), valid_fraction=0.0, test_fraction=0.0, **data))
    task.prepare(lambda message: None)
    return task


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_bytes(b"RIFF nonsense"), r"transcripts\.tsv:1: a\.wav: unreadable audio"),
        (lambda p: soundfile.write(str(p), np.zeros(0, np.int16), 16000), r"transcripts\.tsv:1: a\.wav: empty audio"),
        (lambda p: wav(p, sr=8000), r"transcripts\.tsv:1: a\.wav: sample rate 8000 Hz, expected 16000 Hz"),
    ],
)
def test_bad_audio_is_an_error_naming_the_tsv_line_and_the_file(tmp_path, make, message):
    tsv = corpus(tmp_path, ["a.wav\thi", "b.wav\tho"])
    make(tmp_path / "a.wav")
    task = SpeechRecognition(cfg(train=str(tsv), valid_fraction=0.0, test_fraction=0.0))
    with pytest.raises(DataError, match=message):
        task.prepare(lambda m: None)


def test_data_resample_converts_another_rate(tmp_path):
    tsv = corpus(tmp_path, ["a.wav\thi", "b.wav\tho"])
    wav(tmp_path / "a.wav", seconds=0.2, sr=8000)
    task = SpeechRecognition(cfg(train=str(tsv), valid_fraction=0.0, test_fraction=0.0, resample=True))
    task.prepare(lambda m: None)
    assert [x.shape[0] for x in task.inputs["train"]] == [1 + 3200 // 160] * 2  # both 0.2 s at 16 kHz


def test_the_alphabet_comes_from_training_and_unseen_characters_are_left_out_of_the_targets(tmp_path):
    task = prepared(tmp_path, ["a.wav\tab ba"], test=str(corpus(tmp_path / "", ["b.wav\tabc"], name="test.tsv")))
    assert task.alphabet == [" ", "a", "b"] and task.model_options() == {"num_classes": 4, "n_mels": 80}
    assert task.targets["train"] == [[2, 3, 1, 3, 2]] and task.targets["test"] == [[2, 3]]


def test_train_batches_and_their_spec_augment_masks_are_a_function_of_seed_and_epoch(tmp_path):
    lines = [f"{'ab'[i % 2]}.wav\t{'ab'[i % 2]}" for i in range(8)]
    options = dict(freq_masks=2, time_masks=1, time_mask_width=5)
    one, two = (prepared(tmp_path, lines, **options) for _ in range(2))
    a, b = list(one.train_batches(3)), list(two.train_batches(3))
    assert all(torch.equal(x.features, y.features) for x, y in zip(a, b))
    assert (a[0].features == 0).any()  # masked
    assert not all(torch.equal(x.features, y.features) for x, y in zip(a, one.train_batches(4)))


def test_speech_config_errors():
    with pytest.raises(ConfigError, match="data.source must be one of digits, phrases for speech; got 'numbers'"):
        SpeechRecognition(cfg(source="numbers"))
    with pytest.raises(ConfigError, match="data.train must name a TSV"):
        SpeechRecognition(cfg())
    with pytest.raises(ConfigError, match="data.n_mels must be a positive integer, got 0"):
        cfg(n_mels=0)
    with pytest.raises(ConfigError, match="data.time_masks must be 0 .* got -1"):
        cfg(time_masks=-1)


def test_collate_pads_features_and_targets():
    batch = collate_speech([(torch.ones(3, 2), [1, 2]), (torch.ones(5, 2), [3])])
    assert batch.features.shape == (2, 5, 2) and batch.features[0, 3:].abs().sum() == 0
    assert batch.lengths.tolist() == [3, 5] and batch.target_lengths.tolist() == [2, 1]
    assert batch.targets.tolist() == [[1, 2], [3, 0]]


def test_builtin_draws_are_deterministic_and_unseen_voices_are_only_in_test():
    draws = {s: speech._draw_split("digits", 40, 0, s, {}) for s in ("train", "valid", "test")}
    assert draws["train"] == speech._draw_split("digits", 40, 0, "train", {})
    assert draws["train"] != speech._draw_split("digits", 40, 1, "train", {})
    variants = {s: [d.voice.split("+")[1] for d in v] for s, v in draws.items()}
    assert not set(variants["train"] + variants["valid"]) & set(HELD_OUT_VARIANTS)
    assert sum(v in HELD_OUT_VARIANTS for v in variants["test"]) == 20  # every other test utterance
    assert all(3 <= len(d.text.split()) <= 7 and d.text.replace(" ", "").isdigit() for d in draws["train"])
    phrases = speech._draw_split("phrases", 20, 0, "train", {})
    assert all(p.text.islower() and 2 <= len(p.text.split()) <= 6 for p in phrases)


def test_builtin_params_are_checked():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['digits'\] for speech digits"):
        speech.builtin_dataset("digits", (1, 1, 1), 0, {"digits": 3})
    with pytest.raises(ConfigError, match="need 1 ≤ min_digits ≤ max_digits, got 5, 2"):
        speech.builtin_dataset("digits", (1, 1, 1), 0, {"min_digits": 5, "max_digits": 2})


def test_without_espeak_ng_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"espeak-ng is not installed: .* `apt-get install espeak-ng`"):
        speech.builtin_dataset("digits", (2, 1, 1), 0, cache=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing half-made is left behind


def test_utterance_variant():
    assert Utterance("a.wav", "x", 1, "t.tsv", "en-gb+f3").variant == "f3"
    assert Utterance("a.wav", "x", 1, "t.tsv").variant is None
