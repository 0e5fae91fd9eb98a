"""The quick versions of `depth-connections` and `rnn-vs-transformer` run for real and report what their full
versions measure; the one check that needs no training budget (the gradient reaching the first layer of a deep
stack at initialisation) already holds."""

from dnn.experiments import run_experiment


def quick(name, tmp_path):
    result = run_experiment(name, quick=True, out=tmp_path / "out", runs=tmp_path / "runs", log=lambda message: None)
    assert result.plot.is_file() and result.plot.stat().st_size > 1000
    assert "## What this shows" in result.results_file.read_text(encoding="utf-8")
    return result


def test_depth_connections_measures_the_gradient_reaching_the_first_layer(tmp_path):
    result = quick("depth-connections", tmp_path)
    rows = {row["stack"]: row for row in result.table("Every run").rows}
    assert list(rows) == ["plain stack", "residual (skip)", "dense"]
    assert rows["dense"]["parameters"] > rows["plain stack"]["parameters"] == rows["residual (skip)"]["parameters"]
    assert rows["plain stack"]["layer 1 ÷ layer 6 at init"] < rows["residual (skip)"]["layer 1 ÷ layer 6 at init"]
    assert result.verdicts[0] == "PASS" and result.verdicts[1:] == ["n/a (quick)"] * 3
    assert any("model.dense=true" in command for command in result.commands)


def test_rnn_vs_transformer_times_both_models_at_every_length(tmp_path):
    result = quick("rnn-vs-transformer", tmp_path)
    rows = result.table("Mean").rows
    assert [(r["model"].split()[0], r["length n"]) for r in rows] == [
        ("attention", 4), ("attention", 8), ("Transformer", 4), ("Transformer", 8)
    ]  # fmt: skip
    timing = result.table("ms per training update").rows
    assert [r["length n"] for r in timing] == [4, 8] and all(r["RNN ms"] > 0 < r["Transformer ms"] for r in timing)
    assert [r["RNN sequential steps"] for r in timing] == [9, 17] and {r["Transformer sequential steps"]
                                                                       for r in timing} == {4}  # fmt: skip
    assert result.verdict == "n/a (quick)"
