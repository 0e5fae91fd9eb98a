"""dnn export: tiny trained runs of the image, text and RNN seq2seq kinds (the Transformer, captioning and video:
test_export_decoders.py), exported to ONNX and TorchScript, run with onnxruntime and torch.jit.load, against the
PyTorch model on padded batches of other sizes and lengths than the traced one; the seq2seq greedy loop over the
exported encoder and decoder step gives dnn's greedy decoding token for token.

Tolerance: 1e-5 absolute on float32 logits and states (measured differences are ~1e-7)."""

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dnn.cli import main
from dnn.decoding import greedy
from dnn.errors import ConfigError
from dnn.export import export_run, token_batch
from dnn.io import read_json
from dnn.run import load_run
from dnn.train import train

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

ATOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
FORMATS = ("onnx", "torchscript")
QUIET = ["train.threads=1", "train.report=false", "train.tensorboard=false"]
TINY = ["model.embedding_size=8", "model.hidden_size=8", "train.max_steps=2", "data.min_freq=1", *QUIET]
SEQ2SEQ = ["data.sizes=[48,16,16]", "train.batch_size=16", "model.embedding_size=8", "model.hidden_size=8",
           "train.max_steps=2", *QUIET]  # fmt: skip
WORDS = "the cat sat on mat dog ran to house in year apples bought".split()
SHAPES = [(1, 4), (5, 11)]  # (B, T): other than the traced (3, 6) and the export's own check (2, 9)


def _texts(root: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    reviews = root / "reviews.csv"
    rows = []
    for _ in range(40):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(WORDS, k=rng.randint(3, 8)) + ["good" if label == "pos" else "bad"]
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{label}\n")
    reviews.write_text("text,label\n" + "".join(rows), encoding="utf-8")
    conll = root / "tags.conll"
    sentences = [
        "".join(f"{rng.randint(0, 29)} NUM\n" if rng.random() < 0.3 else f"{rng.choice(WORDS)} WORD\n"
                for _ in range(rng.randint(3, 9)))
        for _ in range(40)
    ]  # fmt: skip
    conll.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return reviews, conll


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    reviews, conll = _texts(root)
    recipes = {
        "image": ("digits-lenet5", ["train.max_steps=1", *QUIET]),
        "classify": ("sentiment-lstm", [f"data.train={reviews}", "model.bidirectional=true", "model.num_layers=2",
                                        "model.pooling=attention", *TINY]),
        "tag": ("tagging-bilstm", [f"data.train={conll}", "model.cell=gru", *TINY]),
        "tag-dense": ("tagging-bilstm", [f"data.train={conll}", "model.num_layers=2", "model.dense=true", *TINY]),
        # GRU, bidirectional, concat (additive) attention
        "seq2seq-concat": ("dates-attention", [*SEQ2SEQ, "model.attention_hidden_size=8"]),
        # LSTM (a cell state), two layers, general attention, input feeding (a fed-back h̃)
        "seq2seq-lstm": ("dates-attention", [*SEQ2SEQ, "model.cell=lstm", "model.num_layers=2",
                                             "model.attention=general", "model.attention_hidden_size=null",
                                             "model.input_feeding=true"]),
        "seq2seq-plain": ("dates-no-attention", SEQ2SEQ),  # no attention: no context into the step
    }  # fmt: skip
    out = {}
    for name, (recipe, overrides) in recipes.items():
        train(recipe, overrides, root / name, progress=False)
        out[name] = root / name
    return out


def _onnx_runner(path: Path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def _script_runner(path: Path, names: list[str]):
    module = torch.jit.load(str(path))

    def run(feeds):
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.asarray(feeds[n])) for n in names))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    return run


def _runner(export, graph: str):
    spec = export.manifest["graphs"][graph]
    path = export.out / spec["file"]
    if export.manifest["format"] == "onnx":
        return _onnx_runner(path)
    return _script_runner(path, [i["name"] for i in spec["inputs"]])


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("exported")
    cache = {}

    def get(name: str, fmt: str):
        if (name, fmt) not in cache:
            cache[name, fmt] = export_run(runs[name], fmt, root / f"{name}-{fmt}")
        return cache[name, fmt]

    return get


