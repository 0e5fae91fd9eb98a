"""`dnn experiment`: every experiment's quick version runs for real, writes results-quick.md and its plot, and
returns numbers that already show what the full version measures where no training budget is needed (gradients at
initialisation, parameter counts, the baseline MSE of the adding problem, logistic regression on shifted digits)."""

import json
import math

import pytest
import torch

from dnn.cli import main
from dnn.experiments import list_experiments, run_experiment

NAMES = [
    "vanishing-gradient",
    "adding-problem",
    "attention-vs-length",
    "attention-scores",
    "gradient-clipping",
    "gru-vs-lstm",
    "cnn-vs-fc",
    "transfer-learning",
    "truncated-bptt",
    "depth-connections",
    "rnn-vs-transformer",
    "text-transfer",
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Run an experiment's quick version once per module; check the files every result must leave."""
    root = tmp_path_factory.mktemp("experiments")
    done = {}

    def get(name):
        if name not in done:
            result = done[name] = run_experiment(name, quick=True, out=root / "out", runs=root / "runs",
                                                 log=lambda message: None)  # fmt: skip
            assert result.results_file == root / "out" / name / "results-quick.md"
            text = result.results_file.read_text(encoding="utf-8")
            assert f"# `{name}`" in text and "| expectation | measured | verdict |" in text
            assert result.plot.is_file() and result.plot.stat().st_size > 1000
            assert all(v in ("PASS", "FAIL", "n/a (quick)") for v in result.verdicts)
            assert not (root / "out" / name / "results.md").exists()  # a quick run never overwrites the full one
        return done[name]

    return get


def test_list_names_every_experiment_with_its_claim(capsys):
    assert [e.name for e in list_experiments()] == NAMES
    assert main(["experiment", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(NAMES)
    assert lines[0].split()[0] == "vanishing-gradient" and "tanh" in lines[0]


def test_an_unknown_experiment_is_a_one_line_error(capsys):
    assert main(["experiment", "adding-problme"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "dnn: error: no experiment named 'adding-problme'; did you mean 'adding-problem'?"


def test_vanishing_gradient_at_initialisation_is_measured_even_in_quick_mode(quick):
    result = quick("vanishing-gradient")
    rows = {row["cell"]: row for row in result.table("At initialisation").rows}
    assert rows["GRU"]["c, d = 50"] is None and rows["LSTM, forget bias 1"]["c, d = 50"] is not None
    # at T = 100, H = 64, against float32's epsilon: the tanh RNN and torch's LSTM vanish, and the cell state keeps
    # more than the hidden state (the highway); what no cited paper states — the forget-bias-1 LSTM above ε, anything
    # after training — is measured and reported, not asserted
    assert [c.verdict(True) for c in result.checks] == ["PASS"] * 3
    assert not any("after training" in c.expectation or "kept" in c.expectation for c in result.checks)
    assert "ε" in result.checks[0].expectation
    assert [row["cell"] for row in result.table("After").rows] == ["tanh RNN", "LSTM, forget bias 1", "GRU"]
    assert "## What this shows" in result.results_file.read_text(encoding="utf-8")


def test_adding_problem_reports_the_baseline_and_every_cell(quick):
    result = quick("adding-problem")
    assert [r["cell"] for r in result.table("Mean").rows] == ["tanh RNN", "LSTM (forget bias 1)", "GRU"]
    for row in result.table("Every run").rows:
        assert 0.1 < row["baseline MSE"] < 0.25  # 1/6 on 64 test sequences
        assert row["steps run"] == 30 and math.isfinite(row["test MSE"])
    assert result.verdict == "n/a (quick)" and len(result.checks) == 3
    assert "RMSprop" in "\n".join(result.commands)  # the published optimiser, not one of dnn train's


def test_gradient_clipping_sweeps_learning_rates_with_tau_from_a_stable_run(quick):
    result = quick("gradient-clipping")
    assert [r["lr"] for r in result.table("The learning-rate sweep").rows] == [0.01, 1.0]
    taus = result.table("τ for each seed").rows
    assert [r["seed"] for r in taus] == [0, 1]
    for row in taus:  # τ is the average norm of an unclipped run, never a clipped pilot's
        assert row["τ"] > 0 and row["source run: lr"] in (0.01, 1.0)
    assert len(result.checks) == 2


def test_gru_has_exactly_three_quarters_of_the_lstms_parameters(quick):
    result = quick("gru-vs-lstm")
    for row in result.table("Parameters of one recurrent layer").rows:
        expected = {"tanh RNN": 0.25, "LSTM (forget bias 1)": 1.0, "GRU": 0.75}[row["cell"]]
        assert row["÷ LSTM's"] == expected
    assert result.checks[0].verdict(True) == "PASS" and "3/4" in result.checks[0].expectation
    budget = [row["parameters"] for row in result.table("Character language model").rows]
    assert max(budget) - min(budget) <= 0.1 * min(budget)  # the same parameter budget, as in Chung et al.


def test_cnn_vs_fc_shifted_digits_and_parameter_growth(quick):
    result = quick("cnn-vs-fc")
    logreg = result.table("The digits on").rows[0]
    assert logreg["model"].startswith("logistic regression")
    assert logreg["test centred"] > 0.9 and logreg["test at random offsets"] < 0.5  # pixels have fixed weights
    growth = {row["model"].split()[0]: row for row in result.table("Parameters").rows}
    assert growth["fully"]["64×64"] == 64 * 64 * 64 + 64 + 64 * 10 + 10
    assert len({growth["small"][k] for k in ("8×8", "16×16", "32×32", "64×64")}) == 1
    assert result.checks[-1].verdict(True) == "PASS"


def test_transfer_learning_trains_only_the_head_of_a_frozen_body(quick):
    rows = {row["variant"]: row for row in quick("transfer-learning").tables[0].rows}
    assert list(rows) == ["from scratch", "fine-tuned", "frozen pretrained body, new head",
                          "frozen random body, new head"]  # fmt: skip
    assert rows["frozen random body, new head"]["trained parameters"] == 64 * 5 + 5  # fc: 64 features → 5 classes
    assert rows["fine-tuned"]["trained parameters"] == rows["from scratch"]["trained parameters"]
    assert all(0.0 <= row["mean"] <= 1.0 for row in rows.values())


def test_attention_vs_length_compares_three_models_on_every_length(quick):
    rows = quick("attention-vs-length").tables[0].rows
    assert [r["model"] for r in rows] == ["no attention", "no attention, source reversed", "attention (concat)"]
    assert rows[0]["parameters"] == rows[1]["parameters"] < rows[2]["parameters"]
    assert all(0.0 <= r["length 20"] <= 1.0 for r in rows)
    assert "unidirectional" in quick("attention-vs-length").tables[0].title


def test_attention_scores_count_their_own_parameters(quick):
    rows = {r["score"]: r for r in quick("attention-scores").tables[0].rows}
    assert rows["dot"]["attention parameters"] == 0
    assert rows["general"]["attention parameters"] == 16 * 16  # W: memory (2×8) → query (16)
    assert rows["concat"]["attention parameters"] == 16 * 16 + 16 * 16 + 16 + 16  # W_q, W_k, b, v (H = 16)


def test_truncated_bptt_measures_each_k(quick):
    rows = quick("truncated-bptt").tables[0].rows
    assert [r["k"] for r in rows] == [10, 35, 100]
    for row in rows:
        assert row["steps"] == 5 and row["valid perplexity (state reset every k)"] != "–"


def test_the_command_runs_an_experiment_and_prints_its_table(tmp_path, capsys):
    argv = ["experiment", "gradient-clipping", "--quick", "--out", str(tmp_path / "out"), "--runs", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "# `gradient-clipping`" in out and "| lr | unclipped: diverged | unclipped: trains |" in out
    assert f"written: {tmp_path / 'out' / 'gradient-clipping' / 'results-quick.md'}" in out
    index = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| `gradient-clipping` |" in index and "not run yet" in index  # the index lists full runs only


def test_an_experiment_trains_on_the_device_it_is_given(tmp_path):
    """`dnn experiment --device cpu`: every run it trains says so in its command and its results.json."""
    result = run_experiment("attention-scores", quick=True, out=tmp_path / "out", runs=tmp_path / "runs",
                            log=lambda message: None, device="cpu")  # fmt: skip
    commands = [c for c in result.commands if c.startswith("dnn train")]
    assert commands and all("train.device=cpu" in c for c in commands)
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("results.json")]
    assert results and {r["device"] for r in results} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_an_experiment_on_a_missing_gpu_is_one_line_before_anything_runs(tmp_path, capsys):
    argv = ["experiment", "adding-problem", "--quick", "--device", "cuda", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dnn: error: --device=cuda: no CUDA device here") and "\n" not in err
    assert not (tmp_path / "out").exists()
