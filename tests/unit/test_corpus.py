from collections import Counter
from pydoc_data.topics import topics

import pytest

from dnn.data.corpus import char_counts, pydoc_corpus, pydoc_text, pydoc_topic_splits, pydoc_topics
from dnn.errors import ConfigError

TOTAL = sum(len(text) for text in topics.values())


def test_pydoc_text_is_every_topic_in_sorted_order_and_pure_text():
    text = pydoc_text()
    assert list(pydoc_topics()) == sorted(topics)
    assert len(text) == TOTAL + 2 * (len(topics) - 1) and TOTAL > 300_000
    assert text.startswith(topics[min(topics)]) and text.endswith(topics[max(topics)])
    assert all(ch == "\n" or ch.isprintable() for ch in set(text))  # no tabs, form feeds or control characters
    assert "\x00" not in text and "\t" not in text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pydoc_splits_partition_the_topics_and_meet_the_fractions(seed):
    names = pydoc_topic_splits(seed)
    assert sorted(names.train + names.valid + names.test) == sorted(topics)  # covering ...
    assert len(set(names.train) | set(names.valid) | set(names.test)) == len(topics)  # ... and disjoint
    corpus = pydoc_corpus(seed)
    for part, text in zip(names, corpus):
        assert part == sorted(part)
        assert text == "\n\n".join(topics[n] for n in part)
    for part, fraction in ((names.valid, 0.05), (names.test, 0.05)):
        chars = sum(len(topics[n]) for n in part)
        assert 0.9 * fraction * TOTAL <= chars <= fraction * TOTAL  # fills its budget, never exceeds it
    assert len(corpus.train) > 0.85 * TOTAL


def test_pydoc_corpus_is_deterministic_by_seed():
    assert pydoc_corpus(3) == pydoc_corpus(3)
    assert pydoc_corpus(3).test != pydoc_corpus(4).test


def test_pydoc_corpus_fraction_edge_cases():
    no_test = pydoc_corpus(0, (0.5, 0.5, 0.0))
    assert no_test.test == "" and abs(len(no_test.valid) - 0.5 * TOTAL) < 0.2 * TOTAL
    tiny = pydoc_topic_splits(0, (0.9998, 0.0001, 0.0001))  # budgets smaller than any topic: one topic each
    smallest = sorted(topics, key=lambda n: (len(topics[n]), n))[:2]
    assert len(tiny.valid) == len(tiny.test) == 1 and sorted(tiny.valid + tiny.test) == sorted(smallest)
    with pytest.raises(ConfigError, match="train fraction"):
        pydoc_corpus(0, (0.0, 0.5, 0.5))
    with pytest.raises(ConfigError, match="fractions"):
        pydoc_corpus(0, (0.9, 0.1, 0.1))
    with pytest.raises(ConfigError, match="seed"):
        pydoc_corpus("0")


def test_char_counts_counts_every_character():
    counts = char_counts("hello world")
    assert counts == Counter({"l": 3, "o": 2, "h": 1, "e": 1, " ": 1, "w": 1, "r": 1, "d": 1})
    text = pydoc_text()
    counts = char_counts(text)
    assert sum(counts.values()) == len(text) and counts.most_common(1)[0][0] == " "
