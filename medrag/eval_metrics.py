"""Retrieval and answer metrics, grouped by question source, and the table that prints them.

Relevance is judged at document level: a ranked list of chunks becomes a ranked list of
distinct document ids (first occurrence wins), and a question is answered by any chunk of any of
its `gold_doc_ids`. Metrics are binary-relevance: hit@k, recall@10, MRR (over the first 10
documents) and nDCG@10. Questions are grouped by the collection in their `source` field
("MedQuAD/GARD" -> "MedQuAD", "LiveQA-Med-2017" -> "LiveQA"); "all" is the whole file.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medrag.documents import jsonl_lines
from medrag.errors import MedRAGError

RETRIEVAL_METRICS = ("hit@1", "hit@5", "hit@10", "recall@10", "mrr", "ndcg@10")
ANSWER_METRICS = (
    "citation_precision",
    "support_rate",
    "abstention_rate",
    "red_flag_precision",
    "red_flag_recall",
    "red_flag_help_accuracy",
    "red_flags_raised",
    "key_fact_recall",  # answer-usefulness items with key facts (medrag.usefulness)
    "narrower_as_general",  # share of answers that state a narrower source's fact as general
    "says_missing",  # on items whose fact the corpus lacks: the fixed "do not say" sentence, no decline
)


@dataclass
class Question:
    id: str
    question: str
    gold_doc_ids: list[str]
    source: str
    red_flag: bool | None = None  # None: not a red-flag-labelled question
    help: str | None = None  # crisis | poison | emergency: the help a labelled emergency needs
    topic: str | None = None  # answer-usefulness items: what the question is about, in plain words
    key_facts: list[list[str]] | None = None  # answer-usefulness items: facts a good answer contains
    missing: str | None = None  # answer-usefulness items: what the corpus does not say

    @property
    def usefulness(self) -> bool:
        """An answer-usefulness item (data/eval/answers.jsonl), judged by key facts or by what is missing."""
        return self.key_facts is not None

    @property
    def group(self) -> str:
        return re.split(r"[/-]", self.source or "unknown", maxsplit=1)[0] or "unknown"

    @property
    def answerable(self) -> bool:
        return bool(self.gold_doc_ids)


def load_questions(path: str | Path) -> list[Question]:
    """Read a questions jsonl (`id, question, gold_doc_ids, source`; optional `red_flag` and `help`, or
    `topic, key_facts, missing` for answer-usefulness items)."""
    out = []
    for n, line in jsonl_lines(path, "questions file", "pass a questions jsonl (id, question, gold_doc_ids, source)"):
        try:
            d = json.loads(line)
            q = Question(
                id=str(d.get("id", n)),
                question=d["question"],
                gold_doc_ids=list(d.get("gold_doc_ids") or []),
                source=d.get("source", "unknown"),
                red_flag=None if d.get("red_flag") is None else bool(d["red_flag"]),
                help=d.get("help"),
                topic=d.get("topic"),
                key_facts=None if d.get("key_facts") is None else [list(f) for f in d["key_facts"]],
                missing=d.get("missing"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise MedRAGError(f"{path}:{n}: not a question line ({e}): expected id, question, gold_doc_ids") from e
        out.append(q)
    return out


def unique_docs(doc_ids: Iterable[str]) -> list[str]:
    """Chunk-level doc ids in rank order -> distinct documents in rank order."""
    return list(dict.fromkeys(doc_ids))


def retrieval_metrics(ranked_docs: Sequence[str], gold: Iterable[str]) -> dict[str, float]:
    gold = set(gold)
    top = list(ranked_docs[:10])
    rel = [d in gold for d in top]
    first = next((i for i, r in enumerate(rel) if r), None)
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(rel) if r)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gold), 10)))
    return {
        "hit@1": float(any(rel[:1])),
        "hit@5": float(any(rel[:5])),
        "hit@10": float(any(rel)),
        "recall@10": len(gold & set(top)) / len(gold) if gold else 0.0,
        "mrr": 1 / (first + 1) if first is not None else 0.0,
        "ndcg@10": dcg / idcg if idcg else 0.0,
    }


class Aggregator:
    """Averages per-question metric values by question group and over "all".

    A metric is averaged over the questions that reported it, so answer metrics that only apply
    to some questions (abstention on unanswerable ones) get their own denominators.
    """

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._n: dict[str, int] = defaultdict(int)

    def add(self, group: str, values: dict[str, float]) -> None:
        for g in (group, "all"):
            self._n[g] += 1
            for k, v in values.items():
                if v is not None:
                    self._sums[g][k] += v
                    self._counts[g][k] += 1

    def add_count(self, group: str) -> None:
        for g in (group, "all"):
            self._n[g] += 1

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for g in sorted(self._n, key=lambda g: (g == "all", g)):
            row = {k: self._sums[g][k] / c for k, c in self._counts[g].items() if c}
            row["n"] = self._n[g]
            out[g] = row
        return out


def red_flag_scores(pairs: Iterable[tuple[bool, bool]]) -> dict[str, float | None]:
    """(expected, raised) pairs -> precision and recall of the red-flag detector."""
    tp = fp = fn = 0
    for expected, raised in pairs:
        tp += expected and raised
        fp += raised and not expected
        fn += expected and not raised
    return {
        "red_flag_precision": tp / (tp + fp) if tp + fp else None,
        "red_flag_recall": tp / (tp + fn) if tp + fn else None,
    }


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """{mode: {group: {metric: value, "n": n}}} -> a Markdown table, one row per mode and group."""
    metrics = [
        m for m in (*RETRIEVAL_METRICS, *ANSWER_METRICS) if any(m in r for g in results.values() for r in g.values())
    ]
    lines = ["| mode | source | n | " + " | ".join(metrics) + " |", "|" + " --- |" * (len(metrics) + 3)]
    for mode, groups in results.items():
        for group, row in groups.items():
            cells = [f"{row[m]:.3f}" if row.get(m) is not None and m in row else "" for m in metrics]
            lines.append(f"| {mode} | {group} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
