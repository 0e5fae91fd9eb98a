"""The architecture checker: the shape of the code (DESIGN.md) as pure functions over a source tree.

Each ``check_*`` function takes a source root (the folder that holds ``dnn/``) and returns a list of violations,
one readable line each; an empty list means the tree keeps the rule. ``tests/unit/test_architecture.py`` runs them
on the real ``src/``; ``tests/unit/test_architecture_check.py`` runs them on small broken trees, to show that each
rule can fail.

The rules:

- layers: every module under ``dnn`` has a layer in one ordered table (:data:`LAYERS`, bottom first), and a module
  imports only modules of its own layer or a lower one. A module without a layer is a violation.
- cycles: no cycle in the graph of imports between modules, function-level imports included (a late import cannot
  hide a cycle).
- private names: no ``_name`` taken from another dnn module, whether imported (``from dnn.io import _x``) or read
  as an attribute of a module reached through any name (``import dnn.io as _io; _io._x``).
- probes: every ``hasattr(...)`` and every three-argument ``getattr(x, name, default)`` has its reason in a comment
  directly above it that starts with ``# probe:`` and says why in a few words.
- file length: every ``.py`` file under ``dnn`` is shorter than :data:`MAX_LINES` lines.

Imports are read from the source, never executed: ``import dnn.x``, ``import dnn.x as y``, ``from dnn import x``
(the module ``dnn.x`` where it exists), ``from dnn.x import y`` (the module ``dnn.x.y`` where it exists), relative
imports, and ``importlib.import_module("dnn.x")`` / ``import_module(...)`` / ``__import__("dnn.x")`` with a literal
string, at module level or inside functions alike.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "dnn"
MAX_LINES = 500  # a file must stay below this many lines (DESIGN.md: "a module that passes ~500 lines...")

# Bottom first. A module's layer is that of the longest entry that names it or a package above it; the entry "dnn"
# names dnn/__init__.py alone (Python runs it before any dnn module, so it sits at the bottom and imports only the
# basics; the public API reaches higher modules lazily). A module imports only modules of its own layer or lower.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the basics: errors, the checks of numbers and choices, the atomic writer, what the device can do
    ("dnn", "dnn.errors", "dnn.checks", "dnn.io", "dnn.device"),
    ("dnn.config",),  # typed dataclass configs, YAML + dotted overrides
    ("dnn.run_manifest", "dnn.rundir"),  # a run's file names and manifest; the one module that touches its files
    ("dnn.layers",),
    ("dnn.data",),
    ("dnn.models",),
    ("dnn.run_config",),  # RunConfig: the data and model configs of a run
    ("dnn.decoding", "dnn.decoding_ctc", "dnn.transfer"),
    ("dnn.training",),
    ("dnn.tasks",),
    ("dnn.run",),  # the way back in: load_run
    ("dnn.inspect",),
    ("dnn.export",),
    ("dnn.train",),  # the way out: one training run
    ("dnn.experiments",),
    ("dnn.demo",),
    ("dnn.serve",),
    ("dnn.cli", "dnn.cli_predict"),
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (the deepest module the statement names)
    names: tuple[str, ...]  # the names a ``from ... import`` takes from ``target`` that are not modules themselves
    line: int


def module_files(src: Path) -> dict[str, Path]:
    """Every module under ``src/dnn``, by its dotted name (a package by its own name, for its ``__init__.py``)."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


