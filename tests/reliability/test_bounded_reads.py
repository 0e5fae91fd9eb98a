"""Every read of the command line is bounded: a recipe that is a device, a FIFO, a huge file or a YAML alias bomb,
a mirror that never stops sending, a beam of a billion or a seed of 2**70 is one line on stderr and exit 2 within
seconds — and nothing is written (no run folder, no partial download left behind)."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "smoke"))
from dataset_server import running  # noqa: E402

from dnn.cli import main
from dnn.config import MAX_YAML_BYTES, load_yaml, parse_override
from dnn.data.datasets import Resource
from dnn.data.download import MAX_UNSIZED_BYTES, fetch
from dnn.errors import ConfigError, DataError
from dnn.serve.limits import MAX_BEAM_SIZE, MAX_SEED

SECONDS = 15.0  # what one refusal may take on a loaded 2-core machine (the import of torch included)
SHORT = 300  # characters of a "one short line"


def refused(capsys, argv: list[str], *words: str) -> str:
    """Run ``dnn argv``: exit 2 within SECONDS and one short line on stderr holding ``words``; the line."""
    start = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors exit from inside the parser
        code = exit_.code
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert took < SECONDS, f"{took:.1f} s"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnn: error: ") and len(lines[0]) < SHORT, err[:2000]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def nothing_written(folder: Path, before: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == before, sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------- recipe files

BOMB = """data:
  task: text_classification
  classes: &i [&h [&g [&f [&e [&d [&c [&b [&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"],*a,*a,*a,*a,*a,\
*a,*a,*a],*b,*b,*b,*b,*b,*b,*b,*b],*c,*c,*c,*c,*c,*c,*c,*c],*d,*d,*d,*d,*d,*d,*d,*d],*e,*e,*e,*e,*e,*e,*e,*e],*f,*f,*f,\
*f,*f,*f,*f,*f],*g,*g,*g,*g,*g,*g,*g,*g],*h,*h,*h,*h,*h,*h,*h,*h]{nine}
model: {{name: sequence_classifier}}
"""


@pytest.mark.parametrize("levels", [8, 9])
def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path, capsys, monkeypatch, levels):
    """The issue's 392-byte recipe: 8 levels took 34 s, 4.4 GB and printed a 350 MB line; 9 exhausted memory."""
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(BOMB.format(nine="\n  more: &j [*i,*i,*i,*i,*i,*i,*i,*i,*i]" if levels == 9 else ""))
    assert recipe.stat().st_size < 500
    refused(capsys, ["train", str(recipe)], "bomb.yaml", "aliases expand to more than")
    nothing_written(tmp_path, {"bomb.yaml"})


def test_an_alias_inside_itself_and_nesting_without_end_are_one_line(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("data: &x {task: digits, again: *x}\n")
    with pytest.raises(ConfigError, match="alias refers to a value that contains it"):
        load_yaml(path)
    path.write_text("data: " + "[" * 200_000 + "]" * 200_000 + "\n")  # 400 kB: under the size limit
    start = time.monotonic()
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_yaml(path)
    assert time.monotonic() - start < SECONDS


def test_a_few_aliases_still_work_and_an_override_cannot_hold_a_bomb(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &b {hidden_size: 16, layers: 2}\nmodel: *b\nother: *b\n")
    assert load_yaml(path)["other"] == {"hidden_size": 16, "layers": 2}
    bomb = "[&a [" + ",".join(["1"] * 40) + "]" + "".join(f",&{c} [" + ",".join([f"*{p}"] * 40) + "]"
                                                         for p, c in zip("abcde", "bcdef")) + "]"  # fmt: skip
    with pytest.raises(ConfigError, match=r"override data\.classes: YAML aliases expand to more than") as err:
        parse_override(f"data.classes={bomb}")
    assert len(str(err.value)) < SHORT


@pytest.mark.parametrize("kind", ["device", "fifo", "huge", "directory"])
def test_a_recipe_that_is_no_small_regular_file_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch, kind):
    """`dnn train /dev/zero` read the file whole (killed at 23 GB); `mkfifo f.yaml; dnn train f.yaml` hung."""
    monkeypatch.chdir(tmp_path)
    if kind == "device":
        path, words = Path("/dev/zero"), ["/dev/zero: not a regular file"]
    elif kind == "fifo":
        path, words = tmp_path / "f.yaml", ["f.yaml: not a regular file"]
        os.mkfifo(path)
    elif kind == "huge":
        path, words = tmp_path / "huge.yaml", [f"more than the {MAX_YAML_BYTES:,} bytes"]
        path.write_text("data:\n  task: digits\n# " + "x" * (MAX_YAML_BYTES + 10) + "\n")
    else:
        path, words = tmp_path / "dir.yaml", ["dir.yaml: is a directory"]
        path.mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    refused(capsys, ["train", str(path)], *words)
    nothing_written(tmp_path, before)


def test_a_value_of_megabytes_is_quoted_short(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "long.yaml"
    recipe.write_text("data:\n  task: seq2seq\n  sizes: " + "x" * 500_000 + "\nmodel: {name: seq2seq}\n")
    refused(capsys, ["train", str(recipe)], "data.sizes must be")
    nothing_written(tmp_path, {"long.yaml"})


# ---------------------------------------------------------------------------------------------- command-line limits


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["translate", "RUN", "March 3", "--beam-size", "1000000000"], "--beam-size"),
        (["translate", "RUN", "March 3", "--beam-size", str(MAX_BEAM_SIZE + 1)], "--beam-size"),
        (["translate", "RUN", "March 3", "--n-best", "100000"], "--n-best"),
        (["caption", "RUN", "a.png", "--beam-size", "1000000000"], "--beam-size"),
        (["transcribe", "RUN", "a.wav", "--beam-size", "0"], "--beam-size"),
        (["generate", "RUN", "--seed", "1180591620717411303424"], "--seed"),
        (["generate", "RUN", "--seed", "-1"], "--seed"),
        (["generate", "RUN", "--seed", "9" * 5000], "--seed"),
        (["generate", "RUN", "--length", "100000000000"], "--length"),
    ],
)  # fmt: skip
def test_beams_n_best_seeds_and_lengths_past_the_servers_limits_are_refused_before_any_work(capsys, argv, flag):
    """`--beam-size 1000000000` was an allocation traceback, `--seed 2**70` an OverflowError: now a usage line,
    before the run is even looked for (RUN does not exist)."""
    line = refused(capsys, argv, f"argument {flag}: must be an integer from")
    assert "RUN" not in line


def test_the_command_line_keeps_the_servers_limits():
    """One definition: the largest beam and seed the command line takes are the largest the API takes."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from pydantic import ValidationError

    from dnn.cli import build_parser
    from dnn.serve.app import GenerateRequest, TranslateRequest

    parser = build_parser()
    args = parser.parse_args(["translate", "RUN", "x", "--beam-size", str(MAX_BEAM_SIZE), "--n-best", "16"])
    assert args.beam_size == TranslateRequest(text="x", beam_size=MAX_BEAM_SIZE).beam_size
    assert parser.parse_args(["generate", "RUN", "--seed", str(MAX_SEED)]).seed == GenerateRequest(seed=MAX_SEED).seed
    for request in (lambda: TranslateRequest(text="x", beam_size=MAX_BEAM_SIZE + 1),
                    lambda: GenerateRequest(seed=MAX_SEED + 1)):  # fmt: skip
        with pytest.raises(ValidationError):
            request()


# ---------------------------------------------------------------------------------------------- downloads


class _Endless(BaseHTTPRequestHandler):
    """Streams zeros without end (up to the server's ``budget`` bytes, so the test stays bounded), or announces
    ``announce`` bytes in Content-Length."""

    timeout = 5

    def do_GET(self):  # noqa: N802 — http.server's name
        server = self.server
        self.send_response(200)
        if server.announce is not None:
            self.send_header("Content-Length", str(server.announce))
        self.end_headers()
        block, sent = b"\0" * 65536, 0
        try:
            while sent < server.budget:
                self.wfile.write(block)
                sent += len(block)
        except OSError:  # the client stopped reading and closed: what it should do
            pass
        server.sent += sent
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextmanager
def endless_mirror(announce: int | None = None, budget: int = 64 << 20):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    server.announce, server.budget, server.sent = announce, budget, 0
    with running(server) as url:
        yield server, url


@pytest.mark.parametrize("announce", [None, 200 << 20])
def test_a_mirror_that_never_stops_is_cut_at_the_files_size_and_the_part_is_deleted(tmp_path, announce):
    """The issue's mirror wrote 200 MB for a 1.1 MB file before checking its size."""
    data = b"x" * 1_115_394
    resource = Resource("input.txt", ("http://example.invalid/input.txt",), hashlib.sha256(data).hexdigest(),
                        len(data))  # fmt: skip
    start = time.monotonic()
    with endless_mirror(announce) as (server, url):
        with pytest.raises(DataError, match="more than the 1,115,394 of its published size") as err:
            fetch(resource, tmp_path / "input.txt", "tiny-shakespeare", mirror=url, stream=io.StringIO(), timeout=5)
    assert time.monotonic() - start < SECONDS
    assert "\n" not in str(err.value) and "deleted" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_a_file_without_a_published_size_stops_at_the_cap(tmp_path, monkeypatch):
    from dnn.data import download

    monkeypatch.setattr(download, "MAX_UNSIZED_BYTES", 3 << 20)
    resource = Resource("train.tar.gz", ("http://example.invalid/train.tar.gz",), "0" * 64)
    with endless_mirror(budget=32 << 20) as (_, url):
        with pytest.raises(DataError, match="more than the 3,145,728 of the limit for a file published without"):
            fetch(resource, tmp_path / "train.tar.gz", "multi30k", mirror=url, stream=io.StringIO(), timeout=5)
    assert list(tmp_path.iterdir()) == []
    assert MAX_UNSIZED_BYTES >= 64 << 20  # above every file published without a size (UD train: 14 MB)
