"""What one request may ask of the server: the limits a hostile or careless client cannot get past.

request body   > max_body_bytes                          → 413 (counted while reading, not trusted from headers)
input text     > max_tokens tokens (the run's tokenizer) → 422
generation     length > max_tokens                       → 422
image          width × height > max_pixels               → 422 (from the header, before any pixel is decoded)
in flight      > max_concurrency requests at once        → 429 at once (no queue)
running time   > timeout_s seconds                       → 503 (the worker's late result is discarded)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from dnn.errors import ConfigError

__all__ = ["MAX_BEAM_SIZE", "ServeLimits"]

MAX_BEAM_SIZE = 16  # beams per request: the cost grows with beam × length, so the API caps it


@dataclass(frozen=True)
class ServeLimits:
    """Limits of ``dnn serve`` (each has a command-line flag of the same name: ``--max-body-bytes`` …)."""

    max_body_bytes: int = 2_000_000  # a 1000×1000 PNG in base64 fits
    max_tokens: int = 1000
    max_pixels: int = 4_000_000
    max_concurrency: int = 4
    timeout_s: float = 10.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "timeout_s":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise ConfigError(f"timeout_s (--timeout) must be a number of seconds > 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + f.name.replace("_", "-")
                raise ConfigError(f"{f.name} ({flag}) must be a positive integer, got {value!r}")