# ------------------------------------------------------------------------------------- parity with the PyTorch model


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_graph_gives_the_models_logits_for_any_batch_size(runs, exported, fmt):
    export = exported("image", fmt)
    run = load_run(runs["image"])
    p = run.predictor
    forward = _runner(export, "model")
    for B in (1, 7):
        images = torch.rand(B, p.channels, p.image_size, p.image_size, generator=torch.Generator().manual_seed(B))
        with torch.no_grad():
            want = run.model(p.normalize(images))  # the normalisation is inside the graph
        (got,) = forward({"images": images.numpy()})
        np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), -1), p.predict_tensor(images), atol=ATOL)
    assert export.manifest["parity"]["max_abs_diff"] <= ATOL


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["classify", "tag"])
def test_sequence_graph_gives_the_models_logits_for_padded_and_full_batches(runs, exported, kind, fmt):
    export = exported(kind, fmt)
    model = load_run(runs[kind]).model
    forward = _runner(export, "model")
    for B, T in SHAPES:
        tokens, lengths = token_batch(B, T, model.config.vocab_size, seed=B + T)
        full = torch.full((B,), T)  # no row padded: the runner's unpacked path in PyTorch, the same graph here
        for lens in (lengths, full):
            with torch.no_grad():
                want = model(tokens, lens)
            (got,) = forward({"tokens": tokens.numpy(), "lengths": lens.numpy()})
            assert got.shape == tuple(want.shape)
            np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)
    assert export.manifest["parity"]["max_abs_diff"] <= ATOL


def test_a_dense_or_residual_stack_goes_to_torchscript_and_onnx_says_so(runs, exported, tmp_path):
    # their layers are joined on packed sequences, which ONNX's RNN operators with sequence_lens cannot express
    with pytest.raises(ConfigError, match="a dense recurrent stack cannot go to ONNX; --format torchscript can"):
        export_run(runs["tag-dense"], "onnx", tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
    model = load_run(runs["tag-dense"]).model
    forward = _runner(exported("tag-dense", "torchscript"), "model")
    for B, T in SHAPES:
        tokens, lengths = token_batch(B, T, model.config.vocab_size, seed=B + T)
        with torch.no_grad():
            want = model(tokens, lengths)
        np.testing.assert_allclose(forward({"tokens": tokens, "lengths": lengths})[0], want.numpy(), atol=ATOL, rtol=0)


def _greedy_over_graphs(export, src: np.ndarray, lengths: np.ndarray, max_len: int):
    """Greedy decoding as a deployment runs it: the encoder once, then the decoder step in a loop (manifest only)."""
    graphs, decoding = export.manifest["graphs"], export.manifest["decoding"]
    encoder, step = _runner(export, "encoder"), _runner(export, "decoder_step")
    state = dict(zip([o["name"] for o in graphs["encoder"]["outputs"]], encoder({"src": src, "src_lengths": lengths})))
    step_inputs = [i["name"] for i in graphs["decoder_step"]["inputs"]][1:]
    step_outputs = [o["name"] for o in graphs["decoder_step"]["outputs"]]
    prev = np.full(src.shape[0], decoding["sos_id"], dtype=np.int64)
    done = np.zeros(src.shape[0], dtype=bool)
    tokens, logits = [], []
    for _ in range(max_len):
        out = dict(zip(step_outputs, step({"prev_token": prev, **{n: state[n] for n in step_inputs}})))
        state.update({n: out[f"next_{n}"] for n in decoding["state"]})
        token = np.where(done, decoding["pad_id"], out["logits"].argmax(-1))
        tokens.append(token)
        logits.append(out["logits"])
        done |= token == decoding["eos_id"]
        prev = token
        if done.all():
            break
    return np.stack(tokens, 1), np.stack(logits, 1)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", ["seq2seq-concat", "seq2seq-lstm", "seq2seq-plain"])
def test_greedy_loop_over_the_exported_encoder_and_step_equals_dnn_greedy(runs, exported, variant, fmt):
    export = exported(variant, fmt)
    run = load_run(runs[variant])
    model, predictor = run.model, run.predictor
    for B, S in SHAPES:
        src, lengths = token_batch(B, S, model.config.src_vocab_size, seed=B * S)
        max_len = predictor.max_len(S)
        tokens, logits = _greedy_over_graphs(export, src.numpy(), lengths.numpy(), max_len)
        want = greedy(model, src, lengths, max_len)
        np.testing.assert_array_equal(tokens, want.tokens.numpy())
        # the logits of every step, teacher-forced with the same tokens, from the PyTorch model
        with torch.no_grad():
            state = model.encode(src, lengths)
            prev = torch.full((B,), 2)
            for t in range(tokens.shape[1]):
                step_logits, state, _ = model.decode_step(prev, state)
                np.testing.assert_allclose(logits[:, t], step_logits.numpy(), atol=ATOL, rtol=0)
                prev = torch.from_numpy(tokens[:, t])
    assert export.manifest["parity"]["max_abs_diff"] <= ATOL


# ------------------------------------------------------------------------------------ the files, the manifest, the CLI


def test_onnx_graphs_declare_dynamic_batch_and_length_axes(exported):
    export = exported("seq2seq-lstm", "onnx")
    for name in ("encoder", "decoder_step"):
        graph = onnx.load(str(export.out / f"{name}.onnx")).graph
        onnx.checker.check_model(onnx.load(str(export.out / f"{name}.onnx")))
        declared = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                    for v in (*graph.input, *graph.output)}  # fmt: skip
        for spec in (*export.manifest["graphs"][name]["inputs"], *export.manifest["graphs"][name]["outputs"]):
            for want, got in zip(spec["shape"], declared[spec["name"]], strict=True):
                # a dynamic axis is declared by its letter; a fixed size may be left to the exporter's shape
                # inference (a symbol) on an output
                assert got == want or (isinstance(want, int) and isinstance(got, str)), spec
    step = export.manifest["graphs"]["decoder_step"]
    assert [i["name"] for i in step["inputs"]] == [
        "prev_token", "hidden", "cell", "feed", "memory", "mask", "projected_memory"
    ]  # fmt: skip
    assert [o["name"] for o in step["outputs"]] == ["logits", "next_hidden", "next_cell", "next_feed", "attention"]
    assert step["inputs"][1]["shape"] == [2, "B", 8]  # (L, B, H)


