import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnn.data.splits import Splits, derive_seed, split_indices, split_list
from dnn.errors import ConfigError


def test_split_indices_are_disjoint_covering_sorted_and_deterministic():
    train, valid, test = split_indices(1000, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(valid), len(test)) == (800, 100, 100)
    assert sorted(train + valid + test) == list(range(1000))  # disjoint and covering
    assert all(part == sorted(part) for part in (train, valid, test))
    assert split_indices(1000, (0.8, 0.1, 0.1), seed=3) == (train, valid, test)
    assert split_indices(1000, (0.8, 0.1, 0.1), seed=4)[0] != train
    assert train != list(range(800))  # really shuffled


def test_split_sizes_follow_the_largest_remainder_rule():
    # 7 · (0.5, 0.25, 0.25) = (3.5, 1.75, 1.75): floors (3, 1, 1), the 2 left over go to the largest remainders.
    assert [len(p) for p in split_indices(7, (0.5, 0.25, 0.25))] == [3, 2, 2]
    # 10 · (1/3, 1/3, 1/3): one left over, ties go to the earlier split.
    assert [len(p) for p in split_indices(10, (1 / 3, 1 / 3, 1 / 3))] == [4, 3, 3]
    assert [len(p) for p in split_indices(5, (1.0, 0.0, 0.0))] == [5, 0, 0]
    assert split_indices(0) == ([], [], [])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), a=st.integers(0, 100), b=st.integers(0, 100), c=st.integers(1, 100), seed=st.integers())
def test_split_sizes_add_up_and_stay_within_one_of_the_fraction(n, a, b, c, seed):
    fractions = (a / (a + b + c), b / (a + b + c), c / (a + b + c))
    parts = split_indices(n, fractions, seed)
    assert sorted(sum(parts, [])) == list(range(n))
    for part, f in zip(parts, fractions):
        assert abs(len(part) - f * n) < 1


def test_split_list_keeps_items_and_their_order():
    items = [f"s{i}" for i in range(50)]
    splits = split_list(items, (0.6, 0.2, 0.2), seed=1)
    train, valid, test = splits
    assert sorted(train + valid + test) == sorted(items)
    assert all(part == sorted(part, key=items.index) for part in splits)
    assert [items[i] for i in split_indices(50, (0.6, 0.2, 0.2), 1)[1]] == valid


def test_splits_unpacks_maps_and_names_its_parts():
    splits = Splits([1, 2], [3], [4, 5, 6])
    assert splits.map(len) == Splits(2, 1, 3)
    assert splits.as_dict() == {"train": [1, 2], "valid": [3], "test": [4, 5, 6]}
    train, valid, test = splits
    assert (train, valid, test) == ([1, 2], [3], [4, 5, 6])


@pytest.mark.parametrize(
    "fractions, match",
    [
        ((0.8, 0.1), "three numbers"),
        ((0.8, 0.3, 0.1), "add up to 1"),
        ((1.2, -0.1, -0.1), "valid fraction"),
        ((0.8, "0.1", 0.1), "valid fraction"),
        ("0.8", "three numbers"),
    ],
)
def test_bad_fractions_are_config_errors_naming_them(fractions, match):
    with pytest.raises(ConfigError, match=match) as err:
        split_indices(10, fractions)
    assert "fractions" in str(err.value)


def test_bad_n_and_seed_are_config_errors():
    with pytest.raises(ConfigError, match="n must be"):
        split_indices(-1)
    with pytest.raises(ConfigError, match="seed"):
        split_indices(10, seed="0")


def test_derive_seed_is_stable_and_separates_keys():
    # A golden value: a change of the derivation would silently change every generated data set.
    assert derive_seed(0, "dates", "train") == derive_seed(0, "dates", "train") == 4350925260484096804
    seeds = {derive_seed(s, task, split) for s in (0, 1) for task in ("a", "b") for split in ("train", "test")}
    assert len(seeds) == 8
    assert all(0 <= s < 2**63 for s in seeds)
