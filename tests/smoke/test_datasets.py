"""`dnn data get` end to end against a local HTTP server serving small archives in each dataset's real layout
(idx files, CIFAR-10 binary batches, aclImdb/, CoNLL-U, Multi30k's tarballs, Speech Commands' clips and lists,
tiny Shakespeare), each checked through the reader dnn's task uses; a recipe trained on the served MNIST; and the
command's one-line errors (missing data, offline, a checksum mismatch).

The archives are made here, so their checksums are not the published ones: each test swaps them into the
registry entry it serves (``served``), leaving URLs, layout and readers as they are."""

import dataclasses
import gzip
import hashlib
import io
import json
import struct
import tarfile

import numpy as np
from dataset_server import refused_url, serve

from dnn.cli import main
from dnn.data.datasets import DATASETS
from dnn.data.download import get_dataset
from dnn.data.images import ImageFolder
from dnn.data.speech import read_transcripts
from dnn.data.text import read_conll, read_imdb, read_parallel_tsv, read_text


def served(monkeypatch, name: str, files: dict[str, bytes]) -> None:
    """Registry entry ``name`` with the checksums of ``files`` (same kind of check as the real entry)."""
    spec = DATASETS[name]
    resources = []
    for r in spec.resources:
        data = files[r.filename]
        sha = hashlib.sha256(data).hexdigest() if r.sha256 else None
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() if r.git_blob_sha1 else None
        resources.append(dataclasses.replace(r, sha256=sha, size=len(data) if r.size else None, git_blob_sha1=blob))
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, resources=tuple(resources)))


