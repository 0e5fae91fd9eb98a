"""ULMFiT in dnn: a language model pretrained on raw text, fine-tuned as a sequence classifier (train.init_from)."""

import csv
import json
import random

import pytest
import torch
from safetensors.torch import load_file

from dnn import transfer
from dnn.models.registry import create_model, model_config
from dnn.train import train

TINY_LM = ["model.embedding_size=16", "model.hidden_size=24", "model.num_layers=2", "train.epochs=1",
           "train.report=false", "train.tensorboard=false", "data.min_freq=1", "data.length=10"]  # fmt: skip
QUIET = ["train.report=false", "train.tensorboard=false"]
WORDS = {"a": "the cat sat on a mat and the dog ran", "b": "two plus three is five minus one equals four"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ulmfit")
    rng = random.Random(0)
    sentences = [(label, " ".join(rng.sample(words.split(), 6))) for _ in range(60) for label, words in WORDS.items()]
    (root / "text.txt").write_text("\n".join(s for _, s in sentences) + "\n", encoding="utf-8")
    with open(root / "labelled.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        out.writerows((s, label) for label, s in sentences)
    lm = root / "lm"
    train("lm-pydoc-words", ["data.source=null", f"data.train={root / 'text.txt'}", *TINY_LM], run_dir=lm,
          progress=False)  # fmt: skip
    clf = root / "clf"
    train("pydoc-topics-ulmfit", [f"data.train={root / 'labelled.csv'}", f"train.init_from={lm}", "train.epochs=1",
                                  *QUIET], run_dir=clf, progress=False)  # fmt: skip
    return root, lm, clf


def test_the_encoder_arrives_exactly_and_the_vocabulary_is_the_language_models(runs):
    _, lm, clf = runs
    before, after = load_file(lm / "model.safetensors"), load_file(clf / "model.safetensors")
    encoder = [k for k in after if k.startswith("encoder.")]
    # one epoch of gradual unfreezing trains the head only: the encoder is the language model's, exactly
    assert encoder and all(torch.equal(before[k.removeprefix("encoder.")], after[k]) for k in encoder)
    assert json.loads((clf / "vocab.json").read_text()) == json.loads((lm / "vocab.json").read_text())
    assert (clf / "tokenizer.json").read_text() == (lm / "tokenizer.json").read_text()
    log = (clf / "log.txt").read_text()
    assert "transfer: 9 encoder tensors" in log and "epoch 1: training head" in log


def cli_error(args, capsys):
    from dnn.cli import main

    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_a_mismatched_or_wrong_init_from_is_one_line_exit_2(runs, tmp_path, capsys):
    root, lm, clf = runs
    data = f"data.train={root / 'labelled.csv'}"
    err = cli_error(["train", "pydoc-topics-ulmfit", data, f"train.init_from={lm}", "model.hidden_size=8", *QUIET,
                     "--run-dir", str(tmp_path / "a"), "--quiet"], capsys)  # fmt: skip
    assert "does not fit the classifier's encoder" in err and "of another shape" in err
    err = cli_error(["train", "pydoc-topics-ulmfit", data, f"train.init_from={clf}", *QUIET,
                     "--run-dir", str(tmp_path / "b"), "--quiet"], capsys)  # fmt: skip
    assert "starts from a language model run" in err and "TextClassification" in err
    err = cli_error(["train", "pydoc-topics-ulmfit", data, "train.init_from=null", *QUIET,
                     "--run-dir", str(tmp_path / "c"), "--quiet"], capsys)  # fmt: skip
    assert "train.init_from=LM_RUN" in err  # gradual unfreezing without a language model to start from
    err = cli_error(["train", "digits-lenet5", "train.gradual_unfreeze=true", "--run-dir", str(tmp_path / "d"),
                     "--quiet"], capsys)  # fmt: skip
    assert "for a sequence_classifier" in err


def classifier():
    torch.manual_seed(0)
    return create_model(
        "sequence_classifier",
        model_config(
            "sequence_classifier", vocab_size=30, num_classes=3, embedding_size=8, hidden_size=8, num_layers=2
        ),
    )


def test_discriminative_learning_rates_are_the_optimisers_groups():
    model = classifier()
    optimizer = torch.optim.Adam(transfer.discriminative_groups(model, 0.01, 2.6))
    names = [g["name"] for g in optimizer.param_groups]
    assert names == ["embedding", "rnn0", "rnn1", "head"]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01 / 2.6**3, 0.01 / 2.6**2, 0.01 / 2.6, 0.01])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_gradual_unfreezing_moves_one_more_layer_group_each_epoch():
    model = classifier()
    optimizer = torch.optim.Adam(transfer.discriminative_groups(model, 0.01))
    callback = transfer.GradualUnfreezing(model)
    tokens, labels = torch.randint(1, 30, (4, 5)), torch.tensor([0, 1, 2, 0])
    expected = [{"head"}, {"head", "rnn1"}, {"head", "rnn1", "rnn0"}, {"head", "rnn1", "rnn0", "embedding"}]
    for epoch, moving in enumerate(expected):
        callback.on_epoch_start(None, epoch=epoch)
        before = {g["name"]: [p.detach().clone() for p in g["params"]] for g in optimizer.param_groups}
        torch.nn.functional.cross_entropy(model(tokens), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        moved = {name for g in optimizer.param_groups for name in [g["name"]]
                 if any(not torch.equal(a, p) for a, p in zip(before[name], g["params"]))}  # fmt: skip
        assert moved == moving, f"epoch {epoch + 1}"


def test_the_text_transfer_experiment_runs_its_quick_version(tmp_path):
    from dnn.experiments import run_experiment

    result = run_experiment("text-transfer", quick=True, out=tmp_path / "out", runs=tmp_path / "runs",
                            log=lambda message: None)  # fmt: skip
    rows = result.table("Test accuracy").rows
    assert [row["labelled per class"] for row in rows] == [10]
    assert result.verdict == "n/a (quick)" and len(result.checks) == 3
    assert result.plot.is_file() and "self-supervised" in result.results_file.read_text().lower()
