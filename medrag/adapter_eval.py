"""Does the adapter help? The app's own pipeline with the base model, then with base + adapter,
on the same retrieved sources.

Each system is an `HFGenerator` built as the app builds it (the second with `MEDRAG_ADAPTER`
set) inside a `RAGPipeline` that shares one embedder, index and retriever; retrieval runs once
per question and both systems answer from exactly those hits (`SameHits`). The systems run one
after the other, so a T4 holds one 7B model at a time.

- Grounding (questions with gold documents, e.g. eval_dev.jsonl): citation precision, share of
  sentences supported, share of claim sentences that end in a valid [n] (`cited_format`), false
  abstention; through `medrag.evaluate.evaluate_answers`, so they mean what they mean elsewhere.
- Unanswerable questions (data/eval/unanswerable.jsonl): the share declined, by the evidence gate
  or by the model (`unanswerable_declined`).
- PubMedQA yes/no/maybe accuracy: the generator's prompt with the abstract as one source and
  "Begin your answer with yes, no or maybe."; the first of those words in the greedy output is
  the prediction, an output without one a parse failure (counted, and scored wrong).

`helps` compares the two systems metric by metric: better on at least one and worse on none, by
more than `tolerance`. Shortcuts on purpose: greedy decoding, no significance test, and the
question lists are evenly spaced samples of the files when a limit is given.
"""

from __future__ import annotations

import gc
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrag.citations import MARKER, answer_sentences
from medrag.config import PipelineConfig
from medrag.documents import jsonl_lines
from medrag.errors import DocumentError
from medrag.prompts import CANNOT_ANSWER_PHRASE, Passage

DECISIONS = ("yes", "no", "maybe")
DECISION_INSTRUCTION = "Begin your answer with yes, no or maybe."  # as PubMedQA training answers begin
HIGHER_IS_BETTER = ("citation_precision", "support_rate", "cited_format", "unanswerable_declined", "pubmedqa_accuracy")
LOWER_IS_BETTER = ("false_abstention",)
_DECISION = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)


@dataclass(frozen=True)
class PubMedQAItem:
    id: str
    question: str
    sources: list[Passage]
    decision: str  # yes | no | maybe


def load_pubmedqa(path: str | Path, limit: int | None = None) -> list[PubMedQAItem]:
    """Read `id, question, contexts, labels, final_decision` lines; the abstract becomes one source."""
    out = []
    for n, line in jsonl_lines(path, "PubMedQA file", "pass the path of eval_pubmedqa_dev.jsonl", limit):
        try:
            d = json.loads(line)
            decision = d["final_decision"].strip().lower()
            labels = d.get("labels") or [""] * len(d["contexts"])
            text = "\n".join(
                f"{label.capitalize()}: {ctx}" if label else ctx
                for label, ctx in zip(labels, d["contexts"], strict=True)
            )
            pmid = str(d.get("id", n)).removeprefix("pqa:")
            item = PubMedQAItem(str(d.get("id", n)), d["question"], [Passage(f"PMID {pmid}", text)], decision)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
            raise DocumentError(
                f"{path}:{n}: not a PubMedQA line ({e}): expected question, contexts, labels, final_decision"
            ) from None
        if decision not in DECISIONS:
            raise DocumentError(f"{path}:{n}: final_decision must be yes, no or maybe, not {decision!r}")
        out.append(item)
    return out


def parse_decision(text: str) -> str | None:
    """The first yes/no/maybe word of a model's output, lower-cased; None when there is none."""
    m = _DECISION.search(text)
    return m.group(1).lower() if m else None


def score_decisions(items: Sequence[PubMedQAItem], outputs: Sequence[str]) -> dict[str, Any]:
    predicted = [parse_decision(o) for o in outputs]
    correct = sum(p == it.decision for p, it in zip(predicted, items, strict=True))
    return {
        "accuracy": correct / len(items) if items else 0.0,
        "correct": correct,
        "n": len(items),
        "parse_failures": sum(p is None for p in predicted),
        "predicted": dict(Counter(p or "none" for p in predicted)),
    }


