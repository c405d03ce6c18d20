"""Answer usefulness of any checkout's extractive answers, judged by this checkout's rules.

    python bench/bench_usefulness.py answer --index DIR [--code DIR] [--questions FILE] --out ANSWERS
    python bench/bench_usefulness.py score ANSWERS [--questions FILE]

`answer` runs the pipeline of the checkout at --code (default: this one) on the questions and
writes one answer per line (`Answer.to_dict()` plus the question id); `score` judges such a file
with this checkout's medrag.usefulness (key-fact recall, narrower-as-general, says-missing: the
same rules as `python -m medrag.evaluate --answers`). Two steps on purpose: an older checkout has
no usefulness judges, so its answers are written by its own code and judged by the current one
(the "before" figures in data/eval/README.md). Not a test: a figure printer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_QUESTIONS = ROOT / "data" / "eval" / "answers.jsonl"  # the dev part; never the held-aside one


def answer(args) -> int:
    sys.path.insert(0, str(Path(args.code).resolve()))  # that checkout's medrag, not necessarily this one
    from medrag.config import PipelineConfig
    from medrag.pipeline import RAGPipeline

    pipe = RAGPipeline(PipelineConfig.from_env(index_dir=args.index, generator="extractive"))
    items = [json.loads(x) for x in Path(args.questions).read_text(encoding="utf-8").splitlines() if x.strip()]
    with open(args.out, "w", encoding="utf-8") as f:
        for d in items:
            ans = ask(pipe, d["question"], args.mode)
            keep = {"question": ans.question, "text": ans.text, "kind": str(ans.kind), "declined": ans.declined}
            keep["sources"] = [{"chunk": h.chunk.to_dict(), "score": h.score} for h in ans.sources]
            f.write(json.dumps({"id": d["id"], "answer": keep}) + "\n")
    print(f"wrote {len(items)} answers from {args.code} to {args.out}", file=sys.stderr)
    return 0


def ask(pipe, question: str, mode: str):
    """One answer from any checkout: a typed Request where it has one (medrag.request), keywords before."""
    try:
        from medrag.request import Request
    except ImportError:
        return pipe.answer(question, mode=mode)
    return pipe.answer(question, Request(mode=mode))


def score(args) -> int:
    sys.path.insert(0, str(ROOT))
    from medrag.eval_metrics import Aggregator, format_table, load_questions
    from medrag.evaluate import usefulness_row
    from medrag.types import Answer, Chunk, Hit

    questions = {q.id: q for q in load_questions(args.questions)}
    agg = Aggregator()
    for line in Path(args.answers).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        a = row["answer"]
        sources = [Hit(chunk=Chunk.from_dict(h["chunk"]), score=h["score"]) for h in a["sources"]]
        ans = Answer(a["question"], a["text"], sources=sources, kind=a["kind"], declined=a["declined"])
        q = questions[row["id"]]
        agg.add(q.group, usefulness_row(q, ans))
    print(format_table({args.answers: agg.result()}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("answer", help="answer the questions with the checkout at --code")
    a.add_argument("--index", required=True, help="index folder of ../shared/data/corpus.jsonl")
    a.add_argument("--code", default=str(ROOT), help="root of the checkout whose pipeline answers")
    a.add_argument("--questions", default=str(DEFAULT_QUESTIONS))
    a.add_argument("--mode", default="hybrid")  # the app's default retrieval
    a.add_argument("--out", required=True)
    s = sub.add_parser("score", help="judge an answers file with this checkout's rules")
    s.add_argument("answers")
    s.add_argument("--questions", default=str(DEFAULT_QUESTIONS))
    args = p.parse_args()
    return answer(args) if args.step == "answer" else score(args)


if __name__ == "__main__":
    sys.exit(main())
