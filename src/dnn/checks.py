"""The one checker for numbers and choices: configs, layers, tasks and the command line call it alike.

Every checker takes the field's name as the user knows it (``"beam_size"``, ``"data.max_length"``,
``"speech_ctc: dropout"``) and the value; it returns the value, or raises one line naming both::

    positive_int("speech_ctc: hidden_size", 0)       # speech_ctc: hidden_size must be a positive integer, got 0
    number_in("dropout", 1.0, 0, 1, high_open=True)  # dropout must be a number in [0, 1), got 1.0

``expected`` replaces the words after "must be" where a message says more ("an integer from 1 to 16 (--max-tokens)").
A bool is never a number here: ``True == 1`` in Python, but a YAML ``yes`` is not one layer. A number is finite
unless ``finite=False``: NaN passes every comparison's negation and inf every lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from dnn.errors import ConfigError

__all__ = ["choice", "int_in", "is_int", "is_number", "number_in", "positive_int"]


def is_int(value: object) -> bool:
    """An ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An ``int`` or a ``float`` and not a ``bool`` (NaN and inf included: see :func:`number_in`)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, value: object, *, expected: str | None = None) -> int:
    """``value`` if it is an integer ≥ 1; else "<name> must be a positive integer, got <value>"."""
    if not is_int(value) or value < 1:
        raise ConfigError(f"{name} must be {expected or 'a positive integer'}, got {value!r}")
    return value


def int_in(
    name: str, value: object, low: int | None = None, high: int | None = None, *, expected: str | None = None
) -> int:
    """``value`` if it is an integer in ``[low, high]`` (None: unbounded on that side); else "<name> must be an
    integer in [low, high]" (or "≥ low", "≤ high", "an integer"), got <value>"."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{name} must be {expected or _interval('an integer', low, high)}, got {value!r}")
    return value


def number_in(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    expected: str | None = None,
) -> float:
    """``float(value)`` if it is a number in the interval from ``low`` to ``high`` (closed unless ``low_open`` /
    ``high_open``; None: unbounded on that side) and, unless ``finite=False``, neither NaN nor ±inf; else
    "<name> must be a number in [low, high), got <value>"."""
    ok = (
        is_number(value)
        and (not finite or math.isfinite(value))
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high))
    )
    if not ok:
        if expected is None:
            kind = "a finite number" if finite and (low is None or high is None) else "a number"
            expected = _interval(kind, low, high, low_open, high_open)
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def choice(name: str, value: object, choices: Collection, *, expected: str | None = None) -> object:
    """``value`` if it is one of ``choices``; else "<name> must be one of 'a', 'b'; got <value>"."""
    if value not in choices:
        raise ConfigError(f"{name} must be {expected or 'one of ' + ', '.join(map(repr, choices))}; got {value!r}")
    return value


def _interval(kind: str, low, high, low_open: bool = False, high_open: bool = False) -> str:
    """ "an integer in [1, 16]", "a number in (0, 1]", "an integer ≥ 0", "a number > 0", "an integer"."""
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{_show(low)}, {_show(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '≥'} {_show(low)}"
    if high is not None:
        return f"{kind} {'<' if high_open else '≤'} {_show(high)}"
    return kind


def _show(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