@functools.lru_cache(maxsize=4096)
def _parse(path: Path, mtime_ns: int, size: int) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _tree(path: Path) -> ast.Module:
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, path: Path, level: int, name: str | None) -> str:
    base = module.split(".") if _is_package(path) else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _literal_import(node: ast.Call) -> str | None:
    """``importlib.import_module("dnn.x")``, ``import_module("dnn.x")`` or ``__import__("dnn.x")``: the name."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _in_package(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    out = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _in_package(alias.name):
                    out.append(Import(module, alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, path, node.level, node.module) if node.level else node.module
            if not base or not _in_package(base):
                continue
            taken = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    out.append(Import(module, sub, (), node.lineno))
                else:
                    taken.append(alias.name)
            if taken:
                out.append(Import(module, base, tuple(taken), node.lineno))
        elif isinstance(node, ast.Call):
            name = _literal_import(node)
            if name and name.startswith("."):
                package = next((k.value for k in node.keywords if k.arg == "package"), None)
                if isinstance(package, ast.Name) and package.id in ("__name__", "__package__"):
                    level = len(name) - len(name.lstrip("."))
                    name = _resolve_relative(module, path, level, name.lstrip(".") or None)
            if name and _in_package(name):
                out.append(Import(module, name, (), node.lineno))
    return out


def imports(src: Path) -> list[Import]:
    """Every import of a dnn module by a dnn module, in file order."""
    modules = module_files(src)
    return [imp for module, path in modules.items() for imp in _imports_of(module, path, modules)]


def layer_of(module: str, layers: Sequence[Sequence[str]] = LAYERS) -> int | None:
    """The index of ``module``'s layer (0 = the bottom), or None when no entry names it or a package above it
    (the root package's entry names the root package alone)."""
    best, best_len = None, -1
    for index, entries in enumerate(layers):
        for entry in entries:
            covers = module == entry or (entry != PACKAGE and module.startswith(entry + "."))
            if covers and len(entry) > best_len:
                best, best_len = index, len(entry)
    return best


def check_layers(src: Path, layers: Sequence[Sequence[str]] = LAYERS) -> list[str]:
    """Modules without a layer, and every import that points up the layers."""
    modules = module_files(src)
    out = [f"{name}: no layer in the layer table" for name in modules if layer_of(name, layers) is None]
    for imp in imports(src):
        here, there = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if here is not None and there is not None and there > here:
            out.append(
                f"{_where(src, modules, imp)}: {imp.source} (layer {here}: {', '.join(layers[here])}) imports "
                f"{imp.target} (layer {there}: {', '.join(layers[there])}), a higher layer"
            )
    return out


def _where(src: Path, modules: dict[str, Path], imp: Import) -> str:
    return f"{modules[imp.source].relative_to(src)}:{imp.line}"


def check_cycles(src: Path) -> list[str]:
    """Every cycle of imports between modules (one per strongly connected set of modules), late imports included."""
    modules = module_files(src)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports(src):
        target = _nearest_module(imp.target, modules)
        if target is not None and target != imp.source:
            graph[imp.source].add(target)
    return [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]


def _nearest_module(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one node (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, for the message."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in the component {sorted(component)}")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def check_private_names(src: Path) -> list[str]:
    """Private names (``_x``) taken from another dnn module: imported by name, or read through a module reference."""
    modules = module_files(src)
    out = []
    by_source: dict[str, list[Import]] = {}
    for imp in imports(src):
        by_source.setdefault(imp.source, []).append(imp)
    for module, path in modules.items():
        where = path.relative_to(src)
        for imp in by_source.get(module, []):
            out += [
                f"{where}:{imp.line}: {module} imports the private name {n} from {imp.target}"
                for n in imp.names
                if _private(n) and imp.target != module
            ]
            if _private(imp.target.rpartition(".")[2]) and imp.target != module:
                out.append(f"{where}:{imp.line}: {module} imports the private module {imp.target}")
        out += [f"{where}:{line}: {module} {what}" for line, what in _private_attributes(module, path, modules)]
    return out


def _module_bindings(module: str, path: Path, modules: dict[str, Path]) -> dict[str, str]:
    """Local names bound to dnn modules anywhere in the file (``import dnn.x as y``, ``from dnn import x``, ...)."""
    bound = {}
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _in_package(alias.name):
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # `import dnn.x.y` binds `dnn`; dnn.x.y is reached through attributes
                    bound[alias.name.split(".")[0]] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, path, node.level, node.module) if node.level else node.module
            if not base or not _in_package(base):
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            name = _literal_import(node.value)
            if name and _in_package(name):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        bound[target.id] = name
    return bound


def _private_attributes(module: str, path: Path, modules: dict[str, Path]) -> Iterable[tuple[int, str]]:
    bound = _module_bindings(module, path, modules)
    if not bound:
        return

    def resolve(node: ast.expr) -> str | None:
        """The dnn module an expression names (``_io``, ``dnn.io``, ``io``), or None."""
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = resolve(node.value)
            if owner is not None and f"{owner}.{node.attr}" in modules:
                return f"{owner}.{node.attr}"
        return None

    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = resolve(node.value)
            if owner is not None and owner != module:
                yield node.lineno, f"reads the private name {node.attr} of {owner}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                owner = resolve(node.args[0])
                if owner is not None and owner != module and _private(node.args[1].value):
                    yield node.lineno, f"reads the private name {node.args[1].value} of {owner} through getattr"


PROBE = "# probe:"
MIN_REASON_WORDS = 3


@dataclass(frozen=True)
class Probe:
    path: str  # relative to the source root, with forward slashes
    line: int
    code: str  # the call as written, on one line: hasattr(model, "encode")
    reason: str | None  # the words after `# probe:` in the comment above, or None


def probes(src: Path) -> list[Probe]:
    """Every ``hasattr(...)`` and three-argument ``getattr(...)`` under ``src/dnn``, with the reason given for it."""
    out = []
    for path in module_files(src).values():
        tree = _tree(path)
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node, statement in _calls(tree, tree):
            if not isinstance(node.func, ast.Name):
                continue
            if node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3):
                starts = sorted({node.lineno, statement.lineno})
                reasons = [r for start in starts if (r := _reason_above(lines, start)) is not None]
                rel = path.relative_to(src).as_posix()
                code = " ".join((ast.get_source_segment(text, node) or ast.unparse(node)).split())
                out.append(Probe(rel, node.lineno, code, reasons[0] if reasons else None))
    return out


