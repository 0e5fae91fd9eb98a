"""Text-to-text tasks for sequence-to-sequence models, generated from a seed: nothing to download.

    make_task("dates", 2, seed=0)        # [('2019.02.15', '2019-02-15'), ('the 7th of April, 1957', '1957-04-07')]
    task_splits("addition", sizes=(10000, 1000, 1000), seed=0, digits=3)   # Splits of (source, target) lists
    list_tasks()                         # ['addition', 'copy_memory', 'dates', 'reverse', 'sort']

Every example is a ``(source, target)`` pair of strings; tokenising them (one token per character is the natural
choice: every task below is written so that a character is a token) is the caller's business.

===============  ==============================================  ===============================================
task             source → target                                 parameters (defaults)
===============  ==============================================  ===============================================
``reverse``      ``"35817"`` → ``"71853"``                       min_len=3, max_len=10, n_symbols=10
``sort``         ``"35817"`` → ``"13578"``                       min_len=3, max_len=10, n_symbols=10
``addition``     ``"535+61"`` → ``"596"``                        digits=3
``dates``        ``"Nov 25, 2026"`` → ``"2026-11-25"``           year_min=1950, year_max=2049, formats=None (all)
``copy_memory``  symbols, blanks, ``":"``, blanks → blanks, symbols  delay=20, n_symbols=8, length=10
===============  ==============================================  ===============================================

Symbols are the digits ``"0123456789"[:n_symbols]``, so tokens are single characters with no spaces.
``addition`` draws each operand's number of digits uniformly from 1…``digits``, then the operand uniformly among
the numbers with that many digits (much as Keras' addition example does), so short operands are not rare.
``copy_memory`` is :func:`dnn.data.synthetic.copy_memory` as text: ``"_"`` is the blank, ``":"`` the delimiter.

:func:`task_splits` draws each split from its own seed, ``derive_seed(seed, task, split)``, and keeps the splits
disjoint by source: the test set depends on the seed alone, the validation set skips every source of the test
set, and the training set skips the sources of both. Examples within one split are independent draws and may
repeat where the task has few distinct sources.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dnn.checks import int_in
from dnn.data.splits import Splits, check_sizes, derive_seed
from dnn.errors import ConfigError, did_you_mean

__all__ = [
    "DATE_FORMATS",
    "TASKS",
    "AdditionConfig",
    "CopyMemoryConfig",
    "DatesConfig",
    "DigitStringConfig",
    "TaskSpec",
    "format_date",
    "get_task",
    "list_tasks",
    "make_task",
    "task_splits",
]

DIGITS = "0123456789"
COPY_BLANK, COPY_DELIMITER = "_", ":"


# --------------------------------------------------------------------------------------------- digit strings


@dataclass(frozen=True)
class DigitStringConfig:
    """Digit strings of a length drawn uniformly from [min_len, max_len] over ``n_symbols`` digits."""

    min_len: int = 3
    max_len: int = 10
    n_symbols: int = 10

    def __post_init__(self):
        int_in("task 'reverse/sort': min_len", self.min_len, 1)
        int_in("task 'reverse/sort': max_len", self.max_len, self.min_len)
        int_in("task 'reverse/sort': n_symbols", self.n_symbols, 2, len(DIGITS))


def _digit_string(config: DigitStringConfig, rng: random.Random) -> str:
    alphabet = DIGITS[: config.n_symbols]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(config.min_len, config.max_len)))


def _reverse(config: DigitStringConfig, rng: random.Random) -> tuple[str, str]:
    source = _digit_string(config, rng)
    return source, source[::-1]


def _sort(config: DigitStringConfig, rng: random.Random) -> tuple[str, str]:
    source = _digit_string(config, rng)
    return source, "".join(sorted(source))


# --------------------------------------------------------------------------------------------- addition


@dataclass(frozen=True)
class AdditionConfig:
    """``"a+b"`` → ``"a+b evaluated"`` with operands of 1…``digits`` digits."""

    digits: int = 3

    def __post_init__(self):
        int_in("task 'addition': digits", self.digits, 1, 18)


def _operand(digits: int, rng: random.Random) -> int:
    k = rng.randint(1, digits)  # number of digits, uniform
    return rng.randint(0 if k == 1 else 10 ** (k - 1), 10**k - 1)


def _addition(config: AdditionConfig, rng: random.Random) -> tuple[str, str]:
    a, b = _operand(config.digits, rng), _operand(config.digits, rng)
    return f"{a}+{b}", str(a + b)


# --------------------------------------------------------------------------------------------- copy memory


@dataclass(frozen=True)
class CopyMemoryConfig:
    """The copy-memory task as text; see :func:`dnn.data.synthetic.copy_memory` for the layout."""

    delay: int = 20
    n_symbols: int = 8
    length: int = 10

    def __post_init__(self):
        int_in("task 'copy_memory': delay", self.delay, 1)
        int_in("task 'copy_memory': n_symbols", self.n_symbols, 1, len(DIGITS))
        int_in("task 'copy_memory': length", self.length, 1)


def _copy_memory(config: CopyMemoryConfig, rng: random.Random) -> tuple[str, str]:
    symbols = "".join(rng.choice(DIGITS[: config.n_symbols]) for _ in range(config.length))
    source = symbols + COPY_BLANK * (config.delay - 1) + COPY_DELIMITER + COPY_BLANK * config.length
    target = COPY_BLANK * (config.delay + config.length) + symbols
    return source, target


# --------------------------------------------------------------------------------------------- dates

# English names, independent of the process' locale (strftime's %A / %B follow LC_TIME).
MONTHS = tuple("January February March April May June July August September October November December".split())
WEEKDAYS = tuple("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())  # date.weekday() order


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Each format: name → (example for 2026-11-25, writer). The rule that keeps every source string's meaning unique:
# a format with a month *name* fixes the month by the name; the all-numeric formats are zero-padded, so the
# widths of their fields tell them apart — the field of 4 digits is the year, and its position fixes the order:
#   yyyy first → year-month-day ("2026.11.25", "2026/11/25", "20261125"),
#   yyyy last  → day-month-year ("25/11/2026", "25.11.2026"),
#   yy last    → month/day/yy, the US order ("11/25/26"), the only numeric format with a 2-digit year.
# A 2-digit year ("11/25/26", "25-nov-26") means the one year of the range [year_min, year_max] that ends in those
# digits, so the two formats that use one are only available while the range spans at most 100 years.
DATE_FORMATS: dict[str, tuple[str, Callable[[datetime.date], str]]] = {
    "d_month_yyyy": ("25 November 2026", lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}"),
    "mon_d_yyyy": ("Nov 25, 2026", lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}"),
    "month_d_yyyy": ("November 25, 2026", lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}"),
    "MONTH_D_YYYY": ("NOVEMBER 25 2026", lambda d: f"{MONTHS[d.month - 1].upper()} {d.day} {d.year}"),
    "d_mon_yyyy": ("25 nov 2026", lambda d: f"{d.day} {MONTHS[d.month - 1][:3].lower()} {d.year}"),
    "weekday_month_d_yyyy": (
        "wednesday, november 25, 2026",
        lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}".lower(),
    ),
    "weekday_d_month_yyyy": (
        "Wednesday 25 November 2026",
        lambda d: f"{WEEKDAYS[d.weekday()]} {d.day} {MONTHS[d.month - 1]} {d.year}",
    ),
    "wkd_d_mon_yyyy": (
        "Wed, 25 Nov 2026",
        lambda d: f"{WEEKDAYS[d.weekday()][:3]}, {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    ),
    "ordinal": ("the 25th of November, 2026", lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}"),
    "dd-mon-yy": ("25-nov-26", lambda d: f"{d.day:02d}-{MONTHS[d.month - 1][:3].lower()}-{d.year % 100:02d}"),
    "mm/dd/yy": ("11/25/26", lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}"),
    "dd/mm/yyyy": ("25/11/2026", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}"),
    "dd.mm.yyyy": ("25.11.2026", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}"),
    "yyyy.mm.dd": ("2026.11.25", lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}"),
    "yyyy/mm/dd": ("2026/11/25", lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}"),
    "yyyymmdd": ("20261125", lambda d: f"{d.year}{d.month:02d}{d.day:02d}"),
}
TWO_DIGIT_YEAR_FORMATS = ("dd-mon-yy", "mm/dd/yy")


def format_date(date: datetime.date, fmt: str) -> str:
    """Write ``date`` in the format named ``fmt`` (a key of :data:`DATE_FORMATS`)."""
    if fmt not in DATE_FORMATS:
        raise ConfigError(f"unknown date format {fmt!r}{_closest(fmt, DATE_FORMATS)}")
    return DATE_FORMATS[fmt][1](date)


@dataclass(frozen=True)
class DatesConfig:
    """Dates drawn uniformly from 1 Jan ``year_min`` … 31 Dec ``year_max``, each in one of ``formats``.

    ``formats=None`` uses every format of :data:`DATE_FORMATS`, less the two 2-digit-year formats when the year
    range spans more than 100 years (their meaning would not be unique).
    """

    year_min: int = 1950
    year_max: int = 2049
    formats: tuple[str, ...] | None = None

    def __post_init__(self):
        int_in("task 'dates': year_min", self.year_min, 1000, 9999)
        int_in("task 'dates': year_max", self.year_max, self.year_min, 9999)
        if self.formats is not None:
            if isinstance(self.formats, str) or not isinstance(self.formats, (tuple, list)) or not self.formats:
                raise ConfigError(f"task 'dates': formats must be a non-empty list of names, got {self.formats!r}")
            for fmt in self.formats:
                if fmt not in DATE_FORMATS:
                    raise ConfigError(f"task 'dates': unknown format {fmt!r} in formats{_closest(fmt, DATE_FORMATS)}")
            object.__setattr__(self, "formats", tuple(self.formats))
        if self.year_max - self.year_min >= 100:
            two_digit = [f for f in self.formats or () if f in TWO_DIGIT_YEAR_FORMATS]
            if two_digit:
                raise ConfigError(
                    f"task 'dates': format {two_digit[0]!r} writes a 2-digit year, which is ambiguous over "
                    f"year_min={self.year_min}…year_max={self.year_max}; use a range of at most 100 years"
                )

    def enabled_formats(self) -> tuple[str, ...]:
        if self.formats is not None:
            return self.formats
        wide = self.year_max - self.year_min >= 100
        return tuple(f for f in DATE_FORMATS if not (wide and f in TWO_DIGIT_YEAR_FORMATS))


def _dates(config: DatesConfig, rng: random.Random) -> tuple[str, str]:
    first = datetime.date(config.year_min, 1, 1).toordinal()
    last = datetime.date(config.year_max, 12, 31).toordinal()
    date = datetime.date.fromordinal(rng.randint(first, last))
    return format_date(date, rng.choice(config.enabled_formats())), date.isoformat()


# --------------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class TaskSpec:
    name: str
    config_cls: type
    sample: Callable[[Any, random.Random], tuple[str, str]]  # one (source, target) pair from the stream rng
    summary: str


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("reverse", DigitStringConfig, _reverse, "a digit string → the same string reversed"),
        TaskSpec("sort", DigitStringConfig, _sort, "a digit string → its digits in ascending order"),
        TaskSpec("addition", AdditionConfig, _addition, '"535+61" → "596"'),
        TaskSpec("dates", DatesConfig, _dates, "a date written by a human → ISO 8601"),
        TaskSpec("copy_memory", CopyMemoryConfig, _copy_memory, "recall 10 symbols after a delay of blanks"),
    )
}


def _closest(name: str, names: Sequence[str] | dict) -> str:
    return did_you_mean(name, names, f"; known: {', '.join(sorted(names))}")


def list_tasks() -> list[str]:
    """The names of the built-in text tasks, sorted."""
    return sorted(TASKS)


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}{_closest(name, TASKS)}")
    return TASKS[name]


def task_config(name: str, **params: Any) -> Any:
    """The validated config of task ``name``; an unknown parameter is a ConfigError naming the closest one."""
    spec = get_task(name)
    fields = [f.name for f in dataclasses.fields(spec.config_cls)]
    for key in params:
        if key not in fields:
            raise ConfigError(f"task {name!r}: unknown parameter {key!r}{_closest(key, fields)}")
    return spec.config_cls(**params)


def make_task(name: str, n: int, seed: int = 0, **params: Any) -> list[tuple[str, str]]:
    """``n`` independent ``(source, target)`` pairs of task ``name``, drawn with ``random.Random(seed)``."""
    config = task_config(name, **params)
    int_in(f"task {name!r}: n", n, 0)
    int_in("seed", seed)
    rng = random.Random(seed)
    return [TASKS[name].sample(config, rng) for _ in range(n)]


def _draw_excluding(name: str, config: Any, n: int, seed: int, exclude: set[str]) -> list[tuple[str, str]]:
    """``n`` pairs from the stream ``random.Random(seed)``, skipping sources in ``exclude``."""
    rng, sample, pairs = random.Random(seed), TASKS[name].sample, []
    attempts = 20 * n + 1000  # gives up only where fewer than ~1 draw in 20 is still allowed
    while len(pairs) < n and attempts > 0:
        attempts -= 1
        pair = sample(config, rng)
        if pair[0] not in exclude:
            pairs.append(pair)
    if len(pairs) < n:
        raise ConfigError(
            f"task {name!r} with {config} has too few distinct sources for disjoint splits of these sizes; "
            "make the task larger or the splits smaller"
        )
    return pairs


def task_splits(
    name: str, sizes: Sequence[int] = (10000, 1000, 1000), seed: int = 0, **params: Any
) -> Splits[list[tuple[str, str]]]:
    """Train / valid / test lists of ``(source, target)`` pairs of task ``name``, disjoint by source.

    The test set is ``make_task(name, n_test, derive_seed(seed, name, "test"))``; the validation and training
    sets come from their own derived seeds and skip the sources of the sets drawn before them (see the module
    docstring). Nothing depends on call order or on the other splits' sizes, except through that skipping.
    """
    config = task_config(name, **params)
    n_train, n_valid, n_test = check_sizes(sizes)
    int_in("seed", seed)
    test = _draw_excluding(name, config, n_test, derive_seed(seed, name, "test"), set())
    held_out = {source for source, _ in test}
    valid = _draw_excluding(name, config, n_valid, derive_seed(seed, name, "valid"), held_out)
    held_out |= {source for source, _ in valid}
    train = _draw_excluding(name, config, n_train, derive_seed(seed, name, "train"), held_out)
    return Splits(train, valid, test)
