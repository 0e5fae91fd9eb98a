"""The architecture checker can fail: each rule of :mod:`architecture` reports a small tree that breaks it.

A tiny ``dnn`` tree with its own layer table is clean; each case adds one violation to it (the eight edits that the
old test let through, and the other import forms the checker reads) and must be reported, with the right words.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from architecture import (
    LAYERS,
    check_all,
    check_cycles,
    check_file_length,
    check_layers,
    check_probes,
    layer_of,
)

REAL_SRC = Path(__file__).resolve().parents[2] / "src"

FAKE_LAYERS = (
    ("dnn", "dnn.errors", "dnn.io"),
    ("dnn.decoding",),
    ("dnn.tasks",),
    ("dnn.train",),
    ("dnn.serve",),
)

CLEAN = {
    "dnn/__init__.py": "from dnn.errors import DnnError\n",
    "dnn/errors.py": "class DnnError(Exception):\n    pass\n",
    "dnn/io.py": """
        from dnn.errors import DnnError


        def write(path):
            raise DnnError(path)


        def _private():
            return 1
        """,
    "dnn/decoding.py": "from dnn.io import write\n",
    "dnn/tasks/__init__.py": "from dnn.tasks import base\nfrom dnn.tasks.base import probe\n\nfrom . import text\n",
    "dnn/tasks/base.py": """
        import importlib

        import dnn.decoding
        from dnn import io
        from dnn.io import write


        def probe(a):
            # probe: a is any object; only some have x, and that is fine
            return hasattr(a, "x") and getattr(a, "y")


        def spread(a):
            return (
                1,
                # probe: the comment may stand above the line of the call
                getattr(a, "x", None),
            )


        def statement(a):
            # probe: or above the statement that holds the call, here a line up
            return bool(
                hasattr(a, "x")
            )


        def late():
            from dnn.io import write

            return importlib.import_module("dnn.decoding"), write, io.write, dnn.decoding
        """,
    "dnn/tasks/text.py": "from .base import probe\n",
    "dnn/train.py": "from dnn.tasks import base\n",
    "dnn/serve/__init__.py": "",
    "dnn/serve/app.py": "import dnn.train\nfrom dnn.serve import __name__ as name\n",
}


def make_tree(root: Path, edits: dict[str, str] | None = None) -> Path:
    """The clean tree under ``root/src``, each file of ``edits`` appended to (or created)."""
    src = root / "src"
    files = {path: textwrap.dedent(text).lstrip("\n") for path, text in CLEAN.items()}
    for path, text in (edits or {}).items():
        files[path] = files.get(path, "") + textwrap.dedent(text).lstrip("\n")
    for path, text in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text, encoding="utf-8")
    return src


def test_the_clean_tree_has_no_violation(tmp_path):
    assert check_all(make_tree(tmp_path), FAKE_LAYERS) == []


# (what the case shows, the edit, words its report must contain)
CASES = [
    # 1. an upward import by name: a task imports train
    ("from dnn import train", {"dnn/tasks/base.py": "from dnn import train\n"}, "imports dnn.train (layer 3"),
    # 2. an upward import through importlib with a literal string
    (
        "importlib.import_module",
        {"dnn/tasks/base.py": 'importlib.import_module("dnn.serve.app")\n'},
        "dnn.tasks.base (layer 2: dnn.tasks) imports dnn.serve.app (layer 4",
    ),
    # 3. a low module imports the server
    ("decoding imports serve", {"dnn/decoding.py": "import dnn.serve.app\n"}, "dnn.decoding (layer 1"),
    ("a module without a layer", {"dnn/export.py": ""}, "dnn.export: no layer"),
    # 4. a cycle through a function-level import, inside one layer
    (
        "a late import closes a cycle",
        {"dnn/errors.py": "def late():\n    from dnn.io import write\n\n    return write\n"},
        "import cycle: dnn.errors -> dnn.io -> dnn.errors",
    ),
    # 5. private names, through an alias and the other ways to reach a module
    (
        "import dnn.io as _io",
        {"dnn/tasks/base.py": "import dnn.io as _io\n\n_io._private()\n"},
        "reads the private name _private of dnn.io",
    ),
    ("from dnn import io", {"dnn/train.py": "from dnn import io\n\nio._private()\n"}, "_private of dnn.io"),
    ("import dnn.io", {"dnn/train.py": "import dnn.io\n\ndnn.io._private()\n"}, "_private of dnn.io"),
    ("getattr", {"dnn/train.py": 'from dnn import io\n\ngetattr(io, "_private")\n'}, "_private of dnn.io through"),
    ("from dnn.io import _private", {"dnn/train.py": "from dnn.io import _private\n"}, "private name _private from"),
    ("relative", {"dnn/tasks/text.py": "from ..io import _private\n"}, "private name _private from dnn.io"),
    # 6. a trailing noqa is no reason
    ("hasattr with noqa", {"dnn/train.py": 'hasattr(object, "x")  # noqa\n'}, 'hasattr(object, "x") has no'),
    # 7. a getattr with a default
    ("getattr probe", {"dnn/train.py": 'getattr(object, "x", None)\n'}, 'getattr(object, "x", None) has no'),
    ("a reason too short", {"dnn/train.py": '# probe: fine\nhasattr(object, "x")\n'}, "a reason too short"),
    (
        "a reason above a blank line",
        {"dnn/train.py": '# probe: a is any object, fine\n\nhasattr(object, "x")\n'},
        "has no `# probe",
    ),
    # 8. a file of 500 lines
    ("500 lines", {"dnn/serve/app.py": "x = 1\n" * 498}, "dnn/serve/app.py: 500 lines, not under 500"),
    # the other import forms the checker reads
    ("__import__", {"dnn/decoding.py": '__import__("dnn.tasks")\n'}, "imports dnn.tasks (layer 2"),
    ("import_module", {"dnn/decoding.py": 'import_module("dnn.train")\n'}, "imports dnn.train (layer 3"),
    ("from dnn.serve import app", {"dnn/train.py": "from dnn.serve import app\n"}, "imports dnn.serve.app"),
    ("from dnn.train import x", {"dnn/tasks/text.py": "from dnn.train import base\n"}, "imports dnn.train (layer"),
    ("relative, two levels up", {"dnn/tasks/text.py": "from .. import train\n"}, "imports dnn.train (layer 3"),
    ("relative, in a package", {"dnn/tasks/__init__.py": "from ..serve import app\n"}, "imports dnn.serve.app"),
    ("import as", {"dnn/io.py": "import dnn.decoding as decoding\n"}, "dnn.io (layer 0"),
    ("inside a function", {"dnn/io.py": "def f():\n    import dnn.tasks.base\n"}, "imports dnn.tasks.base"),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_violation_is_reported(tmp_path, edit, expected):
    found = check_all(make_tree(tmp_path, edit), FAKE_LAYERS)
    assert found, "the checker let it through"
    assert any(expected in line for line in found), found


def test_a_cycle_through_a_late_import_is_no_layer_violation(tmp_path):
    """The cycle case breaks one rule only: both modules share a layer."""
    src = make_tree(tmp_path, {"dnn/errors.py": "def late():\n    import dnn.io\n"})
    assert check_layers(src, FAKE_LAYERS) == []
    assert check_cycles(src) == ["import cycle: dnn.errors -> dnn.io -> dnn.errors"]


def test_known_probes_and_long_files_are_let_through_while_they_are_true(tmp_path):
    src = make_tree(tmp_path, {"dnn/train.py": 'hasattr(object, "x")\n', "dnn/serve/app.py": "x = 1\n" * 600})
    assert check_probes(src, known={("dnn/train.py", 'hasattr(object, "x")')}) == []
    assert check_file_length(src, known={"dnn/serve/app.py"}) == []
    stale = check_probes(src, known={("dnn/train.py", 'hasattr(object, "x")'), ("dnn/io.py", "hasattr(a, 'b')")})
    assert stale == ["known probe dnn/io.py: hasattr(a, 'b') is no longer a bare probe there: drop it from the list"]
    (stale,) = check_file_length(src, known={"dnn/serve/app.py", "dnn/io.py"})
    assert stale.startswith("known long file dnn/io.py is not over the limit"), stale


def test_the_real_table_puts_every_module_below_what_it_may_not_import():
    assert layer_of("dnn.decoding") < layer_of("dnn.serve.app")
    assert layer_of("dnn.tasks.text") < min(layer_of(m) for m in ("dnn.run", "dnn.train", "dnn.serve", "dnn.cli"))
    assert layer_of("dnn") == layer_of("dnn.errors") == 0
    assert layer_of("dnn.no_such_module") is None  # the root package's entry covers dnn/__init__.py alone


def test_an_edit_of_a_copy_of_the_real_tree_is_reported(tmp_path):
    """The real table: decoding importing the server is an upward import."""
    src = tmp_path / "src"
    shutil.copytree(REAL_SRC / "dnn", src / "dnn", ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "static"))
    before = set(check_layers(src, LAYERS))
    with (src / "dnn" / "decoding.py").open("a", encoding="utf-8") as f:
        f.write("\n\ndef late():\n    import dnn.serve.app\n")
    (found,) = set(check_layers(src, LAYERS)) - before
    assert "dnn.decoding (layer" in found and "imports dnn.serve.app" in found, found
