"""Typed configuration: dataclasses filled from YAML and dotted command-line overrides, checked once.

    cfg = load_config("recipe.yaml", ["model.hidden_size=256", "train.lr=3e-4"], RunConfig)

Every value is checked against its dataclass field's annotation before anything runs. An unknown key or a wrong
type is a :class:`ConfigError` that names the dotted key, what was expected, and the closest valid key; a value
is quoted shortened (:func:`_short`), so the message stays one short line whatever the value.

A YAML file is read in bounded time and memory: a regular file only (a FIFO, a device or a socket is refused
before a byte is read), at most :data:`MAX_YAML_BYTES`, and its aliases may expand to at most
:data:`MAX_YAML_EXPANDED` values and characters (a few nested aliases can stand for billions of values).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import reprlib
import stat
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from dnn.checks import is_int, is_number
from dnn.errors import ConfigError

__all__ = [
    "apply_overrides",
    "config_from_kwargs",
    "from_dict",
    "load_config",
    "load_yaml",
    "parse_override",
    "save_yaml",
    "to_dict",
]


MAX_YAML_BYTES = 1 << 20  # a recipe is a few kB
MAX_YAML_EXPANDED = 4 << 20  # values and characters of a YAML document once its aliases are expanded


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``3e-4`` as a string; here it is the number everybody means (as in YAML 1.2). A document
    whose aliases expand past :data:`MAX_YAML_EXPANDED`, or refer to themselves, is refused before it is built."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded(node)
        return super().construct_document(node)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 — a SafeLoader subclass


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expanded(root: yaml.Node, limit: int = MAX_YAML_EXPANDED) -> None:
    """A ConfigError if the document at ``root`` would hold more than ``limit`` values and characters with every
    alias written out, or if an alias refers to a node that contains it. Each distinct node is visited once
    (an alias is the very node it names), without recursion."""
    sizes: dict[int, int] = {}  # id(node) → its size expanded
    open_: set[int] = set()  # nodes whose children are being sized: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_.discard(key)
            own = len(node.value) + 1 if isinstance(node, yaml.ScalarNode) else 1
            sizes[key] = own + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                line = node.start_mark.line + 1
                raise ConfigError(f"YAML aliases expand to more than {limit:,} values and characters (line {line}); "
                                  "write the values out, or use fewer aliases")  # fmt: skip
            continue
        if key in sizes:
            continue
        if key in open_:
            raise ConfigError(f"a YAML alias refers to a value that contains it (line {node.start_mark.line + 1})")
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def _short(value: Any) -> str:
    """``repr(value)``, cut to a few items, two levels and 60 characters a string: a line, however large."""
    return _REPR.repr(value)


def from_dict(config_cls: type, values: dict[str, Any], context: str = "", owner: str = "") -> Any:
    """Fill the dataclass ``config_cls`` (nested dataclasses included) from ``values``; errors name the key.

    ``context`` is the dotted path of this section (``"train"``); ``owner`` names what takes the values as
    arguments (``"model 'lenet5'"``), for messages like ``model 'lenet5': unknown argument 'num_clases'``.
    """

    def name(key: str) -> str:
        return f"{owner}: {key}" if owner else (f"{context}.{key}" if context else key)

    if not isinstance(values, dict):
        raise ConfigError(f"{owner or context or 'config'} must be a mapping of keys to values, got {_short(values)}")
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    hints = typing.get_type_hints(config_cls)
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            if owner:
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(fields)}"
                raise ConfigError(f"{owner}: unknown argument {_short(key)}{hint}")
            hint = f"; did you mean {name(close[0])}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown key {name(str(key)[:80])}{hint}")
    coerced = {key: _coerce(value, hints[key], name(key)) for key, value in values.items()}
    missing = [
        n
        for n, f in fields.items()
        if n not in coerced and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required {'argument' if owner else 'key'} {name(missing[0])}")
    try:
        return config_cls(**coerced)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a __post_init__ check written with a plain exception
        raise ConfigError(f"{owner or context or config_cls.__name__}: {err}") from None


def config_from_kwargs(config_cls: type, values: dict[str, Any], context: str) -> Any:
    """Keyword arguments of a model or a function → its config dataclass; errors say ``<context>: <key> ...``."""
    return from_dict(config_cls, values, owner=context)


def _type_name(tp: Any) -> str:
    # probe: typing forms such as Optional[int] have no __name__; str() names them
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow int → float and list → tuple, nothing else."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {_short(value)}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, choices))}; got {_short(value)}{hint}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {_short(value)}")
        return dict(value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_short(value)}")
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            items = [_coerce(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else list(items)
    if tp is float:
        if not is_number(value):
            raise ConfigError(f"{where} must be a number, got {_short(value)}")
        return float(value)
    if tp is int:
        if not is_int(value):
            raise ConfigError(f"{where} must be an integer, got {_short(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_short(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_short(value)}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {_short(value)}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain dicts, lists and scalars (tuples become lists), ready for YAML or JSON."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(config)


def _read_yaml_bytes(path: Path, max_bytes: int = MAX_YAML_BYTES) -> bytes:
    """The bytes of the YAML file ``path``: a regular file of at most ``max_bytes``, checked on the open file (a
    FIFO opens without waiting for a writer and is refused unread); else a one-line ConfigError."""
    # probe: O_NONBLOCK and O_CLOEXEC are POSIX flags; os has no such names on Windows
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path}: is a directory, expected a YAML file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file (a FIFO, a device or a socket), expected a YAML file")
        too_big = f"more than the {max_bytes:,} bytes a config file may have (a recipe is a few kB)"
        if info.st_size > max_bytes:
            raise ConfigError(f"{path}: {info.st_size:,} bytes, {too_big}")
        parts, size = [], 0
        while chunk := os.read(fd, max_bytes + 1 - size):
            parts.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise ConfigError(f"{path}: {too_big}")
        return b"".join(parts)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    finally:
        os.close(fd)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping (bounded: see the module docstring); a missing, special or oversized file, or a syntax
    error, is a one-line ConfigError naming file and line."""
    path = Path(path)
    raw = _read_yaml_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = _safe_load(text)
    except yaml.YAMLError as err:
        # probe: only a MarkedYAMLError knows where the problem is; a plain YAMLError has no problem_mark
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        # probe: only a MarkedYAMLError has .problem; any other YAMLError is named by its first line
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply (lists or mappings inside each other)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.hidden_size=256"`` → (["model", "hidden_size"], 256); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {_short(text)} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {_short(text)} has an empty key part")
    try:
        value = _safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except (ConfigError, RecursionError) as err:
        reason = str(err) if isinstance(err, ConfigError) else "nested too deeply"
        raise ConfigError(f"override {key.strip()[:80]}: {reason}") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b.c=value`` override set (intermediate mappings created as needed)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {_short(text)}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike, overrides: list[str], config_cls: type) -> Any:
    """YAML file + dotted overrides → a validated ``config_cls``."""
    return from_dict(config_cls, apply_overrides(load_yaml(path), overrides))


def save_yaml(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as YAML atomically (:func:`dnn.io.atomic_write`)."""
    from dnn.io import write_text

    return write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
