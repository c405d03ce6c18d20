"""fit_sources: sources kept in rank order within a token budget, never cut mid-sentence."""

from __future__ import annotations

from medrag.prompts import SOURCE_TEMPLATE, Passage, fit_sources


def words(text: str) -> int:
    return len(text.split())


def cost(text: str) -> int:
    return words(SOURCE_TEMPLATE.format(number=1, title="T", text=text)) + 2


def test_an_over_budget_source_keeps_whole_sentences_as_the_chunker_splits_them():
    source = Passage("T", "Ask Dr. Lee about the dose. Take it with food. Keep it dry.")
    assert fit_sources([source], words, cost("Ask Dr. Lee about the dose. Take it with food.")) == [
        Passage("T", "Ask Dr. Lee about the dose. Take it with food.")
    ]
    assert fit_sources([source], words, cost("Ask Dr.")) == []  # "Dr." ends no sentence: nothing whole fits


def test_lower_ranked_sources_go_first():
    a, b = Passage("T", "one two three."), Passage("T", "four five six.")
    assert fit_sources([a, b], words, cost(a.text) + cost(b.text)) == [a, b]
    assert fit_sources([a, b], words, cost(a.text) + cost(b.text) - 1) == [a]
