"""The seq2seq task end to end: every recipe through the command line, a user's parallel corpus (TSV and two
aligned files), the translator (greedy / beam, attention rows), a tiny model that must learn to reverse digit
strings, and a run killed with SIGKILL that resumes to the very same weights."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from resume_check import check_sigkill_resume

from dnn.cli import main
from dnn.data.batching import IGNORE_INDEX
from dnn.errors import ConfigError, DataError
from dnn.models.registry import create_model, model_config
from dnn.run import load_run, resolve_config
from dnn.tasks import make_task
from dnn.tasks.seq2seq import Seq2SeqSplit, Seq2SeqTask
from dnn.train import train

DNN = [sys.executable, "-m", "dnn.cli"]
SPLIT_FIELDS = ("sources", "src_ids", "tgt_ids", "references", "reference_texts")
TINY_DATA = ["data.sizes=[64,16,16]", "train.max_steps=3", "train.batch_size=16", "train.threads=1"]
TINY_MODEL = ["model.hidden_size=16", "model.embedding_size=8"]
RUN_FILES = ("config.yaml", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "task.json")
WORDS = "the cat dog sees a big small red house tree runs eats fish bird".split()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def quiet_train(recipe, overrides, run_dir):
    return train(recipe, overrides, run_dir=run_dir, progress=False)


def write_pairs(path: Path, n: int, seed: int, sep="\t") -> list[tuple[str, str]]:
    """A toy corpus: a sentence of known words → the same words in reverse order, upper-cased."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(2, 5))
        pairs.append((" ".join(words), " ".join(reversed(words)).upper()))
    path.write_text("".join(f"{s}{sep}{t}\n" for s, t in pairs))
    return pairs


def check_rows(rows, texts, attention: bool):
    """Well-formed translations; attention: one row per output token, a distribution over the source tokens."""
    assert [r["source"] for r in rows] == texts
    for r in rows:
        assert isinstance(r["output"], str) and all(isinstance(t, str) for t in r["output_tokens"])
        assert r["source_tokens"] and all(isinstance(t, str) for t in r["source_tokens"])
        if not attention:
            assert r["attention"] == []
            continue
        assert len(r["attention"]) == len(r["output_tokens"])
        for row in r["attention"]:
            assert len(row) == len(r["source_tokens"]) and min(row) >= 0.0
            assert sum(row) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------- recipes, through the CLI


