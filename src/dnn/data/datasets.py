"""The public datasets ``dnn data get`` knows, and the readers that turn each one's own layout into what dnn reads.

Each :class:`Dataset` names its files (:class:`Resource`: the publisher's URLs, the SHA-256 and size, and in a
comment where that checksum was published), its licence and citation, the dnn task and recipe that use it, and a
``prepare`` function that turns the verified downloads into the layout the task reads::

    mnist             idx files                 → train/ valid/ test/ folders of PNGs, one sub-folder per digit
    cifar10           binary batches            → train/ valid/ test/ folders of PNGs, one sub-folder per class
    imdb              aclImdb_v1.tar.gz         → aclImdb/ (text classification reads it as it is)
    ud-english-ewt    CoNLL-U                   → train.conll dev.conll test.conll: token<TAB>UPOS
    multi30k          train/val/test .de .en    → train.tsv valid.tsv test.tsv: German<TAB>English
    speech-commands   <word>/<clip>.wav + lists → train.tsv valid.tsv test.tsv: clip<TAB>word (and -10: ten words)
    tiny-shakespeare  input.txt                 → input.txt (the language model reads plain text)

``prepare(files, out, log)`` writes into ``out``, a fresh temporary folder that :mod:`dnn.data.download` renames
into place once everything is written, so a reader never sees half a dataset. CIFAR-10 is read from its *binary*
version: nothing here ever unpickles a file.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnn.data.text import iter_lines
from dnn.errors import DataError
from dnn.io import write_text

__all__ = [
    "DATASETS",
    "Dataset",
    "Resource",
    "cifar10_records",
    "conllu_to_conll",
    "extract_tar",
    "read_idx",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Resource:
    """One published file: where it is, and how to know it is the right one (its SHA-256 and size; for a file
    pinned to a git tag without a published SHA-256, the git blob id of the tag's tree)."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    git_blob_sha1: str | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    task: str  # the data.task that reads what prepare() writes
    layout: str  # what prepare() leaves, for `dnn data list`
    recipe: str
    resources: tuple[Resource, ...]
    prepare: Callable[[dict[str, Path], Path, Log], None]
    licence: str
    citation: str
    download_size: str


# ----------------------------------------------------------------------------------------------- helpers


def extract_tar(archive: Path, out: Path, log: Log | None = None) -> None:
    """Extract a (compressed) tar archive into ``out``: only regular files and folders, every path inside ``out``
    (no absolute paths, no ``..``, no links or devices); a broken archive is one DataError naming it."""
    if log:
        log(f"extracting {archive.name}")
    try:
        with tarfile.open(archive) as tar:
            members = []
            for member in tar:
                parts = Path(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts or not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: refusing to extract {member.name!r} (a link, a device, or a path "
                                    f"outside the folder); expected a plain archive")  # fmt: skip
                members.append(member)
            # probe: tarfile.data_filter exists from Python 3.10.12 / 3.11.4 on: there the standard library checks too
            if hasattr(tarfile, "data_filter"):
                tar.extractall(out, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; the members were checked above
                tar.extractall(out, members=members)  # noqa: S202
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(f"{archive}: not a readable tar archive ({err}); delete it and run `dnn data get` "
                        "again") from None  # fmt: skip


def _tar_files(archive: Path) -> dict[str, bytes]:
    """``{base name: bytes}`` of the regular files of a small tar archive, read without extracting it."""
    try:
        with tarfile.open(archive) as tar:
            return {Path(m.name).name: tar.extractfile(m).read() for m in tar if m.isfile()}
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(f"{archive}: not a readable tar archive ({err}); delete it and run `dnn data get` "
                        "again") from None  # fmt: skip


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{where}:{line}: invalid UTF-8 (byte 0x{data[err.start]:02x}), expected UTF-8 text") from None


def write_image_folder(images: np.ndarray, labels: np.ndarray, classes: list[str], out: Path) -> int:
    """``images`` (N, H_img, W_img) or (N, H_img, W_img, 3) uint8 as ``out/<class>/<index>.png``; returns N.
    A class folder is made for the first image of its class, so a split never holds an empty class folder."""
    from PIL import Image

    made: set[int] = set()
    for i, (image, label) in enumerate(zip(images, labels)):
        label = int(label)
        if not 0 <= label < len(classes):
            raise DataError(f"{out.name}: label {label} of image {i} is not one of the {len(classes)} classes")
        if label not in made:
            (out / classes[label]).mkdir(parents=True, exist_ok=True)
            made.add(label)
        Image.fromarray(image).save(out / classes[label] / f"{i:05d}.png")
    return len(labels)


def _split_images(out: Path, classes: list[str], train, test, valid_every: int, log: Log) -> None:
    """train/ (all but the last 1/``valid_every`` of the training images), valid/ (that last part), test/."""
    (x, y), (xt, yt) = train, test
    n_valid = len(y) // valid_every
    parts = {"train": (x[: len(y) - n_valid], y[: len(y) - n_valid]), "valid": (x[len(y) - n_valid :],
             y[len(y) - n_valid :]), "test": (xt, yt)}  # fmt: skip
    for split, (images, labels) in parts.items():
        log(f"writing {len(labels):,} {split} images as PNG into {split}/")
        write_image_folder(images, labels, classes, out / split)


# ----------------------------------------------------------------------------------------------- readers


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format, gzipped or not) as a uint8 array of its declared shape.

    Layout: two zero bytes, the type code (0x08: unsigned byte), the number of dimensions d, d big-endian uint32
    sizes, then the values in row-major order."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: not a readable idx file ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes (its header is {raw[:4].hex()}, expected "
                        "0000 08 d)")  # fmt: skip
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: idx header cut short ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: {data.size} values for the shape {list(dims)}; the file is cut short or padded")
    return data.reshape(dims)


def _prepare_mnist(files: dict[str, Path], out: Path, log: Log) -> None:
    def load(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = read_idx(files[images]), read_idx(files[labels])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{files[images]}: {list(x.shape)} images for {list(y.shape)} labels; expected (N, 28, "
                            f"28) and (N,)")  # fmt: skip
        return x, y

    train = load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    test = load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    _split_images(out, [str(d) for d in range(10)], train, test, valid_every=12, log=log)  # 55,000 / 5,000


def cifar10_records(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary CIFAR-10 batch → images (N, 32, 32, 3) uint8 and labels (N,). Each record is 3,073 bytes: the
    label, then 1,024 red, 1,024 green and 1,024 blue values, row by row."""
    if not data or len(data) % 3073:
        raise DataError(f"{where}: {len(data)} bytes is not a whole number of 3,073-byte CIFAR-10 records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, C, H, W) → (N, H_img, W_img, C)
    return np.ascontiguousarray(images), records[:, 0]


def _prepare_cifar10(files: dict[str, Path], out: Path, log: Log) -> None:
    archive = files["cifar-10-binary.tar.gz"]
    members = _tar_files(archive)
    need = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]
    missing = [name for name in need if name not in members]
    if missing:
        raise DataError(f"{archive}: has no {missing[0]}; expected the binary version (cifar-10-batches-bin/)")
    classes = [c.strip() for c in _decode(members["batches.meta.txt"], "batches.meta.txt").splitlines() if c.strip()]
    if len(classes) != 10:
        raise DataError(f"{archive}: batches.meta.txt names {len(classes)} classes, expected 10")
    batches = [cifar10_records(members[name], name) for name in need[:5]]
    train = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    _split_images(out, classes, train, cifar10_records(members["test_batch.bin"], "test_batch.bin"), valid_every=10,
                  log=log)  # fmt: skip  # 45,000 / 5,000


def _prepare_imdb(files: dict[str, Path], out: Path, log: Log) -> None:
    extract_tar(files["aclImdb_v1.tar.gz"], out, log)
    for part in ("train/pos", "train/neg", "test/pos", "test/neg"):
        if not (out / "aclImdb" / part).is_dir():
            raise DataError(f"{files['aclImdb_v1.tar.gz']}: has no aclImdb/{part}/; expected the aclImdb layout")


def conllu_to_conll(source: Path, target: Path) -> int:
    """A CoNLL-U file → ``token<TAB>UPOS`` lines with a blank line after each sentence (what dnn's tagging reads);
    returns the number of sentences. Comments, multiword-token ranges (``1-2``) and empty nodes (``8.1``) are
    skipped: the tags belong to the syntactic words. A space inside a form becomes ``_`` (columns split at spaces)."""
    lines: list[str] = []
    sentences, words = 0, 0
    for number, text in iter_lines(source):
        if text.startswith("#"):
            continue
        if not text.strip():
            if words:
                lines.append("")
                sentences, words = sentences + 1, 0
            continue
        columns = text.split("\t")
        if len(columns) != 10:
            raise DataError(f"{source}:{number}: {len(columns)} tab-separated columns, expected the 10 of CoNLL-U")
        if "-" in columns[0] or "." in columns[0]:
            continue
        lines.append(f"{'_'.join(columns[1].split()) or '_'}\t{columns[3]}")
        words += 1
    if words:
        lines.append("")
        sentences += 1
    if not sentences:
        raise DataError(f"{source}: no sentences, expected CoNLL-U (10 tab-separated columns per word)")
    write_text(target, "\n".join(lines) + "\n")
    return sentences


def _prepare_ud(files: dict[str, Path], out: Path, log: Log) -> None:
    (out / "conllu").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        source = files[f"en_ewt-ud-{split}.conllu"]
        shutil.copyfile(source, out / "conllu" / source.name)
        n = conllu_to_conll(source, out / f"{split}.conll")
        log(f"{split}.conll: {n:,} sentences (token<TAB>UPOS)")


def _prepare_multi30k(files: dict[str, Path], out: Path, log: Log) -> None:
    for split, (archive, prefix) in {"train": ("training.tar.gz", "train"), "valid": ("validation.tar.gz", "val"),
                                     "test": ("mmt16_task1_test.tar.gz", "test")}.items():  # fmt: skip
        members = _tar_files(files[archive])
        sides = []
        for lang in ("de", "en"):
            name = f"{prefix}.{lang}"
            if name not in members:
                raise DataError(f"{files[archive]}: has no {name}; expected Multi30k's {prefix}.de and {prefix}.en")
            sides.append(_decode(members[name], f"{archive}:{name}").rstrip("\n").split("\n"))
        de, en = sides
        if len(de) != len(en):
            raise DataError(f"{files[archive]}: {prefix}.de has {len(de)} lines but {prefix}.en has {len(en)}")
        rows = [f"{' '.join(s.split())}\t{' '.join(t.split())}" for s, t in zip(de, en) if s.strip() and t.strip()]
        write_text(out / f"{split}.tsv", "\n".join(rows) + "\n")
        log(f"{split}.tsv: {len(rows):,} German<TAB>English pairs")


TEN_COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # Warden 2018, §7


def _prepare_speech_commands(files: dict[str, Path], out: Path, log: Log) -> None:
    archive = files["speech_commands_v0.02.tar.gz"]
    extract_tar(archive, out, log)
    lists = {}
    for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        if not (out / name).is_file():
            raise DataError(f"{archive}: has no {name}; expected the Speech Commands layout")
        lists[split] = {text.strip() for _, text in iter_lines(out / name) if text.strip()}
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        for clip in sorted(folder.glob("*.wav")):
            key = f"{folder.name}/{clip.name}"
            split = "valid" if key in lists["valid"] else "test" if key in lists["test"] else "train"
            rows[split].append(f"{key}\t{folder.name}")
    if not rows["train"]:
        raise DataError(f"{archive}: no <word>/<clip>.wav files; expected the Speech Commands layout")
    for split, lines in rows.items():
        write_text(out / f"{split}.tsv", "\n".join(lines) + "\n")
        ten = [line for line in lines if line.split("\t")[1] in TEN_COMMANDS]
        write_text(out / f"{split}-10.tsv", "\n".join(ten) + "\n")
        log(f"{split}.tsv: {len(lines):,} clips ({split}-10.tsv: {len(ten):,} of the ten commands)")


def _prepare_shakespeare(files: dict[str, Path], out: Path, log: Log) -> None:
    source = files["input.txt"]
    _decode(source.read_bytes(), str(source))  # plain UTF-8 text, or one line naming the bad byte
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out / "input.txt")


# ----------------------------------------------------------------------------------------------- the registry

# "TFDS X": github.com/tensorflow/datasets, tensorflow_datasets/url_checksums/X.txt (URL, size, SHA-256 per line).

# fmt: off
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "mnist", "MNIST handwritten digits (60,000 + 10,000 images, 28×28 grey)", "image_folder",
            "train/ valid/ test/: one folder per digit of PNGs (55,000 / 5,000 / 10,000)", "mnist-lenet5",
            # checksums and sizes: TFDS mnist; the same files as yann.lecun.com/exdb/mnist
            tuple(Resource(f, (f"https://storage.googleapis.com/cvdf-datasets/mnist/{f}",
                               f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}"), sha, size)
                  for f, size, sha in (
                      ("train-images-idx3-ubyte.gz", 9912422,
                       "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
                      ("train-labels-idx1-ubyte.gz", 28881,
                       "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
                      ("t10k-images-idx3-ubyte.gz", 1648877,
                       "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                      ("t10k-labels-idx1-ubyte.gz", 4542,
                       "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
                  )),
            _prepare_mnist, "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
            "LeCun, Bottou, Bengio, Haffner 1998, Gradient-based learning applied to document recognition",
            "11 MB",
        ),
        Dataset(
            "cifar10", "CIFAR-10 (50,000 + 10,000 colour images, 32×32, 10 classes), binary version", "image_folder",
            "train/ valid/ test/: one folder per class of PNGs (45,000 / 5,000 / 10,000)", "cifar10-resnet18",
            # checksum and size: TFDS cifar10
            (Resource("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                      "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),),
            _prepare_cifar10, "no licence stated by the authors; cite the report",
            "Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images", "170 MB",
        ),
        Dataset(
            "imdb", "IMDB movie reviews (Large Movie Review Dataset v1.0: 25,000 + 25,000 labelled)",
            "text_classification", "aclImdb/ as published (train/{pos,neg}, test/{pos,neg}, train/unsup)",
            "imdb-lstm",
            # checksum and size: TFDS imdb_reviews
            (Resource("aclImdb_v1.tar.gz", ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",),
                      "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", 84125825),),
            _prepare_imdb, "no licence stated by the authors; cite the paper",
            "Maas, Daly, Pham, Huang, Ng, Potts 2011, Learning Word Vectors for Sentiment Analysis (ACL)", "84 MB",
        ),
        Dataset(
            "ud-english-ewt", "Universal Dependencies English Web Treebank r2.16 (16,622 sentences, UPOS tags)",
            "tagging", "train.conll dev.conll test.conll (token<TAB>UPOS), the CoNLL-U files in conllu/",
            "ud-ewt-tagging",
            # Pinned to the tag r2.16 (commit 4c89b5833a70aa5ed3a00bad2f23f57992cc7df8) of
            # github.com/UniversalDependencies/UD_English-EWT, which publishes no SHA-256: dev and test SHA-256
            # and sizes were computed here from that commit's blobs; train is checked by its git blob id in
            # the commit's tree (34731d23…), which a download must hash to.
            tuple(Resource(f"en_ewt-ud-{split}.conllu", (
                f"https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/r2.16/en_ewt-ud-{split}"
                ".conllu",), sha, size, blob)
                  for split, sha, size, blob in (
                      ("train", None, None, "34731d23bafeeff233fdcee18ffc0254b1aa0e28"),
                      ("dev", "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6", 1805545,
                       "a994b6990643429070ecc6e236d26ad6a04bfefb"),
                      ("test", "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd", 1804515,
                       "c59667960ae967636606f47bc35f132a5557ad39"),
                  )),
            _prepare_ud, "CC BY-SA 4.0 (annotations © Stanford University; texts from LDC2012T13)",
            "Silveira et al. 2014, A Gold Standard Dependency Corpus for English (LREC)", "18 MB",
        ),
        Dataset(
            "multi30k", "Multi30k task 1, German→English (29,000 / 1,014 / 1,000 image captions)", "seq2seq",
            "train.tsv valid.tsv test.tsv: German<TAB>English (test: test_2016_flickr)", "multi30k-attention",
            # SHA-256: pytorch/text, torchtext/datasets/multi30k.py (its MD5 dict holds SHA-256 values, checked with
            # hash_type="sha256"); no sizes published. The WMT'16 server is gone; the first URL is the mirror that
            # torchtext's users switched to, the second the original.
            tuple(Resource(f, (f"https://raw.githubusercontent.com/neychev/small_DL_repo/master/datasets/Multi30k/{f}",
                               f"http://www.quest.dcs.shef.ac.uk/wmt16_files_mmt/{f}"), sha)
                  for f, sha in (
                      ("training.tar.gz", "20140d013d05dd9a72dfde46478663ba05737ce983f478f960c1123c6671be5e"),
                      ("validation.tar.gz", "a7aa20e9ebd5ba5adce7909498b94410996040857154dab029851af3a866da8c"),
                      ("mmt16_task1_test.tar.gz", "0681be16a532912288a91ddd573594fbdd57c0fbb81486eff7c55247e35326c2"),
                  )),
            _prepare_multi30k, "research use; the captions derive from Flickr30k (see the multi30k/dataset repository)",
            "Elliott, Frank, Sima'an, Specia 2016, Multi30K: Multilingual English-German Image Descriptions", "2 MB",
        ),
        Dataset(
            "speech-commands", "Speech Commands v0.02 (105,829 one-second clips of 35 words, 16 kHz)", "speech",
            "<word>/<clip>.wav as published; train/valid/test.tsv (35 words) and *-10.tsv (yes … go)",
            "speech-commands",
            # checksum and size: TFDS speech_commands
            (Resource("speech_commands_v0.02.tar.gz",
                      ("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",),
                      "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58", 2428923189),),
            _prepare_speech_commands, "CC BY 4.0 (Google)",
            "Warden 2018, Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition (arXiv:1804.03209)",
            "2.4 GB",
        ),
        Dataset(
            "tiny-shakespeare", "tiny Shakespeare (1.1 M characters of plays, char-rnn)", "language_model",
            "input.txt as published", "shakespeare-charlm",
            # checksum and size: TFDS tiny_shakespeare
            (Resource("input.txt", ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
                                    "input.txt",),
                      "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394),),
            _prepare_shakespeare, "public domain text (Shakespeare); the char-rnn repository is MIT",
            "Karpathy 2015, char-rnn (github.com/karpathy/char-rnn)", "1 MB",
        ),
    )
}
# fmt: on
