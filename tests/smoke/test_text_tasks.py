"""Text classification and tagging end to end: the recipes through the command, learning a rule in-process,
splits and vocabularies from the training data only, the data counts in the log, bad input as one line naming
file and line, and a run killed with SIGKILL that resumes to the same weights."""

import csv
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from resume_check import check_sigkill_resume

from dnn.data.splits import split_indices
from dnn.errors import DataError
from dnn.run import load_run, resolve_config
from dnn.tasks.text import Tagging, TextClassification
from dnn.train import train

DNN = [sys.executable, "-m", "dnn.cli"]
SMALL = ["model.embedding_size=16", "model.hidden_size=16", "train.threads=1"]

POSITIVE = ["good", "great", "excellent", "wonderful", "loved", "brilliant", "enjoyable", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "hated", "dull", "poor", "worst"]
NEUTRAL = ["the", "movie", "film", "plot", "actors", "was", "a", "and", "story", "it", "really", "this", "ending"]
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "to", "house", "in", "year", "apples", "bought"]


# ----------------------------------------------------------------------------------------------------- data


def make_reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """Short reviews: 3–8 neutral words and 1–2 words of the label's list, shuffled (the rule to learn)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(NEUTRAL, k=rng.randint(3, 8))
        words += rng.choices(POSITIVE if label == "pos" else NEGATIVE, k=rng.randint(1, 2))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_table(path: Path, rows, header=("text", "label"), delimiter=",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """Sentences of 3–10 tokens: a number (0–29) is tagged NUM, a word WORD."""
    rng = random.Random(seed)
    return [
        [(str(rng.randint(0, 29)), "NUM") if rng.random() < 0.3 else (rng.choice(WORDS), "WORD") for _ in range(k)]
        for k in (rng.randint(3, 10) for _ in range(n))
    ]


def write_conll(path: Path, sentences) -> Path:
    path.write_text("".join("".join(f"{t} {g}\n" for t, g in s) + "\n" for s in sentences), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("text_data")
    d = SimpleNamespace(root=root, reviews=make_reviews(200, seed=0), review_test=make_reviews(60, seed=1))
    d.csv = write_table(root / "reviews.csv", d.reviews)
    d.test_csv = write_table(root / "test.csv", d.review_test)
    d.valid_csv = write_table(root / "valid.csv", make_reviews(100, seed=7))  # enough to pick the best checkpoint
    d.tsv = write_table(root / "reviews.tsv", make_reviews(60, seed=2), delimiter="\t")
    d.imdb = root / "aclImdb"
    for split, n, seed in (("train", 40, 3), ("test", 16, 4)):
        for i, (text, label) in enumerate(make_reviews(n, seed)):
            folder = d.imdb / split / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text, encoding="utf-8")
    d.sentences, d.sentence_test = make_sentences(200, seed=5), make_sentences(50, seed=6)
    d.conll = write_conll(root / "tags.conll", d.sentences)
    d.test_conll = write_conll(root / "tags_test.conll", d.sentence_test)
    return d


def prepared(task_cls, recipe: str, overrides: list[str]):
    task = task_cls(resolve_config(recipe, overrides))
    lines: list[str] = []
    task.prepare(lines.append)
    return task, lines


def cli_error(args: list[str], capsys) -> str:
    from dnn.cli import main

    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("dnn: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------ the recipes, via the CLI


def test_sentiment_recipe_trains_and_predicts_through_the_command(data, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "sentiment-lstm", f"data.train={data.csv}", "train.max_steps=3", *SMALL]
    r = subprocess.run(DNN + [*args, "--run-dir", str(run_dir), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert results["steps"] == 3 and 0.0 <= results["test"]["accuracy"] <= 1.0
    for name in ("config.yaml", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "results.json",
                 "log.txt", "task.json", "vocab.json", "labels.json", "tokenizer.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "task.json").read_text())["task"] == "TextClassification"

    texts = ["a great film , loved it", "awful and boring", "zyzzyva quux"]  # the last: only unknown words
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    r = subprocess.run(DNN + ["predict", str(run_dir), str(tmp_path / "texts.txt")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    expected = load_run(run_dir).predictor.predict_texts(texts)
    rows = [line.split("\t") for line in r.stdout.strip().splitlines()]
    assert [row[:2] for row in rows] == [[e["input"], e["label"]] for e in expected]
    for row, e in zip(rows, expected):
        assert row[1] in ("neg", "pos") and float(row[2]) == pytest.approx(e["probability"], abs=5e-4)
        assert e["probability"] >= 0.5  # the larger of two probabilities


def test_tagging_recipe_trains_and_tags_through_the_command(data, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "tagging-bilstm", f"data.train={data.conll}", "train.max_steps=3", *SMALL]
    r = subprocess.run(DNN + [*args, "--run-dir", str(run_dir), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["steps"] == 3
    for name in ("model.safetensors", "results.json", "task.json", "vocab.json", "labels.json"):
        assert (run_dir / name).is_file(), name

    texts = ["the cat sat on 3 mats", "42 apples"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    r = subprocess.run(DNN + ["predict", str(run_dir), str(tmp_path / "texts.txt")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    expected = load_run(run_dir).predictor.predict_texts(texts)
    lines = r.stdout.strip().splitlines()
    assert lines == [" ".join(f"{t}/{g}" for t, g in zip(e["tokens"], e["tags"])) for e in expected]
    for line, text in zip(lines, texts):
        pairs = [item.rsplit("/", 1) for item in line.split()]
        assert [t for t, _ in pairs] == text.split() and {g for _, g in pairs} <= {"NUM", "WORD"}


@pytest.mark.parametrize("recipe,what", [("sentiment-lstm", "aclImdb/ folder"), ("tagging-bilstm", "CoNLL-style")])
def test_a_recipe_without_data_train_says_to_pass_it(recipe, what, tmp_path, capsys):
    err = cli_error(["train", recipe, "--run-dir", str(tmp_path / "run"), "--quiet"], capsys)
    assert "data.train is missing: pass data.train=PATH" in err and what in err


# ---------------------------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def sentiment_run(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sentiment") / "run"
    overrides = [f"data.train={data.csv}", f"data.valid={data.valid_csv}", f"data.test={data.test_csv}",
                 "train.max_steps=150", "train.epochs=30", "train.batch_size=16", "train.lr=0.003",
                 "model.embedding_size=32", "model.hidden_size=32", "train.threads=1"]  # fmt: skip
    results = train("sentiment-lstm", overrides, run_dir, progress=False)
    return run_dir, results


@pytest.fixture(scope="module")
def tagging_run(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tagging") / "run"
    overrides = [f"data.train={data.conll}", f"data.test={data.test_conll}", "train.max_steps=80", "train.lr=0.01",
                 "train.batch_size=16", "model.embedding_size=32", "model.hidden_size=32",
                 "train.threads=1"]  # fmt: skip
    results = train("tagging-bilstm", overrides, run_dir, progress=False)
    return run_dir, results


def test_the_lstm_classifier_learns_which_words_carry_the_sentiment(data, sentiment_run):
    run_dir, results = sentiment_run
    assert results["steps"] == 150
    assert results["test"]["accuracy"] >= 0.9 and results["test"]["macro_f1"] >= 0.9
    predictor = load_run(run_dir).predictor
    rows = predictor.predict_texts([text for text, _ in data.review_test])
    right = sum(row["label"] == label for row, (_, label) in zip(rows, data.review_test))
    assert right / len(rows) == results["test"]["accuracy"]  # the predictor and evaluate() agree exactly


def test_eval_data_reads_a_file_with_the_runs_own_vocabulary_and_labels(data, sentiment_run, tagging_run, capsys):
    from dnn.cli import main

    for (run_dir, results), test_file in ((sentiment_run, data.test_csv), (tagging_run, data.test_conll)):
        assert main(["eval", str(run_dir), "--data", str(test_file)]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        assert evaluated["test"] == results["test"]  # the file it was tested on in training: the same numbers
    other = write_table(data.root / "other.csv", make_reviews(30, seed=11))
    assert main(["eval", str(sentiment_run[0]), "--data", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["accuracy"] >= 0.8
    unseen = write_table(data.root / "unseen.csv", [("a good film", "pos"), ("the plot", "meh")])
    err = cli_error(["eval", str(sentiment_run[0]), "--data", str(unseen)], capsys)
    assert "unseen.csv:3: label 'meh' was never seen in training" in err


def test_the_bilstm_tagger_learns_to_tag_numbers(data, tagging_run):
    run_dir, results = tagging_run
    assert results["test"]["accuracy"] >= 0.95
    predictor = load_run(run_dir).predictor
    rows = predictor.predict_texts([" ".join(t for t, _ in s) for s in data.sentence_test])
    gold = [g for s in data.sentence_test for _, g in s]
    tags = [g for row in rows for g in row["tags"]]
    assert sum(a == b for a, b in zip(tags, gold)) / len(gold) == results["test"]["accuracy"]


def test_predictors_map_unknown_words_to_unk_and_reject_empty_input(sentiment_run, tagging_run):
    classifier = load_run(sentiment_run[0]).predictor
    assert classifier.encode(["zyzzyva GREAT"]) == [[1, classifier.vocab.index("great")]]  # lower-cased, <unk> = 1
    probs = classifier.predict_proba(["great film", "awful film"])
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    with pytest.raises(DataError, match="input 2: empty input"):
        classifier.predict_texts(["good", "   "])
    tagger = load_run(tagging_run[0]).predictor
    assert tagger.predict_texts(["zyzzyva  7"])[0]["tokens"] == ["zyzzyva", "7"]
    with pytest.raises(DataError, match="input 1: empty input"):
        tagger.predict_texts([""])


# ------------------------------------------------------------------------------------- splits, vocabularies


def test_splits_are_stratified_reproducible_and_cover_the_file(data):
    task, lines = prepared(TextClassification, "sentiment-lstm", [f"data.train={data.tsv}"])
    again, _ = prepared(TextClassification, "sentiment-lstm", [f"data.train={data.tsv}"])
    other, _ = prepared(TextClassification, "sentiment-lstm", [f"data.train={data.tsv}", "seed=1"])
    counts = Counter(label for _, label in make_reviews(60, seed=2))
    for split, k in (("train", 0), ("valid", 1), ("test", 2)):  # per label: the sizes split_indices gives it
        expected = {label: len(split_indices(n, (0.7, 0.1, 0.2))[k]) for label, n in counts.items()}
        got = Counter(task.labels.decode(y) for _, y in task.examples[split])
        assert got == expected, split
    assert task.examples == again.examples and task.examples["test"] != other.examples["test"]
    assert f"{data.tsv}: kept 60 of 60" in lines


def test_the_aclimdb_layout_trains_on_train_and_tests_on_test(data):
    task, lines = prepared(TextClassification, "sentiment-lstm", [f"data.train={data.imdb}"])
    counts = Counter(label for _, label in make_reviews(40, seed=3))
    valid = sum(len(split_indices(n, (0.9, 0.1, 0.0))[1]) for n in counts.values())  # no test split carved out
    assert len(task.examples["test"]) == 16 and len(task.examples["valid"]) == valid
    assert len(task.examples["train"]) + valid == 40 and task.labels.labels == ["neg", "pos"]
    assert f"{data.imdb / 'train'}: kept 40 of 40" in lines and f"{data.imdb / 'test'}: kept 16 of 16" in lines


def test_the_vocabulary_comes_from_the_training_split_only(data, tmp_path):
    extra = write_table(tmp_path / "extra.csv", [("zyzzyva great", "pos"), ("quux awful", "neg")])
    overrides = [f"data.train={data.csv}", f"data.valid={extra}", f"data.test={extra}", "data.min_freq=1"]
    counts = Counter(w for text, _ in data.reviews for w in text.split())  # ordered by frequency, then first seen
    task, _ = prepared(TextClassification, "sentiment-lstm", overrides)
    assert task.vocab.tokens[4:] == [w for w, _ in counts.most_common()]
    assert task.examples["test"][0][0][0] == 1 and "zyzzyva" not in task.vocab  # <unk>
    task, _ = prepared(TextClassification, "sentiment-lstm", [*overrides, "data.vocab_size=10"])
    assert task.vocab.tokens[4:] == [w for w, _ in counts.most_common(6)]  # 10 − 4 special tokens

    rare = write_table(tmp_path / "rare.csv", data.reviews[:100] + [(f"rare{k} great", "pos") for k in range(30)])
    task, _ = prepared(TextClassification, "sentiment-lstm", [f"data.train={rare}", "data.min_freq=1"])
    in_train = {i for ids, _ in task.examples["train"] for i in ids}
    assert len(task.vocab) == len(in_train) + 4  # every word of the training split, and nothing else
    held_out = [i for split in ("valid", "test") for ids, _ in task.examples[split] for i in ids]
    assert 1 in held_out and all(i == 1 or i in in_train for i in held_out)  # rare words held out are <unk>


def test_training_batches_depend_only_on_seed_and_epoch_and_cover_the_split(data):
    task, _ = prepared(TextClassification, "sentiment-lstm", [f"data.train={data.csv}", "train.batch_size=16"])
    twin, _ = prepared(TextClassification, "sentiment-lstm", [f"data.train={data.csv}", "train.batch_size=16"])
    epoch1 = list(task.train_batches(1))
    assert len(epoch1) == task.batches_per_epoch() == -(-len(task.examples["train"]) // 16)
    for a, b in zip(epoch1, twin.train_batches(1)):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
    assert not all(torch.equal(a.tokens, b.tokens) for a, b in zip(epoch1, task.train_batches(0)))
    seen = Counter(tuple(row[:n].tolist()) for batch in epoch1 for row, n in zip(batch.tokens, batch.lengths))
    assert seen == Counter(tuple(ids) for ids, _ in task.examples["train"])


def test_the_tagging_loss_ignores_padding(data):
    task, _ = prepared(Tagging, "tagging-bilstm", [f"data.train={data.conll}", "train.batch_size=8"])
    from dnn.models.registry import create_model, model_config

    torch.manual_seed(0)
    model = create_model(
        "sequence_tagger", model_config("sequence_tagger", **task.model_options(), embedding_size=8, hidden_size=8)
    )
    batch = next(task.train_batches(0))
    loss, n_tokens = task.step(model, batch, {})
    assert n_tokens == int(batch.lengths.sum()) and batch.lengths.min() < batch.lengths.max()
    per_sentence = [  # each sentence alone, no padding: a token-weighted mean of these is the batch loss
        F.cross_entropy(model(row[None, :n], n[None])[0], labels[:n], reduction="sum")
        for row, n, labels in zip(batch.tokens, batch.lengths, batch.labels)
    ]
    torch.testing.assert_close(loss, torch.stack(per_sentence).sum() / n_tokens)


# -------------------------------------------------------------------------------- counts in the run's log


def test_dropped_and_truncated_counts_appear_in_the_run_log(data, tmp_path):
    too_long = sum(len(text.split()) > 6 for text, _ in data.reviews)
    assert 0 < too_long < 200
    base = ["sentiment-lstm", [f"data.train={data.csv}", "data.max_length=6", "train.max_steps=1", *SMALL]]
    train(base[0], [*base[1], "data.truncate=false"], tmp_path / "drop", progress=False)
    log = (tmp_path / "drop" / "log.txt").read_text()
    assert f"{data.csv}: kept {200 - too_long} of 200 (dropped: too_long {too_long})" in log
    train(base[0], [*base[1], "data.truncate=true"], tmp_path / "cut", progress=False)
    assert f"{data.csv}: kept 200 of 200, truncated {too_long}" in (tmp_path / "cut" / "log.txt").read_text()


# ----------------------------------------------------------------------------------- bad input: exit 2, one line


def test_bad_files_exit_2_with_one_line_naming_file_and_line(data, tmp_path, capsys):
    def run(recipe: str, *overrides: str) -> str:
        return cli_error(["train", recipe, *overrides, *SMALL, "--run-dir", str(tmp_path / "run"), "--quiet"], capsys)

    assert f"{tmp_path / 'none.csv'}: no such file" in run("sentiment-lstm", f"data.train={tmp_path / 'none.csv'}")
    text_file = write_table(tmp_path / "reviews.txt", data.reviews[:10])
    assert f"{text_file}: expected a .csv or .tsv file" in run("sentiment-lstm", f"data.train={text_file}")

    no_column = write_table(tmp_path / "no_column.csv", data.reviews[:10], header=("review", "label"))
    assert f"{no_column}:1: no column 'text'" in run("sentiment-lstm", f"data.train={no_column}")

    unseen = write_table(tmp_path / "unseen.csv", [("great", "pos"), ("meh", "neutral")])
    err = run("sentiment-lstm", f"data.train={data.csv}", f"data.test={unseen}")
    assert f"{unseen}:3: label 'neutral' was never seen in training" in err

    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"text,label\ngood film,pos\nbad film,neg\nawful \xff film,neg\n")
    assert f"{broken}:4: invalid UTF-8" in run("sentiment-lstm", f"data.train={broken}")

    long = write_table(tmp_path / "long.csv", [("great", "pos"), ("a b c d e f g h", "neg")])
    err = run("sentiment-lstm", f"data.train={data.csv}", f"data.test={long}", "data.max_length=6",
              "data.truncate=false")  # fmt: skip
    assert f"{long}:3: example has 8 tokens, more than max_length=6" in err

    tags = tmp_path / "tags.conll"
    tags.write_text("the WORD\n3 NUM\n\nthe WORD\n7 ADJ\n", encoding="utf-8")
    err = run("tagging-bilstm", f"data.train={data.conll}", f"data.test={tags}")
    assert f"{tags}:5: label 'ADJ' was never seen in training" in err
    tags.write_text("the WORD\n3\n", encoding="utf-8")
    assert f"{tags}:2: expected a token in column 0 and a tag" in run("tagging-bilstm", f"data.train={tags}")


# ------------------------------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_a_classifier_killed_at_a_random_step_resumes_to_the_same_weights(data, tmp_path):
    args = ["sentiment-lstm", f"data.train={data.csv}", "train.epochs=4", "train.batch_size=16",
            "train.checkpoint_every=1", "train.log_every=1", "model.dropout=0.3", *SMALL]  # fmt: skip
    check_sigkill_resume(args, tmp_path, steps=4 * 9)  # 140 training reviews / 16 per batch