def _calls(node: ast.AST, statement: ast.AST) -> Iterable[tuple[ast.Call, ast.AST]]:
    """Every call under ``node``, with the innermost statement that holds it."""
    for child in ast.iter_child_nodes(node):
        inner = child if isinstance(child, ast.stmt) else statement
        if isinstance(child, ast.Call):
            yield child, inner
        yield from _calls(child, inner)


def _reason_above(lines: list[str], line: int) -> str | None:
    """The reason in the block of comment lines directly above ``line`` (1-based): the text after ``# probe:``
    and the comment lines that continue it."""
    block = []
    number = line - 2
    while number >= 0 and lines[number].strip().startswith("#"):
        block.insert(0, lines[number].strip())
        number -= 1
    for i, comment in enumerate(block):
        if comment.startswith(PROBE):
            rest = [c.lstrip("#").strip() for c in block[i + 1 :]]
            return " ".join([comment[len(PROBE) :].strip(), *rest]).strip()
    return None


def check_probes(src: Path, known: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Probes without a reason (``# probe: <a few words>`` directly above). ``known``: (path, call) pairs still
    waiting for their reason; an entry that no longer matches a bare probe is reported too, so the list shrinks."""
    known = set(known)
    seen = set()
    out = []
    for probe in probes(src):
        if probe.reason is not None and len(probe.reason.split()) >= MIN_REASON_WORDS:
            continue
        key = (probe.path, probe.code)
        if key in known:
            seen.add(key)
            continue
        why = "a reason too short" if probe.reason is not None else "no `# probe: <why>` comment directly above"
        out.append(f"{probe.path}:{probe.line}: {probe.code} has {why}")
    out += [
        f"known probe {path}: {code} is no longer a bare probe there: drop it from the list"
        for path, code in sorted(known - seen)
    ]
    return out


def check_file_length(src: Path, limit: int = MAX_LINES, known: Iterable[str] = ()) -> list[str]:
    """Python files of ``limit`` lines or more. ``known``: paths (relative to ``src``) allowed to be long for now;
    an entry that is not over the limit is reported too."""
    known = set(known)
    out = []
    lengths = {path.relative_to(src).as_posix(): _line_count(path) for path in module_files(src).values()}
    for path, count in lengths.items():
        if count >= limit and path not in known:
            out.append(f"{path}: {count} lines, not under {limit}")
    for path in sorted(known):
        count = lengths.get(path)
        if count is None or count < limit:
            now = "missing" if count is None else f"{count} lines"
            out.append(f"known long file {path} is not over the limit ({now}): drop it from the list")
    return out


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def check_all(
    src: Path,
    layers: Sequence[Sequence[str]] = LAYERS,
    known_probes: Iterable[tuple[str, str]] = (),
    known_long: Iterable[str] = (),
) -> list[str]:
    """Every rule at once."""
    return [
        *check_layers(src, layers),
        *check_cycles(src),
        *check_private_names(src),
        *check_probes(src, known_probes),
        *check_file_length(src, known=known_long),
    ]
