"""A text-generation corpus that ships with Python itself: the help topics of ``pydoc``.

``pydoc_data.topics.topics`` is a dict of about 80 help topics (``"assert"``, ``"class"``, ``"specialnames"``,
…) → their English text, taken from the Python language reference: about 465,000 characters, printable text and
newlines only, part of CPython's standard library (some Linux distributions package it separately). A size
for a character-level language model on a CPU, with the structure of real technical English to learn.

    splits = pydoc_corpus(seed=0)                 # Splits of str: train ≈ 90 %, valid ≈ 5 %, test ≈ 5 %
    char_counts(splits.train).most_common(3)     # [(' ', ...), ('e', ...), ('t', ...)]

The split is by *topic*, never inside one: a topic's text goes whole into one split, so no paragraph is half in
training and half in test (one topic's sentences are strongly alike, so a cut inside one would leak).
``seed`` shuffles the topic order; going through it, a topic goes to the test split while it fits in the test
budget of ``fractions[2]`` × the corpus' characters, else to the validation split while it fits in its budget,
else to training. The held-out splits so come within one small topic of their fractions; the largest topics
(over 5 % of the corpus) always train. Each split's topics are joined in sorted name order, separated by a
blank line.
The text is the one of the running Python version, so the exact sizes differ between versions.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from dnn.checks import int_in
from dnn.data.splits import Splits, check_fractions
from dnn.errors import ConfigError

__all__ = ["char_counts", "pydoc_corpus", "pydoc_text", "pydoc_topic_splits", "pydoc_topics"]

SEPARATOR = "\n\n"


def pydoc_topics() -> dict[str, str]:
    """The pydoc help topics, name → text, in sorted name order."""
    from pydoc_data.topics import topics

    return {name: topics[name] for name in sorted(topics)}


def pydoc_text() -> str:
    """The whole corpus: every topic in sorted name order, separated by a blank line."""
    return SEPARATOR.join(pydoc_topics().values())


def pydoc_topic_splits(seed: int = 0, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> Splits[list[str]]:
    """The topic names of each split, each list sorted (see the module docstring for the rule).

    A split with a fraction > 0 gets at least one topic, one with fraction 0 none; the train fraction must be
    > 0, since training takes every topic that the other two leave.
    """
    fractions = check_fractions(fractions)
    if fractions[0] <= 0:
        raise ConfigError(f"pydoc_corpus: the train fraction must be > 0, got fractions={fractions}")
    int_in("pydoc_corpus: seed", seed)
    topics = pydoc_topics()
    order = list(topics)
    random.Random(seed).shuffle(order)
    total = sum(len(text) for text in topics.values())
    held_out: dict[str, list[str]] = {"test": [], "valid": []}
    budget = {"test": fractions[2] * total, "valid": fractions[1] * total}
    train = []
    for name in order:
        size = len(topics[name])
        for split in ("test", "valid"):
            if size <= budget[split]:
                held_out[split].append(name)
                budget[split] -= size
                break
        else:
            train.append(name)
    for split, fraction in (("test", fractions[2]), ("valid", fractions[1])):
        if fraction > 0 and not held_out[split]:  # a budget smaller than any topic: the smallest one still goes
            smallest = min(train, key=lambda name: (len(topics[name]), name))
            train.remove(smallest)
            held_out[split].append(smallest)
    return Splits(sorted(train), sorted(held_out["valid"]), sorted(held_out["test"]))


def pydoc_corpus(seed: int = 0, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> Splits[str]:
    """The pydoc corpus split by topic into train / valid / test text; deterministic for a given seed."""
    topics = pydoc_topics()
    return pydoc_topic_splits(seed, fractions).map(lambda names: SEPARATOR.join(topics[n] for n in names))


def char_counts(text: str) -> Counter[str]:
    """How often each character occurs in ``text`` (a :class:`collections.Counter`; ``.most_common()`` sorts)."""
    return Counter(text)
