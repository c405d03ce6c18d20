"""Does an answer answer? Rule-based judges for the answer-usefulness evaluation (data/eval/answers.jsonl).

- `key_fact_recall(text, key_facts)`: the share of key facts present; a fact is a list of short
  alternative phrasings, present when any one is in the answer (case-insensitive, whitespace
  collapsed).
- `states_narrower_as_general(answer, topic)`: True when a quoted sentence whose subject is its
  source's topic ("This condition", "It") comes from a source narrower than what was asked,
  without that topic named in the sentence (medrag.topics decides "narrower" and "topical").
- `says_what_is_missing(answer)`: the fixed "The sources describe ... but do not say ..." sentence
  is there, and the answer is not a decline.

Shortcuts on purpose: string matching, not a model of meaning. A key fact said in other words
counts as missing, so recall is a floor; the narrower-topic rule only sees the subjects it knows.
"""

from __future__ import annotations

from collections.abc import Sequence

from medrag.citations import MARKER, answer_sentences
from medrag.prompts import INTRO
from medrag.prompts import says_what_is_missing as _says_missing
from medrag.topics import names_topic, narrower_topic, source_topic, study_id, topical_subject
from medrag.types import Answer


def _collapse(text: str) -> str:
    return " ".join(text.lower().split())


def key_fact_recall(text: str, key_facts: Sequence[Sequence[str]]) -> float | None:
    """Share of `key_facts` found in `text`; None when there are none to find."""
    if not key_facts:
        return None
    have = _collapse(MARKER.sub("", text))
    return sum(any(_collapse(alt) in have for alt in fact) for fact in key_facts) / len(key_facts)


def states_narrower_as_general(answer: Answer, topic: str) -> bool:
    """Does a sentence state a narrower source's fact about its own topic as if it held for `topic`?"""
    for sentence, numbers in answer_sentences(answer.text):
        claim = MARKER.sub("", sentence).strip()
        quote = INTRO.sub("", claim, count=1)
        if not topical_subject(quote):
            continue
        for n in numbers:
            if not 1 <= n <= len(answer.sources):
                continue
            title = answer.sources[n - 1].chunk.title
            if narrower_topic(f"{answer.question} {topic}", title) and not _named(claim, title):
                return True
    return False


def _named(sentence: str, title: str) -> bool:
    sid = study_id(title)
    return f"PMID {sid}" in sentence if sid else names_topic(sentence, source_topic(title))


def says_what_is_missing(answer: Answer) -> bool:
    """The fixed sentence on what the sources lack is there, and the answer is not a decline."""
    return answer.kind == "answer" and _says_missing(answer.text)
