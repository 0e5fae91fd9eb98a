import datetime
import math
import re

import pytest
import torch

from dnn.data.splits import derive_seed
from dnn.data.synthetic import (
    adding_problem,
    adding_splits,
    copy_memory,
    copy_memory_baseline,
    copy_memory_splits,
    copy_memory_tokens,
)
from dnn.data.text_tasks import DATE_FORMATS, format_date, list_tasks, make_task, task_splits
from dnn.errors import ConfigError


def test_adding_problem_shapes_markers_and_targets():
    x, y = adding_problem(500, 40, torch.Generator().manual_seed(0))
    assert x.shape == (40, 500, 2) and y.shape == (500,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(0), torch.full((500,), 2.0))  # exactly two marked steps
    assert torch.equal(markers[:20].sum(0), torch.ones(500))  # one in each half
    torch.testing.assert_close((x[..., 0] * markers).sum(0), y)


def test_adding_problem_baseline_is_one_sixth_and_seed_is_deterministic():
    x, y = adding_problem(20000, 10, torch.Generator().manual_seed(1))
    assert abs(((y - 1.0) ** 2).mean().item() - 1 / 6) < 0.01
    a = adding_problem(5, 10, torch.Generator().manual_seed(7))
    b = adding_problem(5, 10, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_adding_problem_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="length"):
        adding_problem(4, 1)


# ---------------------------------------------------------------------------------------------- copy memory


def test_copy_memory_layout_follows_arjovsky_et_al():
    T, L, n_symbols = 15, 10, 8
    x, y = copy_memory(300, T, 0, n_symbols=n_symbols, length=L)
    blank, delimiter = copy_memory_tokens(n_symbols)
    assert (blank, delimiter) == (8, 9)
    assert x.shape == y.shape == (300, T + 2 * L) and x.dtype == y.dtype == torch.int64
    symbols = x[:, :L]
    assert symbols.min() >= 0 and symbols.max() < n_symbols
    assert len(torch.unique(symbols)) == n_symbols  # all symbols are drawn
    assert (x[:, L : L + T - 1] == blank).all()  # T - 1 blanks
    assert (x[:, L + T - 1] == delimiter).all()  # then the delimiter
    assert (x[:, L + T :] == blank).all()  # then L blanks
    assert (y[:, : T + L] == blank).all()
    assert torch.equal(y[:, T + L :], symbols)  # the symbols, in order, at the end


@pytest.mark.parametrize("T", [1, 30, 100])
def test_copy_memory_baseline_is_the_memoryless_cross_entropy(T):
    x, y = copy_memory(64, T, 1)
    blank, _ = copy_memory_tokens(8)
    # The memoryless strategy: certain of the blank for T + 10 steps, then uniform over the 8 symbols.
    logits = torch.full((64, T + 20, 10), -1e9)
    logits[:, : T + 10, blank] = 0.0
    logits[:, T + 10 :, :8] = 0.0
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1)).item()
    assert loss == pytest.approx(copy_memory_baseline(T), rel=1e-6)
    assert copy_memory_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))


def test_copy_memory_is_deterministic_by_seed_or_generator():
    a = copy_memory(8, 5, 3)
    b = copy_memory(8, 5, torch.Generator().manual_seed(3))
    c = copy_memory(8, 5, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_copy_memory_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="delay"):
        copy_memory(4, 0)
    with pytest.raises(ConfigError, match="generator"):
        copy_memory(4, 5, "seed")


@pytest.mark.parametrize(
    "task, make_splits, make_one",
    [
        ("adding", lambda s: adding_splits((20, 5, 6), length=12, seed=s), lambda n, g: adding_problem(n, 12, g)),
        ("copy_memory", lambda s: copy_memory_splits((20, 5, 6), delay=7, seed=s), lambda n, g: copy_memory(n, 7, g)),
    ],
)
def test_tensor_splits_use_a_derived_seed_per_split(task, make_splits, make_one):
    splits = make_splits(0)
    for (x, y), n, split in zip(splits, (20, 5, 6), ("train", "valid", "test")):
        ref_x, ref_y = make_one(n, torch.Generator().manual_seed(derive_seed(0, task, split)))
        assert torch.equal(x, ref_x) and torch.equal(y, ref_y)  # independent of the other splits and call order
    assert not torch.equal(make_splits(1).test[0], splits.test[0])
    with pytest.raises(ConfigError, match="sizes"):
        adding_splits((10, -1, 5))


# ---------------------------------------------------------------------------------------------- text tasks


