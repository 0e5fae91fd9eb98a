"""dnn.checks: the one checker of numbers and choices. A bool is no number, NaN and inf are refused unless asked
for, bounds are inclusive unless open, and the one-line message names the field, what was expected and the value."""

import math

import pytest

from dnn.checks import choice, int_in, is_int, is_number, number_in, positive_int
from dnn.errors import ConfigError


def test_predicates_refuse_bools_and_non_numbers():
    assert is_int(3) and is_int(-1) and is_int(0)
    assert not any(is_int(v) for v in (True, False, 1.0, "1", None))
    assert is_number(3) and is_number(0.5) and is_number(math.nan) and is_number(math.inf)
    assert not any(is_number(v) for v in (True, False, "1", None, [1]))


def test_positive_int():
    assert positive_int("hidden_size", 1) == 1 and positive_int("hidden_size", 10**9) == 10**9
    for bad in (0, -3, True, 1.0, 2.5, "3", None, math.nan):
        with pytest.raises(ConfigError, match=rf"^hidden_size must be a positive integer, got {re_repr(bad)}$"):
            positive_int("hidden_size", bad)


def test_positive_int_expected_replaces_the_words():
    with pytest.raises(ConfigError, match=r"^seq2seq: encoder_hidden_size must be a positive integer or None, got 0$"):
        positive_int("seq2seq: encoder_hidden_size", 0, expected="a positive integer or None")


@pytest.mark.parametrize(
    "low,high,good,bad,words",
    [
        (1, 16, (1, 16), (0, 17), "an integer in [1, 16]"),
        (0, None, (0, 10**12), (-1,), "an integer ≥ 0"),
        (None, 5, (-(10**12), 5), (6,), "an integer ≤ 5"),
        (None, None, (0, -7, 2**70), (), "an integer"),
    ],
)
def test_int_in_bounds_are_inclusive(low, high, good, bad, words):
    for value in good:
        assert int_in("n", value, low, high) == value
    for value in (*bad, True, False, 1.5, "1", None):
        with pytest.raises(ConfigError) as info:
            int_in("n", value, low, high)
        assert str(info.value) == f"n must be {words}, got {value!r}"


def test_int_in_expected():
    with pytest.raises(ConfigError, match=r"^--port must be an integer from 0 to 65535, got 70000$"):
        int_in("--port", 70000, 0, 65535, expected="an integer from 0 to 65535")


@pytest.mark.parametrize(
    "kwargs,good,bad,words",
    [
        ({"low": 0, "high": 1, "high_open": True}, (0, 0.5, 0.999), (1, 1.0, -0.1), "a number in [0, 1)"),
        ({"low": 0, "high": 1, "low_open": True}, (1, 1e-9), (0, 0.0, 1.5), "a number in (0, 1]"),
        ({"low": 0, "high": 5}, (0, 5, 2.5), (-1, 5.01), "a number in [0, 5]"),
        ({"low": 0}, (0, 1e300), (-1e-9,), "a finite number ≥ 0"),
        ({"low": 0.0, "low_open": True}, (1e-300,), (0.0, -1), "a finite number > 0"),
        ({"high": 2.5}, (-3, 2.5), (2.6,), "a finite number ≤ 2.5"),
        ({}, (-1e9, 0, 7.25), (), "a finite number"),
    ],
)
def test_number_in_bounds_and_words(kwargs, good, bad, words):
    for value in good:
        out = number_in("x", value, **kwargs)
        assert out == value and type(out) is float
    for value in (*bad, math.nan, math.inf, -math.inf, True, False, "0.5", None):
        with pytest.raises(ConfigError) as info:
            number_in("x", value, **kwargs)
        assert str(info.value) == f"x must be {words}, got {value!r}"


def test_number_in_finite_false_admits_inf_but_bounds_still_refuse_nan():
    assert number_in("timeout_s", math.inf, 0, low_open=True, finite=False) == math.inf
    assert math.isnan(number_in("forget_bias", math.nan, finite=False))
    with pytest.raises(ConfigError, match=r"^timeout_s must be a number > 0, got nan$"):
        number_in("timeout_s", math.nan, 0, low_open=True, finite=False)


def test_number_in_expected():
    with pytest.raises(ConfigError, match=r"^forget_bias must be a number or None \(torch's init\), got True$"):
        number_in("forget_bias", True, expected="a number or None (torch's init)")


def test_choice():
    assert choice("cell", "gru", ("rnn", "lstm", "gru")) == "gru"
    with pytest.raises(ConfigError) as info:
        choice("speech_ctc: cell", "rnn", ("lstm", "gru"))
    assert str(info.value) == "speech_ctc: cell must be one of 'lstm', 'gru'; got 'rnn'"
    with pytest.raises(ConfigError, match=r"^activation must be 'relu' or 'tanh'; got 'gelu'$"):
        choice("activation", "gelu", ("relu", "tanh"), expected="'relu' or 'tanh'")


def test_messages_are_one_line():
    with pytest.raises(ConfigError) as info:
        positive_int("name", "two\nlines")
    assert "\n" not in str(info.value)


def re_repr(value) -> str:
    import re

    return re.escape(repr(value))
