"""`python -m medrag.evaluate`: retrieval (and, with --answers, answer) metrics on a questions file.

    python -m medrag.evaluate --corpus ../shared/data/corpus.jsonl \\
        --questions ../shared/data/eval_dev.jsonl [--index DIR] [--mode all] [--answers] [--json OUT]

The index is built when --index is absent (into the cache, keyed by the corpus) or stale
(other documents, model or chunking). Retrieval metrics cover questions with gold documents.
With --answers every question also goes through the full pipeline with the extractive
generator: citation precision and support on answerable questions, abstention everywhere
(on unanswerable ones it is the rate we want high, on answerable ones the false-abstention
rate), and red-flag precision/recall on questions labelled `red_flag` (with, where they carry a
`help` label, the share of raised emergencies answered with the message for that help). Answer-usefulness items
(data/eval/answers.jsonl: `key_facts`, `missing`) also get key-fact recall, the share of answers
that state a narrower source's fact as general, and "says what is missing" (medrag.usefulness).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from medrag.config import PipelineConfig
from medrag.errors import MedRAGError
from medrag.eval_metrics import (
    Aggregator,
    Question,
    format_table,
    load_questions,
    red_flag_scores,
    retrieval_metrics,
    unique_docs,
)
from medrag.prompts import URGENT_MESSAGES
from medrag.request import MODES, Request
from medrag.types import AnswerKind
from medrag.usefulness import key_fact_recall, says_what_is_missing, states_narrower_as_general

DEPTH = 50  # chunks retrieved per question: enough distinct documents for the @10 metrics


def default_index_dir(corpus: Path, cfg: PipelineConfig) -> Path:
    st = corpus.stat()
    key = hashlib.sha256(f"{corpus.resolve()}|{st.st_size}|{st.st_mtime_ns}|{cfg.index_type}".encode()).hexdigest()[:16]
    return Path(cfg.cache_dir) / "eval-index" / key


def evaluate_retrieval(retriever, questions: list[Question], mode: str) -> dict:
    agg = Aggregator()
    answerable = [q for q in questions if q.answerable]
    results = retriever.search_batch([q.question for q in answerable], k=DEPTH, mode=mode)
    for q, hits in zip(answerable, results, strict=True):
        agg.add(q.group, retrieval_metrics(unique_docs(h.chunk.doc_id for h in hits), q.gold_doc_ids))
    for q in questions:
        if not q.answerable:
            agg.add_count(q.group)
    return agg.result()


def evaluate_answers(pipeline, questions: list[Question], mode: str, progress: bool = False) -> dict:
    agg, flags, helps = Aggregator(), {}, {}
    iterator = questions
    if progress:
        from tqdm import tqdm

        iterator = tqdm(questions, desc=f"answers ({mode})", unit="q", file=sys.stderr)
    for q in iterator:
        ans = pipeline.answer(q.question, Request(mode=mode))
        row: dict[str, float | None] = {}
        if q.red_flag is not None:
            flags.setdefault(q.group, []).append((q.red_flag, ans.kind == AnswerKind.URGENT))
            if (
                q.red_flag and q.help and ans.kind == AnswerKind.URGENT
            ):  # the right message: crisis line, poison control, ...
                helps.setdefault(q.group, []).append(ans.text == URGENT_MESSAGES.get(q.help))
        else:
            row["abstention_rate"] = float(ans.declined and ans.kind == AnswerKind.DECLINED)
            row["red_flags_raised"] = float(ans.kind == AnswerKind.URGENT)
        if q.answerable and ans.citations:
            cited = ans.cited_numbers
            gold = set(q.gold_doc_ids)
            row["citation_precision"] = sum(ans.sources[n - 1].chunk.doc_id in gold for n in cited) / len(cited)
        if ans.kind == AnswerKind.ANSWER and ans.support_rate is not None:
            row["support_rate"] = ans.support_rate
        if q.usefulness:
            row.update(usefulness_row(q, ans))
        agg.add(q.group, row)
    result = agg.result()
    all_pairs = [p for pairs in flags.values() for p in pairs]
    for group, pairs in [*flags.items(), ("all", all_pairs)]:
        if pairs:
            result[group].update(red_flag_scores(pairs))
    all_helps = [h for right in helps.values() for h in right]
    for group, right in [*helps.items(), ("all", all_helps)]:
        if right:
            result[group]["red_flag_help_accuracy"] = sum(right) / len(right)
    return result


def usefulness_row(q: Question, ans) -> dict[str, float | None]:
    """Key-fact recall (items with key facts), narrower-as-general (answers), says-missing (missing items)."""
    row: dict[str, float | None] = {}
    if q.missing:
        row["says_missing"] = float(says_what_is_missing(ans))
    else:
        row["key_fact_recall"] = key_fact_recall(ans.text, q.key_facts or [])
    if ans.kind == "answer":
        row["narrower_as_general"] = float(states_narrower_as_general(ans, q.topic or ""))
    return row


def merge(a: dict, b: dict) -> dict:
    out = {g: dict(r) for g, r in a.items()}
    for g, r in b.items():
        out.setdefault(g, {}).update({k: v for k, v in r.items() if k != "n"})
        out[g].setdefault("n", r["n"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medrag.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, type=Path, help="corpus jsonl (or a folder of documents)")
    p.add_argument("--questions", required=True, type=Path, nargs="+", help="questions jsonl file(s)")
    p.add_argument("--index", type=Path, help="index folder (built here when missing or stale)")
    p.add_argument("--mode", default="all", choices=[*MODES, "all"])
    p.add_argument("--answers", action="store_true", help="also run the pipeline and score the answers")
    p.add_argument("--json", type=Path, help="write {mode: {source: {metric: value, n}}} here")
    args = p.parse_args(argv)
    try:
        return run(args)
    except MedRAGError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    from medrag.build import ensure_index
    from medrag.embedder import TextEmbedder
    from medrag.indexes import index_type_of, open_index
    from medrag.pipeline import RAGPipeline
    from medrag.retriever import Retriever

    cfg = PipelineConfig.from_env()
    for path in [args.corpus, *args.questions]:
        if not path.exists():
            raise MedRAGError(f"{path} does not exist: check the path")
    questions = [q for path in args.questions for q in load_questions(path)]
    embedder = TextEmbedder.from_config(cfg)
    index_dir = args.index or default_index_dir(args.corpus, cfg)
    t0 = time.perf_counter()
    large = cfg.index_engine == "milvus" or index_type_of(index_dir) == "ivfpq"  # used as given: no corpus re-read
    if not large and ensure_index([args.corpus], index_dir, cfg, embedder=embedder):
        print(f"built index at {index_dir} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    index = open_index(index_dir, cfg)
    retriever = Retriever(index, embedder, cfg)
    modes = MODES if args.mode == "all" else (args.mode,)
    results = {}
    for mode in modes:
        results[mode] = evaluate_retrieval(retriever, questions, mode)
        if args.answers:
            gen_cfg = cfg.replace(generator="extractive") if cfg.generator == "auto" else cfg
            pipeline = RAGPipeline(gen_cfg, embedder=embedder, index=index, retriever=retriever)
            results[mode] = merge(
                results[mode], evaluate_answers(pipeline, questions, mode, progress=sys.stderr.isatty())
            )
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
