"""`dnn experiment`: every experiment's quick version runs for real, writes results-quick.md and its plot, and
returns numbers that already show what the full version measures where no training budget is needed (gradients at
initialisation, parameter counts, the baseline MSE of the adding problem, logistic regression on shifted digits)."""

import math

import pytest

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
    assert rows["tanh RNN"]["h, d = 50"] < 1e-8  # the claim, at T = 100, H = 64
    assert rows["LSTM, forget bias 0"]["h, d = 50"] < 1e-6 < 1e-5 < rows["LSTM, forget bias 1"]["h, d = 50"]
    assert rows["LSTM, forget bias 1"]["c, d = 50"] > rows["LSTM, forget bias 1"]["h, d = 50"]  # the highway
    assert rows["GRU"]["c, d = 50"] is None
    assert [c.verdict(True) for c in result.checks[:3]] == ["PASS"] * 3
    assert len(result.table("After").rows) == 4


def test_adding_problem_reports_the_baseline_and_every_cell(quick):
    rows = quick("adding-problem").tables[0].rows
    assert [r["cell"] for r in rows] == ["tanh RNN", "LSTM (forget bias 1)", "GRU"]
    for row in rows:
        assert 0.1 < row["baseline MSE"] < 0.25  # 1/6 on 64 test sequences
        assert row["steps"] == 30 and math.isfinite(row["test MSE"])
    assert quick("adding-problem").verdict == "n/a (quick)"


def test_gradient_clipping_rows_cover_every_seed_and_threshold(quick):
    result = quick("gradient-clipping")
    rows = result.tables[0].rows
    assert len(rows) == 2 * 6  # 2 seeds × (none + 4 thresholds + the pilot at τ = 1)
    for seed in (0, 1):
        taus = [r["threshold τ"] for r in rows if r["seed"] == seed and r["threshold τ"] is not None]
        assert taus[:4] == pytest.approx([taus[1] * f for f in (0.5, 1.0, 2.0, 10.0)]) and taus[4] == 1.0
    unclipped = [r for r in rows if r["clipping"] == "none"]
    assert all(r["clipped steps"] == 0 for r in unclipped)


def test_gru_has_exactly_three_quarters_of_the_lstms_parameters(quick):
    result = quick("gru-vs-lstm")
    for row in result.tables[0].rows:
        expected = {"tanh RNN": 0.25, "LSTM (forget bias 1)": 1.0, "GRU": 0.75}[row["cell"]]
        assert row["÷ LSTM's"] == expected and row["ms per step"] > 0
    ratio_checks = [c for c in result.checks if "3/4" in c.expectation]
    assert len(ratio_checks) == 2 and all(c.verdict(True) == "PASS" for c in ratio_checks)


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


def test_attention_scores_count_their_own_parameters(quick):
    rows = {r["score"]: r for r in quick("attention-scores").tables[0].rows}
    assert rows["dot"]["attention parameters"] == 0
    assert rows["general"]["attention parameters"] == 16 * 16  # W: memory (2×8) → query (16)
    assert rows["concat"]["attention parameters"] == 16 * 16 + 16 * 16 + 16 + 16  # W_q, W_k, b, v (H = 16)


def test_truncated_bptt_measures_each_k(quick):
    rows = quick("truncated-bptt").tables[0].rows
    assert [r["k"] for r in rows] == [10, 35, 100]
    for row in rows:
        assert row["steps"] == 5 and row["valid perplexity (state reset every k)"] > 1.0


def test_the_command_runs_an_experiment_and_prints_its_table(tmp_path, capsys):
    argv = ["experiment", "gradient-clipping", "--quick", "--out", str(tmp_path / "out"), "--runs", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "# `gradient-clipping`" in out and "| seed | clipping | threshold τ |" in out
    assert f"written: {tmp_path / 'out' / 'gradient-clipping' / 'results-quick.md'}" in out
    index = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| `gradient-clipping` |" in index and "not run yet" in index  # the index lists full runs only
