"""The command's options: an option that does not apply to the run, or to the other options given, is one line and
exit 2 (never ignored); options, overrides and positionals may come in any order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dnn.cli import main
from dnn.train import train

RECURRENT = ["model.hidden_size=8", "model.embedding_size=4", "train.threads=1"]
TEXT = "The quick brown fox jumps over the lazy dog. A recurrent network reads one character at a time.\n" * 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> SimpleNamespace:
    """Tiny runs (3 steps each): seq2seq with and without attention, and a character language model."""
    root = tmp_path_factory.mktemp("cli_options")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    dates = ["data.sizes=[32,8,8]", "train.max_steps=3", "train.batch_size=8", *RECURRENT]
    specs = {
        "attention": ("dates-attention", dates),
        "plain": ("dates-no-attention", dates),
        "charlm": ("charlm-pydoc", ["data.source=null", f"data.train={root / 'text.txt'}", "model.num_layers=1",
                                    "train.max_steps=3", "train.batch_size=4", "data.length=20", *RECURRENT]),
    }  # fmt: skip
    paths = {}
    for name, (recipe, overrides) in specs.items():
        paths[name] = root / name
        train(recipe, overrides, run_dir=paths[name], progress=False)
    return SimpleNamespace(root=root, **paths)


def _error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("dnn: error: ")
    return captured.err.removeprefix("dnn: error: ").rstrip("\n")


def test_attention_on_a_run_without_attention_is_an_error(runs, capsys):
    message = _error(capsys, ["translate", str(runs.plain), "March 3, 2021", "--attention"])
    assert message == f"{runs.plain}: --attention needs a model with attention; this run's has none (leave out " \
                      f"--attention)"  # fmt: skip
    assert main(["translate", str(runs.attention), "March 3, 2021", "--attention", "--beam-size", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) > 1 and all(" ← " in line for line in out[1:])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--beam-size", "1", "--length-penalty", "1"],
         "--length-penalty applies to beam search; with --beam-size 1 (greedy) leave it out"),
        (["--beam-size", "2", "--n-best", "3"], "--n-best 3 needs --beam-size of at least 3, got 2"),
    ],
)  # fmt: skip
def test_translate_options_that_do_not_fit_together(runs, capsys, argv, message):
    assert _error(capsys, ["translate", str(runs.attention), "March 3, 2021", *argv]) == message


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--beam-size", "3", "--top-k", "5"],
         "--top-k applies to sampling; --beam-size 3 searches instead (leave out --top-k, or --beam-size)"),
        (["--beam-size", "2", "--temperature", "1", "--top-p", "0.9", "--seed", "4"],
         "--temperature and --top-p and --seed apply to sampling; --beam-size 2 searches instead (leave out "
         "--temperature and --top-p and --seed, or --beam-size)"),
        (["--temperature", "0", "--top-k", "5"],
         "--top-k applies to sampling; --temperature 0 takes the most likely token (leave out --top-k, or give a "
         "temperature above 0)"),
    ],
)  # fmt: skip
def test_generate_sampling_options_with_beam_search_or_greedy_are_errors(runs, capsys, argv, message):
    assert _error(capsys, ["generate", str(runs.charlm), "--prompt", "The ", "--length", "5", *argv]) == message


def test_generate_takes_its_sampling_options(runs, capsys):
    assert main(["generate", str(runs.charlm), "--prompt", "The ", "--length", "5", "--top-k", "3", "--seed", "1"]) == 0
    sampled = capsys.readouterr().out
    assert main(["generate", str(runs.charlm), "--length", "5", "--prompt", "The ", "--beam-size", "2"]) == 0
    assert sampled.startswith("The ") and capsys.readouterr().out.startswith("The ")


def test_n_best_over_several_texts_labels_each_list_with_its_text(runs, capsys):
    texts = ["March 3, 2021", "the 7th of April, 1957"]
    assert main(["translate", str(runs.attention), *texts, "--beam-size", "3", "--n-best", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [lines[0], lines[3]] == texts
    for line in lines[1:3] + lines[4:6]:
        rank, score, _ = line.split("\t")
        assert rank in ("1", "2") and float(score) <= 0
    assert len(lines) == 6
    assert main(["translate", str(runs.attention), texts[0], "--beam-size", "3", "--n-best", "2"]) == 0
    single = capsys.readouterr().out.splitlines()  # one text: the list alone, as before
    assert [line.split("\t")[0] for line in single] == ["1", "2"]


def test_options_overrides_and_positionals_in_any_order(runs, capsys, tmp_path):
    assert main(["translate", str(runs.attention), "--beam-size", "3", "March 3, 2021"]) == 0
    options_between = capsys.readouterr().out
    assert main(["translate", str(runs.attention), "March 3, 2021", "--beam-size", "3"]) == 0
    assert options_between == capsys.readouterr().out and options_between.count("\n") == 1

    recipe = Path(__file__).resolve().parents[2] / "src" / "dnn" / "recipes" / "dates-no-attention.yaml"
    mine = tmp_path / "my.yaml"
    mine.write_text(recipe.read_text(encoding="utf-8"), encoding="utf-8")
    run_dir = tmp_path / "mine"
    argv = ["train", str(mine), "--run-dir", str(run_dir), "train.threads=1", "--quiet", "data.sizes=[32,8,8]",
            "train.max_steps=2", "train.batch_size=8", *RECURRENT]  # fmt: skip
    assert main(argv) == 0
    assert '"steps": 2' in capsys.readouterr().out
    assert (run_dir / "model.safetensors").is_file()


def test_empty_validation_or_test_sizes_are_said_at_the_start(tmp_path, capsys):
    argv = ["train", "dates-attention", "data.sizes=[10,0,0]", "train.max_steps=1", "--quiet", *RECURRENT]
    assert main([*argv, "--run-dir", str(tmp_path / "none")]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "dnn: note: data.sizes=[10, 0, 0] leaves the validation and test splits empty: this run ends with no "
        "validation or test metrics (to get them: data.sizes=[10,1,1])\n"
    )
    assert '"valid": {}, "test": {}' in captured.out
    argv[2] = "data.sizes=[10,2,0]"
    assert main([*argv, "--run-dir", str(tmp_path / "no-test")]) == 0
    assert capsys.readouterr().err == (
        "dnn: note: data.sizes=[10, 2, 0] leaves the test split empty: this run ends with no test metrics (to get "
        "them: data.sizes=[10,2,1])\n"
    )
    argv[2] = "data.sizes=[10,2,2]"
    assert main([*argv, "--run-dir", str(tmp_path / "all")]) == 0
    assert capsys.readouterr().err == ""
