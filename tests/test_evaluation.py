from __future__ import annotations

import json
import math

import pytest

from medrag.errors import MedRAGError
from medrag.evaluation import Aggregator, format_table, load_questions, red_flag_scores, retrieval_metrics, unique_docs


def test_unique_docs_keeps_first_occurrence_order():
    assert unique_docs(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_metrics_gold_at_rank_three():
    m = retrieval_metrics(["x", "y", "g", "z"], ["g"])
    assert m["hit@1"] == 0 and m["hit@5"] == 1 and m["hit@10"] == 1
    assert m["mrr"] == pytest.approx(1 / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(4)) / 1)
    assert m["recall@10"] == 1


def test_metrics_two_gold_one_found():
    m = retrieval_metrics(["g1", "x"], ["g1", "g2"])
    assert m["hit@1"] == 1 and m["recall@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_metrics_miss_beyond_ten():
    m = retrieval_metrics([f"d{i}" for i in range(10)] + ["g"], ["g"])
    assert m == {"hit@1": 0, "hit@5": 0, "hit@10": 0, "recall@10": 0, "mrr": 0, "ndcg@10": 0}


def test_aggregator_groups_and_all():
    agg = Aggregator()
    agg.add("MedQuAD", {"hit@1": 1.0})
    agg.add("MedQuAD", {"hit@1": 0.0})
    agg.add("LiveQA", {"hit@1": 1.0, "abstention_rate": None})
    agg.add_count("Unanswerable")
    r = agg.result()
    assert r["MedQuAD"] == {"hit@1": 0.5, "n": 2}
    assert r["LiveQA"] == {"hit@1": 1.0, "n": 1}
    assert r["all"]["hit@1"] == pytest.approx(2 / 3) and r["all"]["n"] == 4
    assert list(r)[-1] == "all"


def test_red_flag_scores():
    s = red_flag_scores([(True, True), (True, False), (False, True), (False, False)])
    assert s == {"red_flag_precision": 0.5, "red_flag_recall": 0.5}
    assert red_flag_scores([(False, False)]) == {"red_flag_precision": None, "red_flag_recall": None}


def test_load_questions_groups_and_errors(tmp_path):
    p = tmp_path / "q.jsonl"
    rows = [
        {"id": "1", "question": "q?", "gold_doc_ids": ["a"], "source": "MedQuAD/GARD"},
        {"id": "2", "question": "q?", "gold_doc_ids": ["b"], "source": "LiveQA-Med-2017"},
        {"id": "3", "question": "help", "red_flag": True, "help": "crisis", "source": "RedFlags"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    qs = load_questions(p)
    assert [q.group for q in qs] == ["MedQuAD", "LiveQA", "RedFlags"]
    assert [q.answerable for q in qs] == [True, True, False]
    assert qs[2].red_flag is True and qs[0].red_flag is None
    assert qs[2].help == "crisis" and qs[0].help is None
    p.write_text('{"id": "x"}\n')
    with pytest.raises(MedRAGError, match=r"q.jsonl:1"):
        load_questions(p)


def test_format_table_has_a_row_per_mode_and_group():
    table = format_table({"bm25": {"MedQuAD": {"hit@1": 0.5, "n": 2}, "all": {"hit@1": 0.5, "n": 2}}})
    assert "| bm25 | MedQuAD | 2 | 0.500 |" in table
    assert table.splitlines()[0].startswith("| mode | source | n | hit@1")


def test_answers_score_red_flags_and_the_help_given():
    from medrag.evaluate import evaluate_answers
    from medrag.evaluation import Question
    from medrag.prompts import CRISIS_MESSAGE, URGENT_CARE_MESSAGE
    from medrag.types import Answer

    replies = {
        "a": Answer("a", CRISIS_MESSAGE, kind="urgent"),  # raised, right help
        "b": Answer("b", URGENT_CARE_MESSAGE, kind="urgent"),  # raised, emergency number instead of poison control
        "c": Answer("c", "An answer.", kind="answer"),  # missed
        "d": Answer("d", URGENT_CARE_MESSAGE, kind="urgent"),  # a near-miss raised
    }

    class Pipeline:
        def answer(self, question, mode=None):
            return replies[question]

    questions = [
        Question("1", "a", [], "RedFlags/emergency", red_flag=True, help="crisis"),
        Question("2", "b", [], "RedFlags/emergency", red_flag=True, help="poison"),
        Question("3", "c", [], "RedFlags/emergency", red_flag=True, help="emergency"),
        Question("4", "d", [], "RedFlags/near-miss", red_flag=False),
    ]
    row = evaluate_answers(Pipeline(), questions, "hybrid")["RedFlags"]
    assert row["red_flag_recall"] == pytest.approx(2 / 3) and row["red_flag_precision"] == pytest.approx(2 / 3)
    assert row["red_flag_help_accuracy"] == 0.5 and row["n"] == 4
