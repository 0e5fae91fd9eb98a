"""What one request may ask of the server: the limits a hostile or careless client cannot get past.

request body   > max_body_bytes                          → 413 (counted while reading, not trusted from headers)
input text     > max_tokens tokens (the run's tokenizer) → 422
generation     length > max_tokens                       → 422
a parameter    out of its range (temperature 1e-45, NaN) → 422 naming the field
image          width × height > max_pixels               → 422 (from the header, before any pixel is decoded)
in flight      > max_concurrency requests at once        → 429 at once (no queue)
running time   > timeout_s seconds                       → 503, and the work is stopped at its next forward call
body read      > body_timeout_s seconds                  → 408, connection closed
headers read   > header_timeout_s seconds                → connection closed (a client trickling its headers)
connections    > max_connections open at once            → 503 and closed at once (file descriptors stay free)
idle           > keep_alive_s seconds between requests   → connection closed
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from dnn.checks import number_in, positive_int

# what one decoding may ask for is declared once, with the predictors' options (re-exported here for the server)
from dnn.tasks.options import MAX_BEAM_SIZE, MAX_SEED, MAX_TEMPERATURE, MAX_TOP_K, MIN_TEMPERATURE, MIN_TOP_P

__all__ = ["MAX_BEAM_SIZE", "MAX_SEED", "MAX_TEMPERATURE", "MAX_TOP_K", "MIN_TEMPERATURE", "MIN_TOP_P", "ServeLimits"]


@dataclass(frozen=True)
class ServeLimits:
    """Limits of ``dnn serve``. The first five have a command-line flag of the same name (``--max-body-bytes`` …,
    ``--timeout``); the connection limits keep their defaults on the command line."""

    max_body_bytes: int = 2_000_000  # a 1000×1000 PNG in base64 fits
    max_tokens: int = 1000
    max_pixels: int = 4_000_000
    max_concurrency: int = 4
    timeout_s: float = 10.0
    max_connections: int = 256  # well under the usual 1024 file descriptors of a process
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            name = f"{f.name} ({FLAGS[f.name]})" if f.name in FLAGS else f.name
            if f.name.endswith("_s"):  # finite=False: an infinite timeout stays allowed, as it always was
                number_in(name, value, 0, low_open=True, finite=False, expected="a number of seconds > 0")
            else:
                positive_int(name, value)


FLAGS = {"max_body_bytes": "--max-body-bytes", "max_tokens": "--max-tokens", "max_pixels": "--max-pixels",
         "max_concurrency": "--max-concurrency", "timeout_s": "--timeout"}  # fmt: skip
