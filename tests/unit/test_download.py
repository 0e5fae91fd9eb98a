"""dnn.data.download against a local HTTP server: verified downloads, a checksum mismatch, resuming a partial file,
the offline message and a file put in place by hand, safe extraction, locks, progress, and dataset: paths."""

import hashlib
import io
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "smoke"))
from dataset_server import refused_url, serve  # noqa: E402

from dnn.data import download  # noqa: E402
from dnn.data.datasets import DATASETS, Dataset, Resource, extract_tar  # noqa: E402
from dnn.data.download import Progress, fetch, get_dataset, resolve_data_path, verify  # noqa: E402
from dnn.errors import ConfigError, DataError  # noqa: E402

DATA = bytes(range(256)) * 4000  # 1 MB: more than one chunk


def resource(data=DATA, name="blob.bin", **kw) -> Resource:
    checks = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} | kw
    return Resource(name, ("http://example.invalid/" + name,), **checks)


def copy_into(files, out, log):
    out.mkdir(exist_ok=True)
    for name, path in files.items():
        (out / name).write_bytes(path.read_bytes())
    log("copied")


@pytest.fixture
def toy(monkeypatch):
    """A dataset 'toy' of one file, registered for the test only."""
    spec = Dataset("toy", "a toy", "language_model", "blob.bin", "none", (resource(),), copy_into, "MIT", "nobody",
                   "1 MB")  # fmt: skip
    monkeypatch.setitem(DATASETS, "toy", spec)
    return spec


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_fetch_downloads_verifies_and_renames(tmp_path):
    with serve({"blob.bin": DATA}) as (server, url):
        path = fetch(resource(), tmp_path / "blob.bin", "toy", mirror=url, stream=io.StringIO())
    assert path.read_bytes() == DATA and not (tmp_path / "blob.bin.part").exists()
    assert server.requests == [("blob.bin", None)]