@pytest.mark.parametrize("name", ["reverse", "sort"])
def test_reverse_and_sort_targets_and_lengths(name):
    pairs = make_task(name, 500, seed=0, min_len=2, max_len=7, n_symbols=5)
    for source, target in pairs:
        assert 2 <= len(source) <= 7 and set(source) <= set("01234")
        assert target == (source[::-1] if name == "reverse" else "".join(sorted(source, key=int)))
    assert {len(s) for s, _ in pairs} == set(range(2, 8))  # every length occurs
    assert any(s != t for s, t in pairs)


def test_addition_targets_are_the_sums_and_operands_have_at_most_digits():
    pairs = make_task("addition", 2000, seed=1, digits=3)
    for source, target in pairs:
        a, b = source.split("+")
        assert int(a) + int(b) == int(target) and str(int(target)) == target
        assert 1 <= len(a) <= 3 and str(int(a)) == a  # no leading zeros
    assert {len(s.split("+")[0]) for s, _ in pairs} == {1, 2, 3}


def test_tasks_are_deterministic_by_seed():
    for name in list_tasks():
        assert make_task(name, 50, seed=5) == make_task(name, 50, seed=5)
        assert make_task(name, 50, seed=5) != make_task(name, 50, seed=6)


def test_copy_memory_text_has_the_tensor_layout():
    for source, target in make_task("copy_memory", 50, seed=0, delay=6, n_symbols=4, length=5):
        assert len(source) == len(target) == 6 + 2 * 5
        assert set(source[:5]) <= set("0123") and source[5:10] == "_____" and source[10] == ":"
        assert source[11:] == "_" * 5 and target == "_" * 11 + source[:5]


# ---------------------------------------------------------------------------------------------- dates

MONTH_NAMES = [datetime.date(2000, m, 1).strftime("%B").lower() for m in range(1, 13)]


def _year_in_range(yy: str, year_min: int, year_max: int) -> int:
    (year,) = [y for y in range(year_min, year_max + 1) if y % 100 == int(yy)]
    return year


def _parse_with(fmt: str, source: str, year_min: int = 1950, year_max: int = 2049) -> datetime.date | None:
    """The test's own reader of each format: strptime, with the 2-digit year resolved in the range."""
    s = source
    if fmt == "ordinal":
        m = re.fullmatch(r"the (\d+)(st|nd|rd|th) of (\w+), (\d{4})", s)
        if not m:
            return None
        day = int(m.group(1))
        suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(day, "th")
        assert m.group(2) == suffix
        s, pattern = f"{m.group(1)} {m.group(3)} {m.group(4)}", "%d %B %Y"
    elif fmt in ("dd-mon-yy", "mm/dd/yy"):
        m = re.fullmatch(r"(\d\d)-([a-z]{3})-(\d\d)" if fmt == "dd-mon-yy" else r"(\d\d)/(\d\d)/(\d\d)", s)
        if not m:
            return None
        year = _year_in_range(m.group(3), year_min, year_max)
        s, pattern = f"{m.group(1)} {m.group(2)} {year}", "%d %b %Y" if fmt == "dd-mon-yy" else "%m %d %Y"
    else:
        pattern = {
            "d_month_yyyy": "%d %B %Y",
            "mon_d_yyyy": "%b %d, %Y",
            "month_d_yyyy": "%B %d, %Y",
            "MONTH_D_YYYY": "%B %d %Y",
            "d_mon_yyyy": "%d %b %Y",
            "weekday_month_d_yyyy": "%A, %B %d, %Y",
            "weekday_d_month_yyyy": "%A %d %B %Y",
            "wkd_d_mon_yyyy": "%a, %d %b %Y",
            "dd/mm/yyyy": "%d/%m/%Y",
            "dd.mm.yyyy": "%d.%m.%Y",
            "yyyy.mm.dd": "%Y.%m.%d",
            "yyyy/mm/dd": "%Y/%m/%d",
            "yyyymmdd": "%Y%m%d",
        }[fmt]
    try:
        date = datetime.datetime.strptime(s, pattern).date()
    except ValueError:
        return None
    if fmt.startswith("w"):  # strptime ignores the weekday: check it against the calendar
        assert s.split()[0].rstrip(",").lower() == date.strftime("%A" if "weekday" in fmt else "%a").lower()
    return date


def test_date_formats_show_their_examples_and_at_least_twelve_exist():
    assert len(DATE_FORMATS) >= 12
    for name, (example, _) in DATE_FORMATS.items():
        assert format_date(datetime.date(2026, 11, 25), name) == example
        assert _parse_with(name, example) == datetime.date(2026, 11, 25)
    assert format_date(datetime.date(2026, 11, 25), "weekday_month_d_yyyy") == "wednesday, november 25, 2026"