def get(monkeypatch, tmp_path, name: str, files: dict[str, bytes]):
    served(monkeypatch, name, files)
    with serve(files) as (_, url):
        return get_dataset(name, tmp_path / "cache", mirror=url, log=lambda line: None, stream=io.StringIO())


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def idx_gz(array: np.ndarray) -> bytes:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def mnist_files(n_train=24, n_test=10) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28)) + labels[:, None, None] * 19  # brighter for larger digits
        out[f"{prefix}-images-idx3-ubyte.gz"] = idx_gz(images)
        out[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz(labels)
    return out


def test_mnist_idx_files_become_png_folders_the_image_task_reads(monkeypatch, tmp_path):
    folder = get(monkeypatch, tmp_path, "mnist", mnist_files())
    train = ImageFolder(folder / "train", 28)
    valid = ImageFolder(folder / "valid", 28, classes=train.classes)
    test = ImageFolder(folder / "test", 28, classes=train.classes)
    assert (len(train), len(valid), len(test)) == (22, 2, 10) and train.grayscale
    assert train.classes == [str(d) for d in range(10)]
    image, label = test[3]
    assert label == 3 and image.shape == (1, 28, 28)
    assert json.loads((folder / ".dnn-dataset.json").read_text())["name"] == "mnist"
    assert not list((tmp_path / "cache" / "downloads").glob("*.gz"))  # archives removed once prepared


def test_cifar10_binary_batches_become_png_folders(monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def batch(labels):  # records of 1 label byte + 3,072 pixel bytes (R plane, G plane, B plane)
        return b"".join(bytes([y]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for y in labels)

    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": batch([2 * i - 2, 2 * i - 1]) for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = batch([9, 0, 5])
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(classes) + "\n\n").encode()
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    folder = get(monkeypatch, tmp_path, "cifar10", {"cifar-10-binary.tar.gz": tar_gz(members)})
    train = ImageFolder(folder / "train", 32)
    assert train.classes == sorted(classes[:9]) and not train.grayscale and len(train) == 9
    assert [p.parent.name for p in (folder / "valid").rglob("*.png")] == ["truck"]  # the last tenth of training
    red = np.frombuffer(members["cifar-10-batches-bin/test_batch.bin"][1:1025], np.uint8).reshape(32, 32)
    from PIL import Image

    first = np.asarray(Image.open(folder / "test" / "truck" / "00000.png"))
    assert first.shape == (32, 32, 3) and (first[..., 0] == red).all()  # channels and rows in the right order


def test_imdb_archive_extracts_to_the_aclimdb_folder_text_classification_reads(monkeypatch, tmp_path):
    members = {"aclImdb/README": b"Large Movie Review Dataset v1.0", "aclImdb/imdb.vocab": b"the\nand\n"}
    for split in ("train", "test"):
        for label, text in (("pos", "A wonderful film.<br /><br />Loved it"), ("neg", "Dull and far too long.")):
            for i in range(2):
                members[f"aclImdb/{split}/{label}/{i}_{8 if label == 'pos' else 2}.txt"] = text.encode()
    members["aclImdb/train/unsup/0_0.txt"] = b"no label"
    folder = get(monkeypatch, tmp_path, "imdb", {"aclImdb_v1.tar.gz": tar_gz(members)})
    reviews = list(read_imdb(folder / "aclImdb", "train"))
    assert sorted(r.label for r in reviews) == ["neg", "neg", "pos", "pos"]
    assert len(list(read_imdb(folder / "aclImdb", "test"))) == 4


CONLLU = """# newdoc id = weblog-1
# sent_id = weblog-1-0001
# text = I didn't go.
1	I	I	PRON	PRP	Case=Nom	3	nsubj	3:nsubj	_
2-3	didn't	_	_	_	_	_	_	_	_
2	did	do	AUX	VBD	Mood=Ind	4	aux	4:aux	_
3	n't	not	PART	RB	_	4	advmod	4:advmod	_
4	go	go	VERB	VB	VerbForm=Inf	0	root	0:root	SpaceAfter=No
4.1	go	go	VERB	VB	_	_	_	4:conj	CopyOf=4
5	.	.	PUNCT	.	_	4	punct	4:punct	_

# sent_id = weblog-1-0002
# text = Call 555 1212
1	Call	call	VERB	VB	_	0	root	0:root	_
2	555 1212	555 1212	NUM	CD	_	1	obj	1:obj	_

"""


def test_ud_conllu_becomes_the_token_tag_file_tagging_reads(monkeypatch, tmp_path):
    files = {f"en_ewt-ud-{split}.conllu": CONLLU.encode() for split in ("train", "dev", "test")}
    folder = get(monkeypatch, tmp_path, "ud-english-ewt", files)
    sentences = list(read_conll(folder / "train.conll"))
    assert [s.tokens for s in sentences] == [["I", "did", "n't", "go", "."], ["Call", "555_1212"]]
    assert [s.tags for s in sentences] == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["VERB", "NUM"]]
    assert (folder / "conllu" / "en_ewt-ud-dev.conllu").read_text() == CONLLU
    assert (folder / "dev.conll").is_file() and (folder / "test.conll").is_file()


def test_multi30k_tarballs_become_tsv_pairs(monkeypatch, tmp_path):
    de = "Zwei junge Männer stehen draußen.\nEin Hund\tläuft.\n\n"
    en = "Two young men stand outside.\nA dog runs.\n\n"
    files = {
        "training.tar.gz": tar_gz({"train.de": de.encode(), "train.en": en.encode()}),
        "validation.tar.gz": tar_gz({"val.de": b"Ein Kind.\n", "val.en": b"A child.\n"}),
        "mmt16_task1_test.tar.gz": tar_gz(
            {"test.de": b"Eine Frau.\n", "test.en": b"A woman.\n", "test.fr": b"Une femme.\n"}
        ),
    }
    folder = get(monkeypatch, tmp_path, "multi30k", files)
    pairs = list(read_parallel_tsv(folder / "train.tsv"))
    assert [(p.source, p.target) for p in pairs] == [
        ("Zwei junge Männer stehen draußen.", "Two young men stand outside."), ("Ein Hund läuft.", "A dog runs.")
    ]  # fmt: skip
    assert [p.target for p in read_parallel_tsv(folder / "test.tsv")] == ["A woman."]


def wav(seconds=0.05) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(16000 * seconds), dtype=np.int16), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_speech_commands_clips_and_lists_become_transcript_tsvs(monkeypatch, tmp_path):
    clip = wav()
    members = {f"./{word}/{speaker}_nohash_0.wav": clip for word in ("yes", "no", "marvin") for speaker in "abc"}
    members |= {"./_background_noise_/white_noise.wav": clip, "./LICENSE": b"CC BY 4.0", "./README.md": b"v0.02",
                "./validation_list.txt": b"yes/b_nohash_0.wav\nmarvin/b_nohash_0.wav\n",
                "./testing_list.txt": b"yes/c_nohash_0.wav\nno/c_nohash_0.wav\n"}  # fmt: skip
    folder = get(monkeypatch, tmp_path, "speech-commands", {"speech_commands_v0.02.tar.gz": tar_gz(members)})
    train = read_transcripts(folder / "train-10.tsv")
    assert sorted((u.path.split("/")[-2], u.text) for u in train) == [("no", "no"), ("no", "no"), ("yes", "yes")]
    assert [u.text for u in read_transcripts(folder / "valid-10.tsv")] == ["yes"]
    assert sorted(u.text for u in read_transcripts(folder / "test.tsv")) == ["no", "yes"]
    every_word = (folder / "train.tsv").read_text()
    assert "marvin" in every_word and "_background_noise_" not in every_word


