"""Red-flag detection: recall, false alarms, help kind and latency, rules alone against rules + model.

    python bench/bench_red_flags.py [--files F.jsonl ...] [--eval EVAL.jsonl] [--json OUT]

Default files: data/eval/red_flags_heldout.jsonl when it exists (the held-aside set nobody tuned
on), else data/eval/red_flags.jsonl (the dev set the model is trained on: its figures are fit
figures; the out-of-fold ones are in data/red_flag_model/model.json). Default --eval: the shared
evaluation questions (../shared/data/eval_dev.jsonl), none of which should raise a red flag.
Targets (issue 9): recall >= 0.99, false alarms <= 3% on near-misses, 0 on the shared questions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medrag.config import PipelineConfig  # noqa: E402
from medrag.language import reads_as_english  # noqa: E402
from medrag.safety import detect_red_flag  # noqa: E402

HELDOUT, DEV = ROOT / "data" / "eval" / "red_flags_heldout.jsonl", ROOT / "data" / "eval" / "red_flags.jsonl"
SHARED = [p / "shared" / "data" / "eval_dev.jsonl" for p in (ROOT.parent, ROOT.parent.parent)]


def rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rate(hits: list[bool]) -> str:
    return f"{sum(hits) / len(hits):.3f} ({sum(hits)}/{len(hits)})" if hits else "-"


def run_file(path: Path, embedder) -> dict:
    data = rows(path)
    by = {"rules": defaultdict(list), "combined": defaultdict(list)}
    help_ok, not_english, ms = [], 0, defaultdict(list)
    for r in data:
        t0 = time.perf_counter()
        rules = detect_red_flag(r["question"]) is not None
        t1 = time.perf_counter()
        embedder.embed_query(r["question"])  # remembered: the call below (and retrieval) reuse it
        t2 = time.perf_counter()
        flag = detect_red_flag(r["question"], embedder)
        t3 = time.perf_counter()
        for name, seconds in (("rules", t1 - t0), ("embedding", t2 - t1), ("rules + model", t3 - t2)):
            ms[name].append(seconds * 1000)
        not_english += not reads_as_english(r["question"])
        group = f"category {r['category']}" if r["red_flag"] else f"near-miss {r.get('topic')}"
        for name, raised in (("rules", rules), ("combined", flag is not None)):
            by[name]["emergencies" if r["red_flag"] else "near-misses"].append(raised)
            by[name][group].append(raised)
            if r["red_flag"] and r.get("help"):
                by[name][f"help {r['help']}"].append(raised)
        if r["red_flag"] and flag is not None and r.get("help"):
            help_ok.append(flag.help == r["help"])
    print(f"\n== {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(data)} messages")
    if path.resolve() == DEV.resolve():
        print("   (the dev set the model is trained on: fit figures, not generalisation; see model.json out_of_fold)")
    keys = sorted(by["combined"], key=lambda k: (k not in ("emergencies", "near-misses"), k))
    print(f"   {'':32s} {'rules only':>16s} {'rules + model':>16s}   (recall for emergencies, false alarms otherwise)")
    for k in keys:
        print(f"   {k:32s} {rate(by['rules'][k]):>16s} {rate(by['combined'][k]):>16s}")
    print(f"   help kind right on raised emergencies: {rate(help_ok)}; read as not English: {not_english}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for name, values in ms.items():
        print(
            f"   {name + ' ms per message':32s} p50 {np.percentile(values, 50):6.2f}   p95 {np.percentile(values, 95):6.2f}"
        )
    print(f"   (load average {load:.1f}; retrieval needs the embedding anyway, and reuses it)")
    combined, rules_only = by["combined"], by["rules"]
    return {
        "file": str(path),
        "recall": float(np.mean(combined["emergencies"])) if combined["emergencies"] else None,
        "false_alarms": float(np.mean(combined["near-misses"])) if combined["near-misses"] else None,
        "rules_only_recall": float(np.mean(rules_only["emergencies"])) if rules_only["emergencies"] else None,
        "rules_only_false_alarms": float(np.mean(rules_only["near-misses"])) if rules_only["near-misses"] else None,
        "help_accuracy": float(np.mean(help_ok)) if help_ok else None,
        "ms_p50": {name: float(np.percentile(values, 50)) for name, values in ms.items()},
    }


def run_eval(path: Path, embedder) -> dict:
    questions = [r["question"] for r in rows(path)]
    raised = [(q, f) for q in questions if (f := detect_red_flag(q, embedder))]
    foreign = [q for q in questions if not reads_as_english(q)]
    print(f"\n== {path}: {len(questions)} questions (none should raise a red flag or read as not English)")
    print(f"   red flags raised: {len(raised)}; read as not English: {len(foreign)}")
    for q, f in raised[:10]:
        print(f"   raised: {q!r} ({f.category}, {f.by})")
    for q in foreign[:10]:
        print(f"   not English: {q!r}")
    return {"file": str(path), "n": len(questions), "raised": len(raised), "not_english": len(foreign)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=Path, nargs="+", default=[HELDOUT if HELDOUT.exists() else DEV])
    p.add_argument("--eval", type=Path, default=next((s for s in SHARED if s.exists()), None))
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from medrag.embedder import TextEmbedder

    embedder = TextEmbedder.from_config(PipelineConfig.from_env())
    embedder.embed_query("warm the model up")
    out = {"files": [run_file(f, embedder) for f in args.files]}
    if args.eval is not None:
        out["eval"] = run_eval(args.eval, embedder)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