def test_date_targets_are_iso_dates_that_every_matching_reader_agrees_on():
    pairs = make_task("dates", 3000, seed=0)
    readers_used = set()
    for source, target in pairs:
        date = datetime.date.fromisoformat(target)
        assert 1950 <= date.year <= 2049 and target == f"{date.year:04d}-{date.month:02d}-{date.day:02d}"
        readings = {fmt: _parse_with(fmt, source) for fmt in DATE_FORMATS}
        readings = {fmt: d for fmt, d in readings.items() if d is not None}
        assert readings and set(readings.values()) == {date}, (source, target, readings)
        readers_used |= set(readings)
    assert readers_used == set(DATE_FORMATS)  # every format occurs


def test_no_date_string_has_two_meanings_over_a_hundred_years():
    meaning: dict[str, datetime.date] = {}
    first, last = datetime.date(1950, 1, 1).toordinal(), datetime.date(2049, 12, 31).toordinal()
    for ordinal in range(first, last + 1, 7):  # every 7th day: each weekday, day of month and month occurs
        date = datetime.date.fromordinal(ordinal)
        for fmt in DATE_FORMATS:
            assert meaning.setdefault(format_date(date, fmt), date) == date
    # Only "May 5, 2026" is written alike by two formats (mon_d_yyyy, month_d_yyyy): same date, no ambiguity.
    assert format_date(datetime.date(2026, 5, 5), "mon_d_yyyy") == format_date(
        datetime.date(2026, 5, 5), "month_d_yyyy"
    )
    n_may = sum(datetime.date.fromordinal(o).month == 5 for o in range(first, last + 1, 7))
    assert len(meaning) == len(DATE_FORMATS) * len(range(first, last + 1, 7)) - n_may
    # The classic ambiguity is resolved by the field widths: 05/06/2026 is 5 June, 05/06/26 is May 6.
    assert format_date(datetime.date(2026, 6, 5), "dd/mm/yyyy") == "05/06/2026"
    assert format_date(datetime.date(2026, 5, 6), "mm/dd/yy") == "05/06/26"


def test_dates_are_drawn_from_the_year_range_and_formats_can_be_chosen():
    pairs = make_task("dates", 400, seed=2, year_min=2000, year_max=2001, formats=["yyyymmdd"])
    dates = [datetime.date.fromisoformat(t) for _, t in pairs]
    assert {d.year for d in dates} == {2000, 2001} and len({d.month for d in dates}) == 12
    assert all(s == d.strftime("%Y%m%d") for (s, _), d in zip(pairs, dates))
    wide = make_task("dates", 2000, seed=0, year_min=1800, year_max=2100)
    assert not any(re.fullmatch(r"\d\d/\d\d/\d\d|\d\d-[a-z]{3}-\d\d", s) for s, _ in wide)  # no 2-digit years
    with pytest.raises(ConfigError, match="2-digit year"):
        make_task("dates", 1, year_min=1800, year_max=2100, formats=["mm/dd/yy"])
    with pytest.raises(ConfigError, match="did you mean 'dd/mm/yyyy'"):
        make_task("dates", 1, formats=["dd/mm/yyy"])


# ---------------------------------------------------------------------------------------------- registry, splits


def test_task_splits_are_disjoint_deterministic_and_independent_of_each_other():
    splits = task_splits("addition", (300, 50, 50), seed=0, digits=2)
    train, valid, test = (set(s for s, _ in part) for part in splits)
    assert [len(p) for p in splits] == [300, 50, 50]
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert task_splits("addition", (300, 50, 50), seed=0, digits=2) == splits
    assert task_splits("addition", (300, 50, 50), seed=1, digits=2).test != splits.test
    # The test set is the seed's alone; the training set's size changes nothing in the held-out sets.
    assert splits.test == make_task("addition", 50, seed=derive_seed(0, "addition", "test"), digits=2)
    other = task_splits("addition", (10, 50, 50), seed=0, digits=2)
    assert other.test == splits.test and other.valid == splits.valid


def test_task_splits_refuse_a_task_too_small_for_disjoint_splits():
    with pytest.raises(ConfigError, match="too few distinct sources"):
        task_splits("addition", (0, 10, 2000), digits=1)  # the test set takes all 10 × 10 sources


def test_registry_lists_tasks_and_names_the_closest_on_errors():
    assert list_tasks() == ["addition", "copy_memory", "dates", "reverse", "sort"]
    with pytest.raises(ConfigError, match="did you mean 'reverse'"):
        make_task("revers", 3)
    with pytest.raises(ConfigError, match="did you mean 'max_len'"):
        make_task("sort", 3, maxlen=4)
    with pytest.raises(ConfigError, match="max_len"):
        make_task("sort", 3, min_len=5, max_len=4)
    with pytest.raises(ConfigError, match="digits"):
        task_splits("addition", (1, 1, 1), digits=0)
    with pytest.raises(ConfigError, match="seed"):
        make_task("sort", 3, seed=1.5)
