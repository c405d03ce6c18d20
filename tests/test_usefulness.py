"""The answer-usefulness judges (medrag.usefulness), the evaluation rows they feed, and the dev set's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrag.eval_metrics import ANSWER_METRICS, format_table, load_questions
from medrag.evaluate import usefulness_row
from medrag.question_kinds import KINDS
from medrag.types import Answer, Chunk, Hit
from medrag.usefulness import key_fact_recall, says_what_is_missing, states_narrower_as_general

ANSWERS = Path(__file__).resolve().parents[1] / "data" / "eval" / "answers.jsonl"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus.jsonl"
FTD = "CHMP2B-related frontotemporal dementia (inheritance)"
SENTENCE = "This condition is inherited in an autosomal dominant pattern."


def answer(text: str, *titles: str, kind: str = "answer", question: str = "Is dementia inherited?") -> Answer:
    hits = [Hit(Chunk(f"d{i}#0", f"d{i}", t, SENTENCE), 1.0) for i, t in enumerate(titles)]
    return Answer(question, text, sources=hits, kind=kind, declined=kind != "answer")


def test_key_fact_recall_counts_any_alternative_case_and_space_insensitive():
    facts = [["5 to 10 days", "five to ten days"], ["Autosomal  dominant"], ["not contagious"]]
    assert key_fact_recall("It lasts Five to ten days [1]. It is autosomal\ndominant. [2]", facts) == pytest.approx(
        2 / 3
    )
    assert key_fact_recall("anything", []) is None
    assert key_fact_recall("lasts 5 to 10 [1] days", [["5 to 10 days"]]) == 1.0  # markers do not split a fact


def test_narrower_as_general_needs_a_topical_subject_a_narrower_source_and_no_name():
    assert states_narrower_as_general(answer(f"{SENTENCE} [1]", FTD), "dementia")
    named = f"For CHMP2B-related frontotemporal dementia: {SENTENCE} [1]"
    assert not states_narrower_as_general(answer(named, FTD), "dementia")
    assert not states_narrower_as_general(answer(f"{SENTENCE} [1]", "Dementia (inheritance)"), "dementia")
    assert not states_narrower_as_general(answer("Dementia affects memory. [1]", FTD), "dementia")
    study = answer("It was safe in this trial. [1]", "PMID 42 (2001)", question="Is exercise safe in pregnancy?")
    assert states_narrower_as_general(study, "exercise during pregnancy")
    study.text = "In one study (PMID 42): It was safe in this trial. [1]"
    assert not states_narrower_as_general(study, "exercise during pregnancy")


def test_says_what_is_missing_is_the_fixed_sentence_and_not_a_decline():
    text = "The sources describe Flu but do not say how long it lasts. Flu is an infection. [1]"
    assert says_what_is_missing(answer(text, "Flu (information)"))
    assert not says_what_is_missing(answer(text, "Flu (information)", kind="declined"))
    assert not says_what_is_missing(answer("Flu is an infection. [1]", "Flu (information)"))


def test_usefulness_rows_and_table(tmp_path):
    rows = [
        {"id": "a", "question": "How long does X last?", "kind": "duration", "topic": "x", "gold_doc_ids": ["d0"],
         "key_facts": [["2 weeks"]], "missing": None, "source": "Answers/answerable"},
        {"id": "b", "question": "Is X contagious?", "kind": "contagious", "topic": "x", "gold_doc_ids": ["d0"],
         "key_facts": [], "missing": "whether x spreads", "source": "Answers/missing"},
    ]  # fmt: skip
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = load_questions(path)
    assert a.usefulness and b.usefulness and a.group == b.group == "Answers"
    assert a.key_facts == [["2 weeks"]] and a.missing is None and b.missing == "whether x spreads" and a.topic == "x"
    assert usefulness_row(a, answer("It lasts 2 weeks. [1]", "X (information)")) == {
        "key_fact_recall": 1.0,
        "narrower_as_general": 0.0,
    }
    declined = answer("I cannot answer this question from the available sources.", "X (information)", kind="declined")
    assert usefulness_row(b, declined) == {"says_missing": 0.0}
    for m in ("key_fact_recall", "narrower_as_general", "says_missing"):
        assert m in ANSWER_METRICS
    table = format_table({"hybrid": {"Answers": {"key_fact_recall": 0.5, "says_missing": 1.0, "n": 2}}})
    assert "| key_fact_recall | says_missing |" in table and "| hybrid | Answers | 2 | 0.500 | 1.000 |" in table


def test_the_dev_set_has_the_schema_and_sizes_the_issue_asks_for():
    items = [json.loads(line) for line in ANSWERS.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = {k.name for k in KINDS}
    ids = [d["id"] for d in items]
    assert len(ids) == len(set(ids)) and len({d["question"].lower() for d in items}) == len(items)
    answerable = [d for d in items if d["source"] == "Answers/answerable"]
    missing = [d for d in items if d["source"] == "Answers/missing"]
    assert len(answerable) >= 150 and len(missing) >= 30 and len(answerable) + len(missing) == len(items)
    for d in items:
        assert d["kind"] in kinds and d["topic"] and d["gold_doc_ids"], d["id"]
    for d in answerable:
        assert d["missing"] is None and 1 <= len(d["key_facts"]) <= 3, d["id"]
        assert all(fact and all(1 <= len(alt.split()) <= 6 for alt in fact) for fact in d["key_facts"]), d["id"]
    for d in missing:
        assert d["key_facts"] == [] and d["missing"], d["id"]


@pytest.mark.skipif(not CORPUS.exists(), reason="needs the shared corpus (../shared/data/corpus.jsonl)")
def test_key_facts_are_in_their_gold_passages():
    """Extra check: every key fact is said, in one of its phrasings, by the gold documents it came from."""
    items = [json.loads(line) for line in ANSWERS.read_text(encoding="utf-8").splitlines() if line.strip()]
    wanted = {g for d in items for g in d["gold_doc_ids"]}
    docs = {}
    with CORPUS.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["id"] in wanted:
                docs[d["id"]] = " ".join(d["text"].lower().split())
    for d in items:
        assert set(d["gold_doc_ids"]) <= set(docs), d["id"]
        text = " ".join(docs[g] for g in d["gold_doc_ids"])
        for fact in d["key_facts"]:
            assert any(" ".join(alt.lower().split()) in text for alt in fact), (d["id"], fact)