def test_manifest_names_the_files_a_deployment_ships_and_they_are_copied(runs, exported):
    for name, roles in (("image", {"task"}), ("classify", {"vocab", "labels", "tokenizer", "task"}),
                        ("tag", {"vocab", "labels", "task"}),
                        ("seq2seq-concat", {"task", "source_vocab", "target_vocab", "source_tokenizer",
                                            "target_tokenizer"})):  # fmt: skip
        export = exported(name, "onnx")
        manifest = read_json(export.out / "manifest.json", "manifest")
        assert manifest == export.manifest
        assert set(manifest["files"]) == roles
        for file in manifest["files"].values():
            assert (export.out / file).read_bytes() == (runs[name] / file).read_bytes()
        assert manifest["opset"] == 17 and manifest["parity"]["checked_with"].startswith("onnxruntime")
    image = exported("image", "onnx").manifest
    assert image["graphs"]["model"]["inputs"][0]["shape"][0] == "B"
    assert image["preprocessing"]["classes"] == [str(k) for k in range(10)]


def test_cli_exports_into_the_run_by_default_and_says_what_it_wrote(runs, capsys):
    assert main(["export", str(runs["tag"]), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    folder = runs["tag"] / "export" / "torchscript"
    assert f"written: {folder / 'model.pt'}" in out and "max |Δ|" in out
    assert (folder / "manifest.json").is_file() and (folder / "vocab.json").is_file()


def test_a_run_that_cannot_be_exported_is_one_line_naming_the_kinds_that_can(tmp_path, capsys):
    run_dir = tmp_path / "adding"
    train("adding-lstm", ["data.sizes=[40,8,8]", "data.length=10", "model.hidden_size=4", "train.max_steps=1",
                          *QUIET], run_dir, progress=False)  # fmt: skip
    assert main(["export", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "image classification run" in err and "seq2seq run" in err and "this is a regression run" in err
    with pytest.raises(ConfigError, match="--format must be one of onnx, torchscript"):
        export_run(run_dir, "tflite")


def test_onnx_without_the_onnx_package_says_what_to_install(runs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx → ModuleNotFoundError
    with pytest.raises(ConfigError, match=r"needs the onnx package: pip install 'dnn\[export\]'"):
        export_run(runs["image"], "onnx", tmp_path / "x")