def cited_format(text: str, n_sources: int) -> tuple[int, int]:
    """(claim sentences that end in a valid [n], claim sentences) of an answer; the cannot-answer phrase is no claim.

    A claim is a sentence of 3+ words, as `medrag.citations` counts them; valid means every
    number it cites is between 1 and `n_sources`.
    """
    cited = claims = 0
    for sentence, numbers in answer_sentences(text):
        words = MARKER.sub("", sentence).split()
        if len(words) < 3 or CANNOT_ANSWER_PHRASE.rstrip(".") in sentence:
            continue
        claims += 1
        ends_cited = re.search(r"\]\W*$", sentence) is not None and MARKER.search(sentence) is not None
        cited += ends_cited and bool(numbers) and all(1 <= n <= n_sources for n in numbers)
    return cited, claims


def cited_format_share(answers: Sequence[tuple[str, int]]) -> float | None:
    """Over (answer text, number of sources) pairs: the share of claim sentences ending in a valid [n]."""
    counts = [cited_format(text, n) for text, n in answers]
    claims = sum(c for _, c in counts)
    return sum(k for k, _ in counts) / claims if claims else None


class SameHits:
    """A retriever that searches once per (query, k, mode) and hands every later caller the same hits."""

    def __init__(self, retriever):
        self.retriever, self.index, self._hits = retriever, retriever.index, {}

    def search(self, query: str, k: int | None = None, mode: str | None = None):
        key = (query, k, mode)
        if key not in self._hits:
            self._hits[key] = self.retriever.search(query, k=k, mode=mode)
        return self._hits[key]


class _Recorder:
    """A pipeline that keeps each final answer (the cited-format share is read from the texts)."""

    def __init__(self, pipeline):
        self.pipeline, self.answers = pipeline, []

    def answer(self, question: str, **kw):
        ans = self.pipeline.answer(question, **kw)
        self.answers.append(ans)
        return ans


def spread(items: list, limit: int | None) -> list:
    """At most `limit` items evenly spaced over the list (files are often grouped by source)."""
    if limit is None or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def evaluate_adapter(
    base_model: str,
    adapter: str,
    *,
    config: PipelineConfig | None = None,
    embedder=None,
    index=None,
    questions_files: Sequence[str | Path] = (),
    questions_limit: int | None = None,
    pubmedqa_file: str | Path | None = None,
    pubmedqa_limit: int | None = None,
    adapter_revision: str = "main",
    load_in_4bit: bool = True,  # as the Space serves it: the figures describe what users get
    max_new_tokens: int = 200,  # a few cited sentences; the app allows more, the verdict does not need them
    decision_tokens: int = 8,  # the verdict is the first word; a few more catch "The answer is yes"
    mode: str = "hybrid",
    tolerance: float = 0.02,  # differences below this are noise on a few dozen questions
) -> dict[str, Any]:
    """Base vs base+adapter through the app's pipeline; `{"base": {...}, "adapter": {...}, "helps": bool, ...}`.

    `config` names the index (MEDRAG_INDEX_REPO, MEDRAG_INDEX_DIR or the sample corpus) unless
    `index` is given; `questions_files` are question jsonl files (with gold_doc_ids, or none for
    unanswerable ones), each cut to `questions_limit`; red-flag questions are skipped.
    """
    from medrag.evaluation import load_questions
    from medrag.hf_generator import HFGenerator
    from medrag.pipeline import RAGPipeline

    config = (config or PipelineConfig.from_env()).replace(
        base_model=base_model, load_in_4bit=load_in_4bit, max_new_tokens=max_new_tokens, temperature=0.0
    )
    questions = []
    for path in questions_files:
        questions += spread([q for q in load_questions(path) if q.red_flag is None], questions_limit)
    items = load_pubmedqa(pubmedqa_file, pubmedqa_limit) if pubmedqa_file else []
    if not questions and not items:
        raise DocumentError("Nothing to evaluate on: give questions_files (eval_dev.jsonl, ...) or a pubmedqa_file")
    shared = RAGPipeline(config, embedder=embedder, index=index)
    retriever = SameHits(shared.retriever) if questions else None
    result: dict[str, Any] = {"base": {}, "adapter": {}, "details": {}}
    for name, adapter_id in (("base", None), ("adapter", adapter)):
        gen = HFGenerator.from_config(config.replace(adapter=adapter_id, adapter_revision=adapter_revision))
        gen.load()
        details: dict[str, Any] = {"versions": gen.versions()}
        if questions:
            pipeline = RAGPipeline(
                config, embedder=shared.embedder, index=shared.index, retriever=retriever, generator=gen
            )
            metrics, details["grounding"] = _grounding(pipeline, questions, mode)
            result[name].update(metrics)
        if items:
            outputs = [
                gen.generate(
                    f"{it.question.strip()} {DECISION_INSTRUCTION}",
                    it.sources,
                    max_new_tokens=decision_tokens,
                    temperature=0.0,
                )
                for it in items
            ]
            scored = score_decisions(items, outputs)
            result[name]["pubmedqa_accuracy"] = scored["accuracy"]
            details["pubmedqa"] = {**scored, "outputs": outputs}
        result["details"][name] = details
        del gen
        _free_gpu()
    result["helps"] = helps(result["base"], result["adapter"], tolerance)
    result["settings"] = {
        "base_model": base_model,
        "adapter": str(adapter),
        "adapter_revision": adapter_revision,
        "load_in_4bit": load_in_4bit,
        "max_new_tokens": max_new_tokens,
        "questions": len(questions),
        "pubmedqa": len(items),
        "mode": mode,
        "tolerance": tolerance,
    }
    return result