def test_a_checksum_mismatch_deletes_the_file_and_is_one_line(tmp_path):
    wrong = DATA[:-1] + b"\x00"
    with serve({"blob.bin": wrong}) as (_, url), pytest.raises(DataError) as err:
        fetch(resource(), tmp_path / "blob.bin", "toy", mirror=url, stream=io.StringIO())
    assert "SHA-256 mismatch" in one_line(err) and "run `dnn data get toy` again" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    short = resource(size=len(DATA) + 1)
    with serve({"blob.bin": DATA}) as (_, url), pytest.raises(DataError, match="expected 1,024,001"):
        fetch(short, tmp_path / "blob.bin", "toy", mirror=url, stream=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_a_partial_download_is_resumed_with_a_range_request(tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(DATA[:300_000])
    with serve({"blob.bin": DATA}) as (server, url):
        fetch(resource(), tmp_path / "blob.bin", "toy", mirror=url, stream=io.StringIO())
    assert server.requests == [("blob.bin", "bytes=300000-")]
    assert (tmp_path / "blob.bin").read_bytes() == DATA


def test_a_dropped_connection_is_resumed_where_it_stopped(tmp_path):
    with serve({"blob.bin": DATA}, cut_after={"blob.bin": 200_000}) as (server, url):
        fetch(resource(), tmp_path / "blob.bin", "toy", mirror=url, stream=io.StringIO())
    assert [r for _, r in server.requests] == [None, "bytes=200000-"]
    assert (tmp_path / "blob.bin").read_bytes() == DATA


def test_a_server_that_ignores_range_starts_over_and_still_verifies(tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(b"garbage that is not the start of the file")
    out = io.StringIO()
    with serve({"blob.bin": DATA}, ignore_range=True) as (_, url):
        fetch(resource(), tmp_path / "blob.bin", "toy", mirror=url, stream=out)
    assert (tmp_path / "blob.bin").read_bytes() == DATA and "starting over" in out.getvalue()


def test_a_complete_part_file_is_verified_without_downloading_again(tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(DATA)
    with serve({"blob.bin": DATA}) as (server, url):
        fetch(resource(), tmp_path / "blob.bin", "toy", mirror=url, stream=io.StringIO())
    assert server.requests == [] and (tmp_path / "blob.bin").read_bytes() == DATA


def test_offline_is_one_line_saying_where_to_put_the_file_then_get_uses_it(tmp_path, toy, capsys):
    with pytest.raises(DataError) as err:
        get_dataset("toy", tmp_path, mirror=refused_url(), stream=io.StringIO())
    message = one_line(err)
    downloads = tmp_path / "downloads"
    assert message.startswith("cannot download toy (127.0.0.1:")
    assert f"put it in {downloads}/ (as blob.bin)" in message and "run `dnn data get toy` again" in message
    assert not (tmp_path / "toy").exists()
    (downloads / "blob.bin").write_bytes(DATA)  # by hand
    folder = get_dataset("toy", tmp_path, mirror=refused_url(), stream=io.StringIO())
    assert (folder / "blob.bin").read_bytes() == DATA and (folder / ".dnn-dataset.json").is_file()
    assert not (downloads / "blob.bin").exists()  # removed once prepared (no --keep)
    assert "found in" in capsys.readouterr().out
    assert get_dataset("toy", tmp_path) == folder  # already there: nothing fetched


def test_a_wrong_file_put_by_hand_is_deleted_with_one_line(tmp_path, toy):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "blob.bin").write_bytes(b"not it")
    with pytest.raises(DataError) as err:
        get_dataset("toy", tmp_path, mirror=refused_url())
    assert "6 bytes, expected 1,024,000" in one_line(err) and "http://example.invalid/blob.bin" in str(err.value)
    assert not (tmp_path / "downloads" / "blob.bin").exists()


def test_preparing_is_atomic_a_failure_leaves_no_dataset(tmp_path, toy, monkeypatch):
    def broken(files, out, log):
        (out / "half.txt").write_text("half")
        raise DataError("the archive is broken")

    monkeypatch.setitem(DATASETS, "toy", Dataset(**{**toy.__dict__, "prepare": broken}))
    (tmp_path / ".toy.partial-999").mkdir(parents=True)  # a killed get's leftovers
    with serve({"blob.bin": DATA}) as (_, url), pytest.raises(DataError, match="broken"):
        get_dataset("toy", tmp_path, mirror=url, stream=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]
    assert (tmp_path / "downloads" / "blob.bin").is_file()  # verified: the next get does not download it again


def test_a_second_get_of_the_same_dataset_is_refused(tmp_path, toy):
    (tmp_path / "downloads").mkdir()
    with download._Lock(tmp_path / "downloads" / ".toy.lock", "toy"), pytest.raises(DataError) as err:
        get_dataset("toy", tmp_path, mirror=refused_url())
    assert "another `dnn data get toy` is running" in one_line(err)


def test_git_blob_ids_verify_files_without_a_published_sha256(tmp_path):
    path = tmp_path / "f.conllu"
    path.write_bytes(b"1\tHi\n")
    blob = hashlib.sha1(b"blob 5\0" + b"1\tHi\n").hexdigest()
    verify(path, Resource("f.conllu", ("u",), git_blob_sha1=blob), "ud")
    with pytest.raises(DataError, match="git blob id mismatch"):
        verify(path, Resource("f.conllu", ("u",), git_blob_sha1="0" * 40), "ud")
    assert not path.exists()


def test_extraction_refuses_paths_outside_the_folder_and_links(tmp_path):
    for name, kind in (("../evil.txt", tarfile.REGTYPE), ("/abs.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        archive = tmp_path / "bad.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, "/etc/passwd" if kind == tarfile.SYMTYPE else "", 0
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(DataError, match="refusing to extract"):
            extract_tar(archive, tmp_path / "out")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar archive"):
        extract_tar(tmp_path / "junk.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_progress_is_plain_lines_off_a_terminal():
    out = io.StringIO()
    progress = Progress("mnist.gz", 1000, out)
    for done in range(0, 1001, 50):
        progress.update(done)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in out.getvalue()
    assert lines[0].lstrip().startswith("mnist.gz   0%") and " 100% " in lines[-1]


def test_dataset_paths_resolve_into_the_cache_or_say_how_to_get_them(tmp_path, monkeypatch, toy):
    monkeypatch.setenv("DNN_CACHE", str(tmp_path))
    assert resolve_data_path("plain/file.txt") == "plain/file.txt" and resolve_data_path(None) is None
    with pytest.raises(ConfigError) as err:
        resolve_data_path("dataset:toy/blob.bin", "data.train")
    assert one_line(err).endswith("run: dnn data get toy")
    with pytest.raises(ConfigError, match="did you mean 'toy'"):
        resolve_data_path("dataset:tyo/blob.bin")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "blob.bin").write_bytes(DATA)
    get_dataset("toy")
    assert resolve_data_path("dataset:toy/blob.bin") == str(tmp_path / "toy" / "blob.bin")
    with pytest.raises(ConfigError, match="--force"):
        resolve_data_path("dataset:toy/missing.txt")


def test_every_registered_dataset_names_its_checksums_licence_citation_and_recipe():
    from dnn.run import list_recipes
    from dnn.run_config import DATA_CONFIGS

    assert {"mnist", "cifar10", "imdb", "ud-english-ewt", "multi30k", "speech-commands", "tiny-shakespeare"} <= set(
        DATASETS
    )
    for spec in DATASETS.values():
        assert spec.task in DATA_CONFIGS and spec.recipe in list_recipes(), spec.name
        assert spec.licence and spec.citation and spec.resources
        for r in spec.resources:
            assert r.sha256 or r.git_blob_sha1, r.filename
            assert r.sha256 is None or len(r.sha256) == 64
            assert all(u.startswith(("https://", "http://")) and u.endswith(r.filename) for u in r.urls)
