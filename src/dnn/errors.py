"""Errors a user can cause, each with a one-line message.

Every exception a user can trigger through bad input is a :class:`DnnError`. The command line turns it into one
line on stderr (``dnn: error: <message>``) and exit code 2; no traceback. A message names the file, line, key or
argument at fault and says what was expected and what was received.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DnnError(Exception):
    """Base class of every error caused by what the user asked for (not by a bug in dnn)."""

    def __init__(self, message: str):
        # One line, always: a multi-line message would break "one line on stderr".
        super().__init__(" ".join(str(message).split()))


class ConfigError(DnnError, ValueError):
    """A configuration key, value or argument is wrong (names the key and what was expected)."""


class DataError(DnnError, ValueError):
    """A data file or example is unusable (names the file and line)."""


class CheckpointError(DnnError):
    """A run directory or checkpoint is missing, incomplete or incompatible."""


def did_you_mean(name: str, known: Iterable[str], otherwise: str = "") -> str:
    """The end of a message about an unknown ``name``: ``"; did you mean 'x'?"`` with the closest of ``known``
    (:func:`difflib.get_close_matches`), or ``otherwise`` (e.g. ``"; known: a, b"``) when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else otherwise
