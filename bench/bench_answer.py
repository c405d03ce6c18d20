"""Answer latency of the pipeline: time to the first streamed text and to the finished answer.

    python bench/bench_answer.py --index DIR [--questions FILE] [--n 200] [--generator extractive]

Runs `RAGPipeline.stream` one question at a time (after a warm-up) and prints p50/p95 of
retrieval, first streamed text and total (citation check included), from `Answer.timings`, and how
many answers say what the sources lack ("The sources describe ... but do not say ...").
Questions default to eval_dev.jsonl spread over its sources. Not a test: quote figures from a
quiet machine (the load average is printed beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medrag.config import PipelineConfig  # noqa: E402
from medrag.pipeline import RAGPipeline  # noqa: E402
from medrag.prompts import says_what_is_missing  # noqa: E402

DEFAULT_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval_dev.jsonl"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="index folder (python index_builder.py --out DIR)")
    p.add_argument("--questions", default=str(DEFAULT_QUESTIONS))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--generator", default="extractive")
    args = p.parse_args()

    lines = [json.loads(x) for x in open(args.questions, encoding="utf-8") if x.strip()]
    step = max(1, len(lines) // (args.n + args.warmup))
    questions = [d["question"] for d in lines[::step]][: args.n + args.warmup]
    pipe = RAGPipeline(PipelineConfig.from_env(index_dir=args.index, generator=args.generator))
    t0 = time.perf_counter()
    pipe.retriever, pipe.generator  # noqa: B018  load everything before timing
    load = time.perf_counter() - t0
    rows, kinds, missing = [], {}, 0
    for i, q in enumerate(questions):
        final = None
        for final in pipe.stream(q):  # noqa: B007
            pass
        kinds[str(final.kind)] = kinds.get(str(final.kind), 0) + 1
        missing += final.kind == "answer" and says_what_is_missing(final.text)
        if i >= args.warmup and final.kind == "answer":  # declined/urgent ones never reach the generator
            rows.append((final.timings["retrieval"], final.timings["first_token"], final.timings["total"]))
    a = np.array(rows) * 1000
    print(
        f"index {args.index}: load {load:.1f} s; {len(rows)} answered questions timed; kinds {kinds} "
        f"({missing} answers say what the sources lack); load average {os.getloadavg()[0]:.2f}"
    )
    print("| step | p50 ms | p95 ms |\n| --- | --- | --- |")
    for name, col in zip(("retrieval", "first streamed text", "total"), a.T, strict=True):
        print(f"| {name} | {np.percentile(col, 50):.1f} | {np.percentile(col, 95):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