def check_builtin_run(run_dir: Path, stdout: str, steps: int, attention: bool, source: str) -> None:
    results = json.loads(stdout.strip().splitlines()[-1])
    assert results["steps"] == steps
    for split in ("valid", "test"):
        assert set(results[split]) == {"exact_match", "token_accuracy", "bleu", "chrf", "loss"}
        assert 0.0 <= results[split]["exact_match"] <= results[split]["token_accuracy"] + 1e-9 <= 1.0 + 1e-9
    for name in RUN_FILES + ("source_vocab.json", "target_vocab.json", "source_tokenizer.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "task.json").read_text())["task"] == "Seq2SeqTask"
    assert (
        "BLEU nrefs:1|case:mixed|eff:no|tok:char" in (run_dir / "log.txt").read_text()
    )  # the sacrebleu signature, logged once

    predictor = load_run(run_dir).predictor
    texts = [source, source + "?"]
    for beam in (1, 3):
        rows = predictor.translate(texts, beam_size=beam)
        check_rows(rows, texts, attention)
        for row in rows:  # char tokens: the output is its tokens joined; the source, one token per character
            assert row["output"] == "".join(row["output_tokens"])
        assert rows[0]["source_tokens"] == list(source)
        assert rows[1]["source_tokens"][-1] == "<unk>"  # "?" never appears in the training sources


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
    """dates-attention trained for 30 tiny steps through the command line: (run directory, its stdout)."""
    run_dir = tmp_path_factory.mktemp("seq2seq") / "dates"
    overrides = [*TINY_DATA, *TINY_MODEL, "train.max_steps=30", "train.lr=0.01"]
    r = run(DNN + ["train", "dates-attention", *overrides, "--run-dir", str(run_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    return run_dir, r.stdout


def test_dates_attention_recipe_trains_through_the_cli_and_translates(dates_run):
    check_builtin_run(*dates_run, steps=30, attention=True, source="March 3, 2021")


@pytest.mark.parametrize(
    "recipe,attention,source", [("dates-no-attention", False, "2019.02.15"), ("addition-seq2seq", True, "535+61")]
)
def test_builtin_recipe_trains_through_the_cli_and_translates(recipe, attention, source, tmp_path):
    run_dir = tmp_path / recipe
    r = run(DNN + ["train", recipe, *TINY_DATA, *TINY_MODEL, "--run-dir", str(run_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    check_builtin_run(run_dir, r.stdout, steps=3, attention=attention, source=source)


def test_dnn_translate_prints_the_beam_search_output_and_one_attention_line_per_token(dates_run):
    run_dir = dates_run[0]
    text = "the 7th of April, 1957"
    r = run(DNN + ["translate", str(run_dir), text, "--attention"])
    assert r.returncode == 0, r.stderr
    (expected,) = load_run(run_dir).predictor.translate([text], beam_size=5)  # the CLI's default beam
    lines = r.stdout.rstrip("\n").split("\n")
    assert lines[0] == expected["output"]
    assert len(lines) == 1 + len(expected["output_tokens"])
    for line, token, weights in zip(lines[1:], expected["output_tokens"], expected["attention"]):
        aligned = expected["source_tokens"][max(range(len(weights)), key=weights.__getitem__)]
        assert line.split()[0] == repr(token) and f"← {aligned!r}" in line


def test_empty_input_is_a_data_error(dates_run):
    predictor = load_run(dates_run[0]).predictor
    with pytest.raises(DataError, match="empty input"):
        predictor.translate(["March 3, 2021", "  "])


# ----------------------------------------------------------------------------------- a user's parallel corpus


def test_translate_tsv_trains_bpe_on_the_training_split_only(tmp_path):
    write_pairs(tmp_path / "my.tsv", 80, seed=1)
    (tmp_path / "test.tsv").write_text("zyxwvut the cat\tCAT THE ZYXWVUT\n" * 3)
    run_dir = tmp_path / "tsv"
    args = ["train", "translate-tsv", f"data.train={tmp_path / 'my.tsv'}", f"data.test={tmp_path / 'test.tsv'}"]
    r = run(DNN + [*args, *TINY_DATA[1:], *TINY_MODEL, "--run-dir", str(run_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(results["valid"]) == {"exact_match", "token_accuracy", "bleu", "chrf", "loss"}
    assert results["test"] and 0.0 <= results["test"]["bleu"] <= 100.0
    log = (run_dir / "log.txt").read_text()
    assert "my.tsv: kept 80 of 80" in log and "test.tsv: kept 3 of 3" in log
    assert "train 72, valid 8, test 3 pairs" in log
    assert (
        "BLEU nrefs:1|case:mixed|eff:no|tok:13a" in log
    )  # BLEU over words, for subword models  # valid split off by data.valid_fraction; test given

    loaded = load_run(run_dir)
    (row,) = loaded.predictor.translate(["zyxwvut the cat"], beam_size=2)
    check_rows([row], ["zyxwvut the cat"], attention=True)
    assert "Ġthe" in row["source_tokens"]  # a byte-level BPE subword of a training word
    r = run(DNN + ["eval", str(run_dir), "--data", str(tmp_path / "test.tsv")])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test"] == results["test"]  # the run's own tokenizers and vocabularies
    # the word seen (3 times) only in the test file made no merge: one byte-level token per letter
    assert len(loaded.predictor.src_tokenizer.tokenize("zyxwvut")) == 7


def test_two_aligned_files_split_reproducibly_by_seed(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.tsv", 50, seed=2)
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s, _ in pairs))
    (tmp_path / "tgt.txt").write_text("".join(t + "\n" for _, t in pairs))
    overrides = [f"data.train={tmp_path / 'src.txt'}", f"data.target={tmp_path / 'tgt.txt'}", "data.tokenizer=word"]

    def prepared(*extra):
        task = make_task(resolve_config("translate-tsv", overrides + list(extra)))
        task.prepare(lambda message: None)
        return task

    a, b, c = prepared(), prepared(), prepared("seed=1")
    assert [len(a.splits[s]) for s in ("train", "valid", "test")] == [35, 5, 10]  # 70/10/20
    assert a.splits["test"].reference_texts == b.splits["test"].reference_texts
    assert a.splits["test"].reference_texts != c.splits["test"].reference_texts
    every = sorted(t for s in ("train", "valid", "test") for t in a.splits[s].reference_texts)
    assert every == sorted(t for _, t in pairs)  # word tokens round-trip these single-spaced targets
    assert a.monitor == ("bleu", "max")

    results = quiet_train("translate-tsv", overrides + TINY_DATA[1:] + TINY_MODEL, tmp_path / "files")
    assert results["steps"] == 3 and set(results["test"]) >= {"bleu", "chrf"}


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data.train={d}/src.txt", "data.target={d}/tgt.txt"], "{d}/src.txt: has 3 lines but {d}/tgt.txt has 2"),
        ([], "data.train must name a parallel corpus"),
        (["data.train={d}/bad.tsv"], "{d}/bad.tsv:2: expected 2 tab-separated fields"),
        (["data.source=datez"], "data.source must be one of"),
        (["data.train={d}/ok.tsv", "data.vocab_size=100"], "data.vocab_size must be an int ≥ 256, got 100"),
        (
            ["data.train={d}/ok.tsv", "data.test={d}/long.tsv", "data.max_length=4", "data.tokenizer=word"],
            "{d}/long.tsv:1: example has 5 tokens, more than max_length=4",
        ),
    ],
)
def test_corpus_errors_are_one_line_and_exit_2(overrides, message, tmp_path, capsys):
    (tmp_path / "src.txt").write_text("a b\nc d\ne f\n")
    (tmp_path / "tgt.txt").write_text("B A\nD C\n")
    (tmp_path / "bad.tsv").write_text("a b\tB A\nno tab here\n")
    (tmp_path / "ok.tsv").write_text("a b\tB A\n" * 10)
    (tmp_path / "long.tsv").write_text("a b c d e\tE D C B A\n")
    args = [o.format(d=tmp_path) for o in overrides]
    code = main(["train", "translate-tsv", *args, "--run-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("dnn: error: ") and message.format(d=tmp_path) in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ in-process checks


def tiny_task(**data):
    overrides = ["data.sizes=[40,8,8]", "train.batch_size=8"] + [f"data.{k}={v}" for k, v in data.items()]
    task = make_task(resolve_config("dates-attention", overrides))
    task.prepare(lambda message: None)
    return task


def test_validation_during_training_can_use_an_even_subset_and_the_final_figures_use_all():
    whole, part = tiny_task(), tiny_task(valid_subset=3)
    torch.manual_seed(0)
    model = create_model(
        "seq2seq", model_config("seq2seq", **whole.model_options(), hidden_size=8, embedding_size=4)
    ).eval()
    assert whole.validate(model) == whole.evaluate(model, "valid") == part.evaluate(model, "valid")
    valid = part.splits["valid"]
    picks = [0, 2, 5]  # 3 of 8, spread evenly
    part.splits["valid"] = Seq2SeqSplit(*([getattr(valid, f)[i] for i in picks] for f in SPLIT_FIELDS))
    subset = part.evaluate(model, "valid")
    part.splits["valid"] = valid
    assert part.validate(model) == subset
    with pytest.raises(ConfigError, match=r"^data.valid_subset must be 0 \(the whole validation split\) or a "):
        tiny_task(valid_subset=-1)


def test_batches_are_a_function_of_seed_and_epoch_and_padding_never_counts():
    a, b = tiny_task(), tiny_task()
    assert isinstance(a, Seq2SeqTask) and a.monitor == ("exact_match", "max")
    first = [batch.src.tolist() for batch in a.train_batches(1)]
    assert first == [batch.src.tolist() for batch in b.train_batches(1)]
    assert first != [batch.src.tolist() for batch in a.train_batches(0)]
    assert len(first) == a.batches_per_epoch() == 5

    torch.manual_seed(0)
    model = create_model(
        "seq2seq", model_config("seq2seq", **a.model_options(), hidden_size=8, embedding_size=4, attention="concat")
    ).eval()
    batch = next(iter(a.train_batches(0)))
    assert (batch.tgt_in[:, 0] == 2).all()  # <sos>
    assert (batch.tgt_out[~batch.tgt_mask] == IGNORE_INDEX).all()
    assert (batch.tgt_out.gather(1, batch.tgt_lengths[:, None] - 1) == 3).all()  # each target ends with <eos>
    loss, n = a.step(model, batch, {})
    total, count = 0.0, 0
    for i in range(n):  # each pair alone, without padding: the batch loss is the mean over all real tokens
        S, T = int(batch.src_lengths[i]), int(batch.tgt_lengths[i])
        logits, _ = model(batch.src[i : i + 1, :S], batch.src_lengths[i : i + 1], batch.tgt_in[i : i + 1, :T])
        total += F.cross_entropy(logits[0], batch.tgt_out[i, :T], reduction="sum").item()
        count += T
    assert n == batch.src.shape[0]
    torch.testing.assert_close(loss.item(), total / count, rtol=1e-5, atol=1e-6)


def test_a_tiny_model_learns_to_reverse_digit_strings(tmp_path):
    overrides = [
        "data.source=reverse", "data.sizes=[2000,200,200]", "data.params.max_len=6", "train.max_steps=200",
        "train.batch_size=32", "train.lr=0.01", "train.eval_every=100", "model.hidden_size=32",
        "model.embedding_size=16", "model.attention_hidden_size=32",
    ]  # fmt: skip
    results = quiet_train("dates-attention", overrides, tmp_path / "rev")
    assert results["test"]["exact_match"] >= 0.9, results

    loaded = load_run(tmp_path / "rev")
    texts = ["35817", "9021", "4466"]
    greedy_rows = loaded.predictor.translate(texts, beam_size=1)
    beam_rows = loaded.predictor.translate(texts, beam_size=4)
    check_rows(greedy_rows, texts, attention=True)
    check_rows(beam_rows, texts, attention=True)
    assert sum(r["output"] == t[::-1] for r, t in zip(beam_rows, texts)) >= 2
    for row in greedy_rows:  # reversing: output token i mostly attends to source token n − 1 − i
        n = len(row["source_tokens"])
        peaks = [max(range(n), key=weights.__getitem__) for weights in row["attention"]]
        assert sum(p == n - 1 - i for i, p in enumerate(peaks)) >= n - 1

    task = make_task(resolve_config(str(tmp_path / "rev" / "config.yaml"), []))
    task.prepare(lambda message: None)
    result = task.accuracy_by_length(loaded.model, "test")
    by_length = result.accuracy
    sizes = {n: sum(len(ids) == n for ids in task.splits["test"].src_ids) for n in by_length}
    assert result.counts == sizes
    overall = sum(by_length[n] * sizes[n] for n in by_length) / len(task.splits["test"])
    assert set(by_length) <= set(range(3, 7))
    exact = task.evaluate(loaded.model, "test")["exact_match"]
    assert overall == pytest.approx(exact)
    test = task.splits["test"]  # the translator's greedy outputs score the same as evaluate()'s
    outputs = [row["output"] for row in loaded.predictor.translate(test.sources, beam_size=1)]
    assert sum(o == r for o, r in zip(outputs, test.reference_texts)) / len(test) == pytest.approx(exact)


# --------------------------------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Dropout and scheduled sampling (teacher_forcing < 1) are on: every RNG has to be restored right.
    Three runs of 60 steps in subprocesses: ~20 s on a quiet machine, much more on a busy one, hence slow."""
    args = [
        "dates-attention", "data.source=reverse", "data.sizes=[480,32,32]", "train.epochs=2", "train.max_steps=0",
        "train.batch_size=16", "train.checkpoint_every=1", "train.log_every=1", "train.threads=1",
        "model.hidden_size=16", "model.embedding_size=8", "model.dropout=0.3", "model.teacher_forcing=0.5",
    ]  # fmt: skip
    check_sigkill_resume(args, tmp_path, steps=2 * 30)
