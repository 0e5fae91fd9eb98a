"""dnn export of the Transformer, the captioner and the video classifier: tiny trained runs exported to ONNX and
TorchScript, against the PyTorch model on padded batches of other sizes than the traced one; for the two decoders, a
greedy loop over the exported encoder and decoder step (the manifest only: its names, special ids and state) gives
dnn's greedy decoding token for token, and every step's logits and attention equal the model's.

Tolerance: 1e-5 absolute on float32 outputs (measured differences are ~1e-6). Language-model runs are refused in one
line that says why."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dnn.cli import main
from dnn.decoding import greedy
from dnn.export import export_run, token_batch
from dnn.run import load_run
from dnn.train import train

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

ATOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
FORMATS = ("onnx", "torchscript")
QUIET = ["train.threads=1", "train.report=false", "train.tensorboard=false", "train.max_steps=2"]
SHAPES = [(1, 4), (5, 11)]  # (B, S) or (B, T): other than the traced (3, 6) and the export's own check (2, 9)
RECIPES = {
    # two decoder layers of two heads: the cache is (L=2, B, h=2, t, d=4)
    "transformer": ("dates-transformer", ["data.sizes=[32,8,8]", "train.batch_size=8", "model.d_model=8",
                                          "model.num_heads=2", "model.feedforward_size=16", *QUIET]),
    # post-norm layers, one of each
    "transformer-post": ("dates-transformer", ["data.sizes=[32,8,8]", "train.batch_size=8", "model.d_model=8",
                                               "model.num_heads=2", "model.feedforward_size=8",
                                               "model.norm_first=false", "model.num_encoder_layers=1",
                                               "model.num_decoder_layers=1", *QUIET]),
    # LSTM (a cell state), concat attention, the gate β
    "caption": ("caption-digits", ["data.sizes=[32,8,8]", "train.batch_size=8", "model.channels=[4,4]",
                                   "model.feature_size=8", "model.embedding_size=8", "model.hidden_size=8",
                                   "model.attention_hidden_size=8", *QUIET]),
    # GRU of two layers, general attention, no gate; seed 3: its captions end with <eos> after a few words
    "caption-gru": ("caption-digits", ["data.sizes=[32,8,8]", "train.batch_size=8", "model.channels=[4]",
                                       "model.feature_size=8", "model.embedding_size=8", "model.hidden_size=8",
                                       "model.cell=gru", "model.num_layers=2", "model.attention=general",
                                       "model.attention_hidden_size=null", "model.gate=false", "seed=3", *QUIET]),
    "video": ("video-moving-digits", ["data.sizes=[32,8,8]", "train.batch_size=8", "model.channels=[4,4]",
                                      "model.frame_features=8", "model.hidden_size=8", "model.num_layers=2", *QUIET]),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-decoders")
    out = {}
    for name, (recipe, overrides) in RECIPES.items():
        train(recipe, overrides, root / name, progress=False)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("exported-decoders")
    cache = {}

    def get(name: str, fmt: str):
        if (name, fmt) not in cache:
            cache[name, fmt] = export_run(runs[name], fmt, root / f"{name}-{fmt}")
        return cache[name, fmt]

    return get


def _runner(export, graph: str):
    """The graph as a function of a dict of numpy inputs → its outputs by name."""
    spec = export.manifest["graphs"][graph]
    path, outputs = export.out / spec["file"], [o["name"] for o in spec["outputs"]]
    if export.manifest["format"] == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda feeds: dict(zip(outputs, session.run(None, feeds)))
    module, inputs = torch.jit.load(str(path)), [i["name"] for i in spec["inputs"]]

    def run(feeds):
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.asarray(feeds[n])) for n in inputs))
        return dict(zip(outputs, (t.numpy() for t in (out if isinstance(out, tuple) else (out,)))))

    return run


def _greedy_over_graphs(export, feeds: dict[str, np.ndarray], max_len: int):
    """Greedy decoding as a deployment runs it, from the manifest alone: the encoder once, then the decoder step in a
    loop, the state replaced by the step's next_<name> each time. Returns the tokens (B, n) and every step's
    outputs."""
    decoding = export.manifest["decoding"]
    encoder, step = _runner(export, "encoder"), _runner(export, "decoder_step")
    state = encoder(feeds)
    names = [i["name"] for i in export.manifest["graphs"]["decoder_step"]["inputs"]][1:]
    B = next(iter(feeds.values())).shape[0]
    prev = np.full(B, decoding["sos_id"], dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    tokens, steps = [], []
    for _ in range(max_len):
        out = step({"prev_token": prev, **{n: state[n] for n in names}})
        state.update({n: out[f"next_{n}"] for n in decoding["state"]})
        token = np.where(done, decoding["pad_id"], out["logits"].argmax(-1))
        tokens.append(token)
        steps.append(out)
        done |= token == decoding["eos_id"]
        prev = token
        if done.all():
            break
    return np.stack(tokens, 1), steps


def _teacher_forced(model, encoded, tokens: np.ndarray, steps: list[dict[str, np.ndarray]]) -> float:
    """The PyTorch model's decode_step fed the same tokens: every step's logits and attention must equal the graphs'.
    Returns the largest difference."""
    worst = 0.0
    with torch.no_grad():
        state, prev = encoded, torch.full((tokens.shape[0],), 2)
        for t, out in enumerate(steps):
            logits, state, attention = model.decode_step(prev, state)
            for want, got in ((logits, out["logits"]), (attention, out["attention"])):
                np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)
                worst = max(worst, float(np.abs(got - want.numpy()).max()))
            prev = torch.from_numpy(tokens[:, t])
    return worst


# ------------------------------------------------------------------------------------------------------ Transformer


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["transformer", "transformer-post"])
def test_greedy_loop_over_the_exported_transformer_equals_dnn_greedy(runs, exported, name, fmt):
    export = exported(name, fmt)
    run = load_run(runs[name])
    model, predictor = run.model, run.predictor
    for B, S in SHAPES:
        src, lengths = token_batch(B, S, model.config.src_vocab_size, seed=B * S)
        max_len = predictor.max_len(S)
        tokens, steps = _greedy_over_graphs(export, {"src": src.numpy(), "src_lengths": lengths.numpy()}, max_len)
        want = greedy(model, src, lengths, max_len)
        np.testing.assert_array_equal(tokens, want.tokens.numpy())
        assert tokens.shape[1] > 1
        with torch.no_grad():
            encoded = model.encode(src, lengths)
        _teacher_forced(model, encoded, tokens, steps)
        c = model.config
        cache = steps[-1]["next_past_keys"]  # every layer's keys of the steps decoded: (L, B, h, t, d)
        assert cache.shape == (c.num_decoder_layers, B, c.num_heads, tokens.shape[1], c.d_model // c.num_heads)
    assert export.manifest["parity"]["max_abs_diff"] <= ATOL


def test_transformer_graphs_name_the_cache_and_declare_its_dynamic_axes(exported):
    export = exported("transformer", "onnx")
    step = export.manifest["graphs"]["decoder_step"]
    assert [i["name"] for i in step["inputs"]] == [
        "prev_token", "past_keys", "past_values", "memory_keys", "memory_values", "mask"
    ]  # fmt: skip
    assert [o["name"] for o in step["outputs"]] == ["logits", "next_past_keys", "next_past_values", "attention"]
    assert step["inputs"][1]["shape"] == [2, "B", 2, "t", 4] and step["outputs"][1]["shape"] == [2, "B", 2, "t+1", 4]
    decoding = export.manifest["decoding"]
    assert decoding["state"] == ["past_keys", "past_values"]
    assert decoding["context"] == ["memory_keys", "memory_values", "mask"]
    assert (decoding["sos_id"], decoding["eos_id"], decoding["pad_id"]) == (2, 3, 0)
    assert decoding["cache"]["layers"] == 2 and decoding["cache"]["heads"] == 2
    assert set(export.manifest["files"]) == {"task", "source_vocab", "target_vocab", "source_tokenizer",
                                             "target_tokenizer"}  # fmt: skip
    for name in ("encoder", "decoder_step"):
        model = onnx.load(str(export.out / f"{name}.onnx"))
        onnx.checker.check_model(model)
        declared = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                    for v in model.graph.input}  # fmt: skip
        for spec in export.manifest["graphs"][name]["inputs"]:
            assert declared[spec["name"]] == spec["shape"], spec


# ------------------------------------------------------------------------------------------------------- captioning


def _images(p, B: int, seed: int) -> torch.Tensor:
    return torch.rand(B, p.channels, *p.image_size, generator=torch.Generator().manual_seed(seed))  # (B, C, H, W)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["caption", "caption-gru"])
def test_greedy_loop_over_the_exported_captioner_equals_dnn_greedy(runs, exported, name, fmt):
    export = exported(name, fmt)
    run = load_run(runs[name])
    model, p = run.model, run.predictor
    decoding = export.manifest["decoding"]
    for B in (1, 5):
        images = _images(p, B, seed=B)
        tokens, steps = _greedy_over_graphs(export, {"images": images.numpy()}, decoding["max_len"])
        want = greedy(model, p.normalize(images), None, p.max_len)  # the normalisation is inside the graph
        np.testing.assert_array_equal(tokens, want.tokens.numpy())
        assert tokens.shape[1] > 1
        with torch.no_grad():
            encoded = model.encode(p.normalize(images))
        _teacher_forced(model, encoded, tokens, steps)
        assert steps[0]["attention"].shape == (B, decoding["grid"][0] * decoding["grid"][1])
        words = [p.vocab.decode(row.tolist(), stop_at_eos=True) for row in tokens]
        assert [" ".join(w) for w in words] == [row["caption"] for row in p.caption(images)]
    assert export.manifest["parity"]["max_abs_diff"] <= ATOL


def test_caption_manifest_says_how_to_read_an_image_and_its_words(runs, exported):
    export = exported("caption", "onnx")
    m, p = export.manifest, load_run(runs["caption"]).predictor
    assert m["files"] == {"task": "task.json", "vocab": "vocab.json"}
    assert (export.out / "vocab.json").read_bytes() == (runs["caption"] / "vocab.json").read_bytes()
    pre = m["preprocessing"]
    assert (pre["height"], pre["width"], pre["channels"]) == (16, 48, 1) and pre["normalize"] == p.normalize.to_dict()
    assert m["graphs"]["encoder"]["inputs"][0]["shape"] == ["B", 1, 16, 48]
    assert [o["name"] for o in m["graphs"]["encoder"]["outputs"]] == ["hidden", "cell", "memory", "projected_memory"]
    assert m["decoding"]["state"] == ["hidden", "cell"] and m["decoding"]["grid"] == [4, 12]
    assert m["decoding"]["max_len"] == p.max_len


# ------------------------------------------------------------------------------------------------------------ video


def _clips(p, C: int, B: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T] + [random.Random(seed + b).randint(1, T) for b in range(B - 1)])  # (B,)
    clips = torch.rand(B, T, C, p.frame_size, p.frame_size, generator=g)  # (B, T, C, H, W)
    clips.masked_fill_((torch.arange(T) >= lengths.unsqueeze(1))[:, :, None, None, None], 0.0)  # blank after the end
    return clips, lengths


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_graph_gives_the_models_logits_for_any_batch_and_frame_count(runs, exported, fmt):
    export = exported("video", fmt)
    run = load_run(runs["video"])
    model, p = run.model, run.predictor
    forward = _runner(export, "model")
    for B, T in SHAPES:
        clips, lengths = _clips(p, model.config.in_channels, B, T, seed=B + T)
        for lens in (lengths, torch.full((B,), T)):  # padded, and every clip full
            with torch.no_grad():
                want = model(p.normalize(clips), lens)  # the normalisation is inside the graph
            got = forward({"clips": clips.numpy(), "lengths": lens.numpy()})["logits"]
            np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), -1), p.predict_tensor(clips), atol=ATOL)
    m = export.manifest
    assert m["graphs"]["model"]["inputs"][0]["shape"] == ["B", "T", 1, p.frame_size, p.frame_size]
    assert m["preprocessing"]["classes"] == list(p.classes) and m["files"] == {"task": "task.json"}
    assert m["parity"]["max_abs_diff"] <= ATOL


# ------------------------------------------------------------------------------------------------ what is refused


def test_a_language_model_run_is_refused_in_one_line_that_says_why(tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    run_dir = tmp_path / "lm"
    train("charlm-pydoc", ["data.source=null", f"data.train={text}", "data.length=20", "train.batch_size=4",
                           "model.embedding_size=8", "model.hidden_size=8", "model.num_layers=1", *QUIET],
          run_dir, progress=False)  # fmt: skip
    capsys.readouterr()
    assert main(["export", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "this is a language model run, which it cannot export" in err and "sampling" in err
    assert "an image captioning run" in err and "a video classification run" in err
    assert not (run_dir / "export").exists()
