"""The options a predictor takes, as one typed schema: the CLI's flags, the server's request validation and the web
page's controls are all made from it, so a limit is written once.

    Option("beam_size", int, 5, "beams of the search (1: greedy)", low=1, high=MAX_BEAM_SIZE)

is ``--beam-size`` on the command line, ``"beam_size"`` in a JSON request and a number field from 1 to 16 on the
page. :func:`check_options` turns what a user gave into the keyword arguments of ``Predictor.predict``: every name
known, every value of its type and in its range, the defaults filled in; otherwise one line naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnn.checks import is_number
from dnn.decoding import MIN_TEMPERATURE
from dnn.errors import ConfigError

__all__ = [
    "MAX_BEAM_SIZE",
    "MAX_GENERATE",
    "MAX_SEED",
    "MAX_TEMPERATURE",
    "MAX_TOP_K",
    "MIN_TEMPERATURE",
    "MIN_TOP_P",
    "Option",
    "check_options",
]

# What one decoding may ask for, on the server and on the command line alike: the cost grows with beam × length.
MAX_BEAM_SIZE = 16  # beams per request; n-best lists are at most this long too
MAX_SEED = 2**63 - 1  # a sampling seed is a non-negative 64-bit signed integer (what torch.Generator takes)
# Sampling: logits / T overflows float32 for a T near 0 (1e-45), and a top_p below float32's smallest normal number
# (1e-300) rounds to 0 and drops every token; either gave NaN probabilities. 0 is greedy, not a division.
MAX_TEMPERATURE = 100.0  # and MIN_TEMPERATURE: decoding's own floor
MIN_TOP_P = 1e-6
MAX_TOP_K = 1_000_000  # more than any vocabulary: a k over the vocabulary keeps every token
MAX_GENERATE = 100_000  # tokens one generation may ask for

TYPES = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Option:
    """One option of ``predict``: its keyword ``name``, ``type`` (bool, int, float or str), ``default`` (None: off
    unless given), ``help`` (one phrase), and for numbers the inclusive range ``low``–``high`` (None: unbounded;
    ``zero`` also admits 0 below ``low``, e.g. temperature 0 = greedy), for strings ``choices``."""

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    zero: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self):
        if self.type not in TYPES:
            raise TypeError(f"Option {self.name!r}: type must be one of bool, int, float, str; got {self.type!r}")

    @property
    def flag(self) -> str:
        """The command line's spelling: ``--beam-size``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` as this option's type, if it is one and in range; else a one-line ConfigError naming it."""
        want = self.expected()
        if value is None:
            if self.default is None:
                return None
            raise ConfigError(f"{self.flag}: must be {want}, got null")
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{self.flag}: must be {want}, got {_show(value)}")
            return value
        if self.type is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ConfigError(f"{self.flag}: must be {want}, got {_show(value)}")
            return value
        if not is_number(value):
            raise ConfigError(f"{self.flag}: must be {want}, got {_show(value)}")
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{self.flag}: must be {want}, got {_show(value)}")
            value = int(value)
        elif not math.isfinite(value):
            raise ConfigError(f"{self.flag}: must be {want}, got {value!r}")
        else:
            value = float(value)
        if self.zero and value == 0:
            return value
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ConfigError(f"{self.flag}: must be {want}, got {_show(value)}")
        return value

    def expected(self) -> str:
        """What a value must be, in words: "an integer from 1 to 16"."""
        if self.type is str and self.choices:
            return "one of " + ", ".join(self.choices)
        kind = TYPES[self.type]
        if self.type in (bool, str):
            return kind
        show = (lambda x: f"{int(x):,}") if self.type is int else (lambda x: f"{x:g}")
        if self.low is not None and self.high is not None:
            kind += f" from {show(self.low)} to {show(self.high)}"
        elif self.low is not None:
            kind += f" of at least {show(self.low)}"
        elif self.high is not None:
            kind += f" of at most {show(self.high)}"
        return kind + (" (or 0)" if self.zero else "")

    def describe(self) -> dict[str, Any]:
        """JSON for the web page, which draws a control from it."""
        return {"name": self.name, "flag": self.flag, "type": self.type.__name__, "default": self.default,
                "help": self.help, "low": self.low, "high": self.high, "zero": self.zero,
                "choices": list(self.choices)}  # fmt: skip


def check_options(options: Sequence[Option], given: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The keyword arguments of ``predict``: ``given`` checked against ``options``, defaults filled in. A name that
    is not an option is one line saying what ``what`` (e.g. "a seq2seq run") takes instead."""
    by_name = {o.name: o for o in options}
    unknown = [name for name in given if name not in by_name]
    if unknown:
        flags = " and ".join("--" + str(n).replace("_", "-") for n in unknown)
        verb = "does" if len(unknown) == 1 else "do"
        takes = ", ".join(o.flag for o in options) or "no options"
        raise ConfigError(f"{flags} {verb} not apply to {what} (it takes {takes})")
    return {o.name: o.check(given[o.name]) if o.name in given else o.default for o in options}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