def _grounding(pipeline, questions, mode: str) -> tuple[dict[str, float], dict[str, Any]]:
    from medrag.evaluate import evaluate_answers

    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    if answerable:
        recorder = _Recorder(pipeline)
        scores = evaluate_answers(recorder, answerable, mode)["all"]
        for key, name in (("citation_precision", "citation_precision"), ("support_rate", "support_rate")):
            if scores.get(key) is not None:
                metrics[name] = scores[key]
        metrics["false_abstention"] = scores.get("abstention_rate", 0.0)
        generated = [(a.text, len(a.sources)) for a in recorder.answers if a.kind == "answer"]
        share = cited_format_share(generated)
        if share is not None:
            metrics["cited_format"] = share
        details["answers"] = [
            {"question": a.question, "text": a.text, "kind": a.kind, "sources": [h.chunk.doc_id for h in a.sources]}
            for a in recorder.answers
        ]
    if unanswerable:
        scores = evaluate_answers(pipeline, unanswerable, mode)["all"]
        metrics["unanswerable_declined"] = scores.get("abstention_rate", 0.0)
    details["n"] = {"answerable": len(answerable), "unanswerable": len(unanswerable)}
    return metrics, details


def helps(base: dict[str, float], adapter: dict[str, float], tolerance: float = 0.02) -> bool:
    """True when the adapter is better on at least one metric and worse on none, by more than `tolerance`."""
    better = worse = 0
    for metric in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
        if base.get(metric) is None or adapter.get(metric) is None:
            continue
        delta = adapter[metric] - base[metric]
        if metric in LOWER_IS_BETTER:
            delta = -delta
        better += delta > tolerance
        worse += delta < -tolerance
    return better > 0 and worse == 0


def _free_gpu() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def format_eval_table(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table (base, adapter, change), with the verdict below it."""
    lines = ["| metric | base | adapter | change |", "| --- | ---: | ---: | ---: |"]
    for metric, base in result["base"].items():
        adapter = result["adapter"].get(metric)
        if adapter is None:
            continue
        lines.append(f"| {metric} | {base:.3f} | {adapter:.3f} | {adapter - base:+.3f} |")
    s = result.get("settings", {})
    lines.append(
        f"\n{s.get('questions', 0)} questions, {s.get('pubmedqa', 0)} PubMedQA questions. "
        f"Adapter helps: {'yes' if result['helps'] else 'no'}"
    )
    return "\n".join(lines)


def write_evaluation(result: dict[str, Any], folder: str | Path) -> Path:
    """Save the evaluation as `evaluation.json` beside the adapter it describes."""
    path = Path(folder) / "evaluation.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return path


__all__ = [
    "SameHits",
    "cited_format",
    "cited_format_share",
    "evaluate_adapter",
    "format_eval_table",
    "helps",
    "load_pubmedqa",
    "parse_decision",
    "score_decisions",
    "write_evaluation",
]
