"""The pictures from plain data: each is a PNG of a sensible size with something drawn in it, long inputs make
bigger pictures only up to a cap, empty and one-token inputs draw (a panel that says what is missing), labels
show tokens as they are, and a mismatch of shapes is one line naming the argument."""

import json

import numpy as np
import pytest
from PIL import Image

from dnn.errors import ConfigError, DataError
from dnn.inspect import (
    accuracy_by_length_plot,
    attention_heatmap,
    confusion_matrix_plot,
    feature_maps_plot,
    filters_plot,
    gradient_flow_plot,
    read_metrics,
    training_curves,
)
from dnn.inspect.figures import DPI, MAX_INCHES, MAX_LABELS, fit_title, thinned, token_label


def picture(path) -> np.ndarray:
    """The PNG as an (H, W, 3) array, after checking it is one."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def drawn(pixels: np.ndarray) -> float:
    """The share of pixels that are not white: 0 for an empty picture."""
    return float((pixels < 250).any(axis=-1).mean())


def tokens(n: int, prefix: str = "w") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def attention(T: int, S: int, seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).random((T, S))
    return w / w.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------- attention


def test_attention_heatmap_draws_the_weights_and_grows_with_the_sentence_up_to_a_cap(tmp_path):
    short = picture(attention_heatmap(tokens(5), tokens(3, "o"), attention(3, 5), tmp_path / "short.png", "a → b"))
    long = picture(attention_heatmap(tokens(60), tokens(45, "o"), attention(45, 60), tmp_path / "long.png"))
    huge = picture(attention_heatmap(tokens(200), tokens(150, "o"), attention(150, 200), tmp_path / "huge.png"))
    assert 250 <= short.shape[1] < long.shape[1] <= huge.shape[1] <= (MAX_INCHES + 4) * DPI
    assert short.shape[0] < long.shape[0] <= huge.shape[0] <= (MAX_INCHES + 4) * DPI
    for pixels in (short, long, huge):
        assert drawn(pixels) > 0.2  # the cells fill most of the picture


def test_attention_heatmap_of_empty_and_one_token_inputs_draws_without_failing(tmp_path):
    one = picture(attention_heatmap(["x"], ["y"], [[1.0]], tmp_path / "one.png"))
    assert drawn(one) > 0.05
    for name, (src, out, w) in {"none": ([], [], []), "no_output": (["a", "b"], [], []),
                                "no_source": ([], ["y"], [[]])}.items():  # fmt: skip
        empty = picture(attention_heatmap(src, out, w, tmp_path / f"{name}.png"))
        assert 0.0 < drawn(empty) < 0.05  # a line of text that says the input is empty


def test_attention_heatmap_names_the_shape_it_expected(tmp_path):
    with pytest.raises(ConfigError, match=r"weights must have shape .* = \(2, 3\), got \(3, 2\)"):
        attention_heatmap(tokens(3), tokens(2), np.ones((3, 2)), tmp_path / "bad.png")


def test_tick_labels_are_thinned_and_show_tokens_as_they_are():
    assert thinned(10) == list(range(10))
    assert len(thinned(400)) <= MAX_LABELS and thinned(400)[:2] == [0, 10]
    assert token_label(" ") == "␣" and token_label("\n") == "↵" and token_label("") == "∅"
    assert token_label("$x$") == r"\$x\$"  # not mathtext
    assert token_label("a" * 40) == "a" * 23 + "…"
    assert fit_title("cost $5 " + "word " * 200, 4.0).count("\n") == 1 and fit_title("x", 4.0) == "x"


# ---------------------------------------------------------------------------------------------- curves


def test_gradient_flow_plot_draws_curves_and_survives_zeros_and_empty_curves(tmp_path):
    norms = {"layer 1": list(np.logspace(0, -12, 60)), "layer 1 cell state c": list(np.logspace(0, -2, 60)),
             "layer 2": [1.0, 0.0, 0.5]}  # fmt: skip
    assert drawn(picture(gradient_flow_plot(norms, tmp_path / "flow.png"))) > 0.05
    assert drawn(picture(gradient_flow_plot({"layer 1": [0.3]}, tmp_path / "one.png"))) > 0.02
    assert 0 < drawn(picture(gradient_flow_plot({}, tmp_path / "none.png"))) < 0.05
    assert 0 < drawn(picture(gradient_flow_plot({"layer 1": [0.0, 0.0]}, tmp_path / "zeros.png")))


def test_accuracy_by_length_plot(tmp_path):
    accuracy = {n: 1.0 - n / 40 for n in range(5, 31)}
    counts = {n: 40 - n for n in range(5, 31)}
    pixels = picture(accuracy_by_length_plot(accuracy, tmp_path / "len.png", counts))
    assert pixels.shape[1] >= 500 and drawn(pixels) > 0.05
    assert drawn(picture(accuracy_by_length_plot({7: 0.5}, tmp_path / "one.png"))) > 0.02
    assert 0 < drawn(picture(accuracy_by_length_plot({}, tmp_path / "none.png"))) < 0.05


RECORDS = [
    {"kind": "train", "step": 10, "loss": 2.0, "grad_norm": 3.0, "grad_norm_max": 5.0, "clip_rate": 0.5, "lr": 1e-3},
    {"kind": "eval", "split": "valid", "step": 10, "accuracy": 0.5, "loss": 1.9, "bleu": 12.0},
    {"kind": "train", "step": 20, "loss": 1.0, "grad_norm": 2.0, "grad_norm_max": 4.0, "clip_rate": 0.0, "lr": 5e-4},
    {"kind": "eval", "split": "valid", "step": 20, "accuracy": 0.8, "loss": 1.2, "bleu": 30.0},
]


def test_training_curves_from_a_metrics_file_with_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + '{"kind": "tra')  # killed mid-write
    assert read_metrics(path) == RECORDS
    pixels = picture(training_curves(path, tmp_path / "curves.png", title="run"))
    assert pixels.shape[1] >= 1000 and drawn(pixels) > 0.05
    assert drawn(picture(training_curves(RECORDS[:1], tmp_path / "one.png"))) > 0.02
    assert drawn(picture(training_curves([], tmp_path / "none.png"))) > 0.0


def test_a_broken_metrics_line_is_a_data_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\nnot json\n" + json.dumps(RECORDS[1]) + "\n")
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a JSON object"):
        read_metrics(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"metrics.jsonl:1: expected a JSON object, got list"):
        read_metrics(path)
    with pytest.raises(DataError, match="missing.jsonl: cannot read the metrics"):
        read_metrics(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------------------------- classes and CNNs


def test_confusion_matrix_plot_small_large_and_empty(tmp_path):
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    small = picture(confusion_matrix_plot(matrix, ["cat", "dog", "bird"], tmp_path / "small.png"))
    classes = [f"tag-{i}" for i in range(45)]
    big = np.random.default_rng(0).integers(0, 5, (45, 45))
    large = picture(confusion_matrix_plot(big, classes, tmp_path / "large.png"))
    assert small.shape[1] < large.shape[1] <= (MAX_INCHES + 4) * DPI and drawn(large) > 0.3
    assert drawn(picture(confusion_matrix_plot([[3]], ["only"], tmp_path / "one.png"))) > 0.05
    assert 0 < drawn(picture(confusion_matrix_plot([], [], tmp_path / "none.png"))) < 0.05
    with pytest.raises(ConfigError, match=r"matrix must have shape \(K, K\) = \(2, 2\) for 2 classes, got \(3, 3\)"):
        confusion_matrix_plot(matrix, ["a", "b"], tmp_path / "bad.png")


def test_filters_plot_grey_and_rgb_kernels_and_at_most_64(tmp_path):
    rng = np.random.default_rng(0)
    grey = picture(filters_plot(rng.normal(size=(6, 1, 5, 5)), tmp_path / "grey.png"))
    rgb = picture(filters_plot(rng.normal(size=(64, 3, 7, 7)), tmp_path / "rgb.png"))
    many = picture(filters_plot(rng.normal(size=(200, 3, 3, 3)), tmp_path / "many.png"))
    assert grey.shape[1] < rgb.shape[1] and many.shape == rgb.shape  # 200 kernels: the first 64, same grid
    assert drawn(grey) > 0.1 and drawn(rgb) > 0.3
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 50  # in colour
    with pytest.raises(ConfigError, match=r"weights must be a 4-D array, got shape \(6, 5, 5\)"):
        filters_plot(np.zeros((6, 5, 5)), tmp_path / "bad.png")


def test_feature_maps_plot_rows_of_every_size_and_the_input(tmp_path):
    rng = np.random.default_rng(0)
    maps = {"stem": rng.random((16, 16, 16)), "layer1": rng.random((32, 8, 8)), "layer4": rng.random((64, 1, 1))}
    with_input = picture(feature_maps_plot(maps, tmp_path / "maps.png", image=rng.random((3, 32, 32))))
    without = picture(feature_maps_plot(maps, tmp_path / "maps_only.png"))
    assert with_input.shape[0] > without.shape[0] and drawn(with_input) > 0.2
    assert 0 < drawn(picture(feature_maps_plot({}, tmp_path / "none.png"))) < 0.05
