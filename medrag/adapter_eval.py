"""Does the adapter help? The base model and base+adapter side by side on the same questions.

- PubMedQA yes/no/maybe accuracy: the grounded prompt (`build_prompt`) with the abstract's
  sections as one numbered source, and an instruction to begin with yes, no or maybe; the first
  of those words in the greedy output is the prediction, and an output without one is a parse
  failure (counted, and scored wrong).
- Grounding on MedQuAD questions through the full pipeline (citation precision, support rate,
  abstention): `evaluate_grounding` takes one ready pipeline per system and reuses
  `medrag.evaluate.evaluate_answers`, so these figures mean what they mean everywhere else.

Shortcuts on purpose: one copy of the base model serves both systems (`disable_adapter()` for
the base), decoding is greedy with a few new tokens (the verdict is the first word), and the
verdict `helps` is a plain comparison of the measured figures, with no significance test.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrag.config import PipelineConfig
from medrag.documents import jsonl_lines
from medrag.errors import DocumentError, missing_dependency
from medrag.prompts import Passage, build_prompt

DECISIONS = ("yes", "no", "maybe")
DECISION_INSTRUCTION = "Begin your answer with yes, no or maybe."  # as PubMedQA training answers begin
GROUNDING_METRICS = ("citation_precision", "support_rate", "abstention_rate")  # from medrag.evaluate
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


def decision_prompt(tokenizer: Any, item: PubMedQAItem, context_tokens: int | None = None) -> str:
    return build_prompt(
        tokenizer, f"{item.question.strip()} {DECISION_INSTRUCTION}", item.sources, context_tokens=context_tokens
    )


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


def generate_batch(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations, left-padded batches; prompts tokenised as the generator does (no extra <s>)."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(
                list(prompts[i : i + batch_size]), add_special_tokens=False, padding=True, return_tensors="pt"
            )
            enc = enc.to(model.device)
            with torch.inference_mode():
                ids = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out


def evaluate_adapter(
    base_model: str,
    adapter_dir: str,
    pubmedqa_file: str | Path,
    limit: int | None = None,
    *,
    adapter_revision: str = "main",
    load_in_4bit: bool = True,  # as the Space serves it: the figures describe what users get
    compute_dtype: str = "auto",
    context_tokens: int | None = PipelineConfig.context_tokens,  # the app's source budget
    max_new_tokens: int = 8,  # the verdict is the first word; a few more catch "The answer is yes"
    batch_size: int = 8,  # 8 prompts of ~1k tokens: ~1 GB of KV cache on a 7B Mistral, fine on a T4
    pipelines: Mapping[str, Any] | None = None,
    questions_file: str | Path | None = None,
    grounding_limit: int | None = None,
) -> dict[str, Any]:
    """Base vs base+adapter: PubMedQA accuracy (and grounding when `pipelines` is given); `helps` verdict.

    `pipelines` maps "base" and "adapter" to ready `RAGPipeline`s (same index, generator without
    and with the adapter); with `questions_file` (eval_dev.jsonl) their MedQuAD answers are scored.
    """
    try:
        from peft import PeftModel
    except ImportError:
        raise missing_dependency("peft", "Adapter evaluation") from None
    from medrag.training import load_base_model

    items = load_pubmedqa(pubmedqa_file, limit)
    model, tokenizer = load_base_model(base_model, load_in_4bit, compute_dtype=compute_dtype)
    model = PeftModel.from_pretrained(model, adapter_dir, revision=adapter_revision)
    model.eval()
    prompts = [decision_prompt(tokenizer, it, context_tokens) for it in items]
    with model.disable_adapter():
        base_out = generate_batch(model, tokenizer, prompts, max_new_tokens, batch_size)
    adapter_out = generate_batch(model, tokenizer, prompts, max_new_tokens, batch_size)
    base, adapted = score_decisions(items, base_out), score_decisions(items, adapter_out)
    result: dict[str, Any] = {
        # flat {metric: value} per system: the model card's evaluation table (medrag.cards.adapter_card)
        "base": {"pubmedqa_accuracy": base["accuracy"], "pubmedqa_parse_errors": base["parse_failures"]},
        "adapter": {"pubmedqa_accuracy": adapted["accuracy"], "pubmedqa_parse_errors": adapted["parse_failures"]},
        "pubmedqa": {"n": len(items), "base": base, "adapter": adapted},
        "predictions": [
            {"id": it.id, "gold": it.decision, "base": b, "adapter": a}
            for it, b, a in zip(items, base_out, adapter_out, strict=True)
        ],
        "settings": {
            "base_model": base_model,
            "adapter": str(adapter_dir),
            "adapter_revision": adapter_revision,
            "load_in_4bit": load_in_4bit,
            "max_new_tokens": max_new_tokens,
            "limit": limit,
        },
    }
    helps = adapted["accuracy"] > base["accuracy"]
    if pipelines is not None and questions_file is not None:
        grounding = evaluate_grounding(pipelines, questions_file, grounding_limit)
        result["grounding"] = grounding
        for name in ("base", "adapter"):
            result[name].update({m: v for m, v in grounding.get(name, {}).items() if m in GROUNDING_METRICS})
        helps = helps and all(
            result["adapter"][m] >= result["base"][m]
            for m in ("citation_precision", "support_rate")
            if m in result["base"] and m in result["adapter"]
        )
    result["helps"] = helps
    return result


def evaluate_grounding(
    pipelines: Mapping[str, Any], questions_file: str | Path, limit: int | None = None, mode: str = "hybrid"
) -> dict[str, dict[str, float]]:
    """{name: pipeline} -> {name: citation_precision, support_rate, abstention_rate, n} on MedQuAD questions."""
    from medrag.evaluate import evaluate_answers
    from medrag.evaluation import load_questions

    questions = [q for q in load_questions(questions_file) if q.group == "MedQuAD"][:limit]
    if not questions:
        raise DocumentError(f"{questions_file} holds no MedQuAD questions: pass eval_dev.jsonl")
    return {name: evaluate_answers(p, questions, mode)["all"] for name, p in pipelines.items()}


def format_eval_table(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table (base, adapter, change), with the verdict below it."""
    lines = ["| metric | base | adapter | change |", "| --- | ---: | ---: | ---: |"]
    for metric, base in result["base"].items():
        adapter = result["adapter"].get(metric)
        if adapter is None:
            continue
        fmt = (lambda v: f"{v:.3f}") if isinstance(base, float) or isinstance(adapter, float) else str
        lines.append(f"| {metric} | {fmt(base)} | {fmt(adapter)} | {fmt(adapter - base)} |")
    n = result["pubmedqa"]["n"]
    lines.append(f"\n{n} PubMedQA questions. Adapter helps: {'yes' if result['helps'] else 'no'}")
    return "\n".join(lines)


def write_evaluation(result: dict[str, Any], folder: str | Path) -> Path:
    """Save the evaluation as `evaluation.json` beside the adapter it describes."""
    path = Path(folder) / "evaluation.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