def test_tiny_shakespeare_is_the_text_file_the_language_model_reads(monkeypatch, tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    folder = get(monkeypatch, tmp_path, "tiny-shakespeare", {"input.txt": text.encode()})
    assert read_text(folder / "input.txt") == text


def test_mnist_recipe_trains_on_the_served_mnist_and_says_what_to_run_when_it_is_missing(monkeypatch, tmp_path,
                                                                                           capsys):  # fmt: skip
    monkeypatch.setenv("DNN_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(["train", "mnist-lenet5", "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith("run: dnn data get mnist") and not run_dir.exists()

    files = mnist_files(n_train=48)
    served(monkeypatch, "mnist", files)
    with serve(files) as (_, url):
        assert main(["data", "get", "mnist", "--mirror", url]) == 0
    assert "mnist: ready in" in capsys.readouterr().out
    overrides = ["train.max_steps=2", "train.batch_size=8", "train.report=false", "train.tensorboard=false"]
    assert main(["train", "mnist-lenet5", *overrides, "--run-dir", str(run_dir), "--quiet"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["steps"] == 2 and 0.0 <= results["test"]["accuracy"] <= 1.0
    assert f"train: {tmp_path / 'cache' / 'mnist' / 'train'}" in (run_dir / "config.yaml").read_text()
    assert main(["data", "path", "mnist"]) == 0 and capsys.readouterr().out.strip() == str(tmp_path / "cache" / "mnist")


def test_the_command_is_one_line_when_offline_or_when_the_file_is_not_the_published_one(tmp_path, capsys):
    cache = ["--cache", str(tmp_path)]
    assert main(["data", "get", "tiny-shakespeare", "--mirror", refused_url(), *cache]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Download http://127.0.0.1:" in err
    assert f"put it in {tmp_path / 'downloads'}/" in err
    with serve({"input.txt": b"not Shakespeare\n"}) as (_, url):  # the real entry: its published size and SHA-256
        assert main(["data", "get", "tiny-shakespeare", "--mirror", url, *cache]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "16 bytes, expected 1,115,394" in last and "the file was deleted" in last
    assert list((tmp_path / "downloads").glob("input.txt*")) == []
    assert main(["data", "get", "no-such-set", *cache]) == 2
    assert "no dataset named 'no-such-set'" in capsys.readouterr().err
    assert main(["data", "list", *cache]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DATASETS) and "not downloaded" in out
