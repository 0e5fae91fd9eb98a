"""Every experiment declares its protocol beside its paper's — data, model, budget, optimiser, seeds, hardware
parallelism and success criterion, each difference named — and its results.md renders it as a table."""

import dataclasses

import pytest

from dnn.experiments import list_experiments
from dnn.experiments.base import Check, ExperimentResult
from dnn.experiments.protocol import ASPECTS, Protocol, Row, fingerprint, markdown, missing

NAMES = [spec.name for spec in list_experiments()]


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_declares_a_complete_protocol(name):
    spec = next(s for s in list_experiments() if s.name == name)
    assert isinstance(spec.protocol, Protocol)
    assert missing(spec.protocol) == []
    for aspect in ASPECTS:
        row = getattr(spec.protocol, aspect)
        assert row.paper.strip() and row.ours.strip() and row.difference.strip(), aspect
    # a difference that could decide the verdict and is still there is the one the README names
    if any(getattr(spec.protocol, a).decisive for a in ASPECTS):
        assert spec.protocol.remaining != "none"


def test_make_experiments_is_planned_under_three_hours_on_this_machine():
    estimates = {spec.name: spec.estimate_s for spec in list_experiments()}
    assert all(seconds > 0 for seconds in estimates.values()), estimates
    assert sum(estimates.values()) < 3 * 3600


def protocol(**changes):
    row = Row("the paper's", "ours", "none")
    base = Protocol("A & B 2020", *(row for _ in ASPECTS), remaining="none")
    return dataclasses.replace(base, **changes)


def test_an_incomplete_protocol_is_named_field_by_field():
    assert missing(None) == ["no protocol declared"]
    assert missing(protocol()) == []
    gaps = missing(protocol(paper=" ", seeds=Row("one run", "", "none"), budget=Row("a", "b", "none", decisive=True),
                            remaining="two\nlines"))  # fmt: skip
    assert gaps == ["paper is empty", "budget is marked decisive but names no difference", "seeds.ours is empty",
                    "remaining is more than one line"]  # fmt: skip


def test_the_table_names_every_aspect_and_marks_decisive_differences():
    text = markdown(protocol(parallelism=Row("8 GPUs", "one thread", "no parallel | hardware", decisive=True),
                             remaining="one thread"))  # fmt: skip
    lines = text.splitlines()
    assert "| aspect | paper | ours | difference |" in lines
    for title in ASPECTS.values():
        assert any(line.startswith(f"| {title} |") for line in lines)
    assert "| hardware parallelism | 8 GPUs | one thread | **no parallel \\| hardware** |" in lines
    assert "Remaining difference from the paper: one thread." in lines


def test_the_fingerprint_follows_the_content():
    assert fingerprint(protocol()) == fingerprint(protocol())
    assert fingerprint(protocol()) != fingerprint(protocol(criterion=Row("x", "every seed", "none")))
    assert len(fingerprint(protocol())) == 12


def test_results_md_carries_the_protocol_table_and_its_fingerprint():
    result = ExperimentResult("x", "a claim", False, "the setup", [], [Check("holds", True, "yes")], ["A 2020"],
                              protocol=protocol())  # fmt: skip
    text = result.markdown()
    assert text.index("## Setup") < text.index("## Protocol: the paper's and ours") < text.index("## Measured")
    assert f"Protocol fingerprint: `{fingerprint(protocol())}`." in text
