"""The shape of the code (DESIGN.md): one-way imports, no private names across modules, declared contracts.

    layers <- models <- decoding/training <- tasks <- run (the run directory) <- inspect <- train <- cli/serve

Every import is read from the source (module level and inside functions alike), so a late import cannot hide a
cycle. A task never imports inspect, run, train, serve or the CLI; what a task or a predictor can do is declared
(:class:`dnn.tasks.base.Task`, :class:`dnn.tasks.base.Predictor`), never sniffed with ``hasattr``.
"""

from __future__ import annotations

import ast
import inspect as pyinspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "dnn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(module imported, names imported, at module level?) for every dnn import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dnn") and node.level == 0:
            out.append((node.module, [a.name for a in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top) for a in node.names if a.name.startswith("dnn")]
    return out


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}

# a module of the left may not import (at any depth) a module under any prefix of the right
FORBIDDEN = {
    "dnn.tasks": ("dnn.inspect", "dnn.run", "dnn.train", "dnn.serve", "dnn.cli", "dnn.experiments", "dnn.demo"),
    "dnn.models": ("dnn.tasks", "dnn.run", "dnn.train", "dnn.inspect", "dnn.serve", "dnn.cli", "dnn.training"),
    "dnn.layers": ("dnn.models", "dnn.tasks", "dnn.run", "dnn.train", "dnn.inspect", "dnn.serve", "dnn.cli"),
    "dnn.data": ("dnn.models", "dnn.tasks", "dnn.run", "dnn.train", "dnn.inspect", "dnn.serve", "dnn.cli"),
    "dnn.training": ("dnn.tasks", "dnn.run", "dnn.train", "dnn.inspect", "dnn.serve", "dnn.cli"),
    "dnn.run": ("dnn.train", "dnn.inspect", "dnn.serve", "dnn.cli", "dnn.experiments"),
    "dnn.inspect": ("dnn.train", "dnn.serve", "dnn.cli", "dnn.experiments"),
    "dnn.train": ("dnn.serve", "dnn.cli", "dnn.experiments"),
    "dnn.io": (
        "dnn.layers",
        "dnn.models",
        "dnn.data",
        "dnn.training",
        "dnn.tasks",
        "dnn.run",
        "dnn.train",
        "dnn.inspect",
        "dnn.serve",
        "dnn.cli",
        "dnn.config",
    ),
}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix if prefix.endswith(".") else prefix + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down_the_layers(layer):
    wrong = [
        f"{name} imports {target}"
        for name, imports in IMPORTS.items()
        if _under(name, layer)
        for target, _, _ in imports
        if any(_under(target, banned) for banned in FORBIDDEN[layer]) and not _under(target, layer)
    ]
    assert not wrong, wrong


def test_no_import_cycle_between_modules():
    """A cycle through module-level imports would make import order matter; none exists."""
    graph = {
        name: {t for t, _, top in imports if top and t in MODULES and t != name} for name, imports in IMPORTS.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not _is_package_of(nxt, node):
                raise AssertionError(" -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def _is_package_of(package: str, module: str) -> bool:
    """A package's __init__ importing its own submodules is how it exports them, not a cycle."""
    return MODULES[package].name == "__init__.py" and module.startswith(package + ".")


def test_no_private_name_is_imported_across_modules():
    private = [
        f"{name}: from {target} import {n}"
        for name, imports in IMPORTS.items()
        for target, names, _ in imports
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not private, private


def test_every_hasattr_says_why_duck_typing_is_right_there():
    bare = []
    for path in MODULES.values():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "hasattr(" in line and "#" not in line.split("hasattr(", 1)[1]:
                bare.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not bare, bare


def test_source_files_stay_small():
    long = {str(p.relative_to(SRC)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 560}
    assert not long, long


def test_every_registered_task_implements_the_contract_and_its_predictor_declares_a_kind():
    from dnn.tasks import get_task, list_tasks
    from dnn.tasks.base import PREDICTOR_KINDS, Predictor, Task

    for name in list_tasks():
        cls = get_task(name)
        assert issubclass(cls, Task) and not pyinspect.isabstract(cls), name
        predictor = pyinspect.signature(cls.load_predictor).return_annotation
        assert isinstance(predictor, str) and predictor, f"{cls.__name__}.load_predictor names no predictor class"
    kinds = {sub.kind for sub in _subclasses(Predictor)}
    assert kinds == set(PREDICTOR_KINDS)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_a_predictor_without_a_known_kind_is_refused():
    from dnn.tasks.base import Predictor

    with pytest.raises(TypeError, match="kind must be one of"):

        class Nameless(Predictor):  # noqa: F841
            kind = "summarise"


def test_create_model_takes_its_config_built_once():
    from dnn.errors import ConfigError
    from dnn.models.lenet import LeNet5Config
    from dnn.models.registry import create_model

    config = LeNet5Config(num_classes=3, in_channels=1, image_size=32)
    model = create_model("lenet5", config)
    assert (model.config.num_classes, model.config.in_channels, model.config.image_size) == (3, 1, 32)
    with pytest.raises(ConfigError, match="not both"):
        create_model("lenet5", config, num_classes=4)
    with pytest.raises(ConfigError, match="takes a Seq2SeqConfig, got LeNet5Config"):
        create_model("seq2seq", config)
