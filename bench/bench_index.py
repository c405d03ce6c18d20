"""Our index build and retrieval against the LangChain peer recipe, in one run, side by side.

    .venv/bin/python bench/bench_index.py                      # the full shared corpus (~20 min)
    .venv/bin/python bench/bench_index.py --limit 2000         # the first 2000 documents
    .venv/bin/python bench/bench_index.py --skip-peer --json bench/results/ours.json

Each build runs in its own subprocess (ours: `python bench/bench_index.py _ours build`, in this
environment; the peer: bench/peer_recipe.py in bench/.peer-venv), and so does each query run.
The parent holds neither corpus nor model: it reads each child's peak RSS and CPU time from
`os.wait4`, so the figures are the child's alone. Both sides get the same documents, the same
questions, the same thread settings (OMP/MKL/OpenBLAS = the cores this process may use) and
HF_HUB_OFFLINE=1.

What is measured:
- build: seconds inside the child (load, chunk, embed, index, save; model loading included),
  chunks/s, documents/s, chunk count, peak RSS, CPU seconds, process wall time with imports.
- latency: one request at a time after a warm-up, embed + search for k=5 (ours: dense and
  hybrid `Retriever.search`; peer: `similarity_search`), on questions spread over the file.
- quality: document-level hit@1 / hit@5 per source group, from 50 chunks per question reduced
  to distinct documents in rank order (ours through `Retriever.search_batch`, as
  `python -m medrag.evaluate` does). With --limit only questions whose gold document is among
  the indexed documents are scored.

Shortcuts on purpose: timings are wall-clock, and this machine may be shared. For each child the
CPU time other processes took meanwhile (from /proc/stat) is recorded, and a warning printed when
it passes 5% of the cores: rerun on a quiet machine before quoting such a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

BENCH = Path(__file__).resolve().parent
PEER_PYTHON = BENCH / ".peer-venv" / "bin" / "python"
DATA = REPO_ROOT.parent / "shared" / "data"
DEPTH = 50  # chunks per question for hit@k: the same depth as `python -m medrag.evaluate`
TOP_K = 5  # chunks per timed request: what the app shows with an answer
OURS_MODES = ("dense", "hybrid")


# --- children ------------------------------------------------------------------------------
def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"  # the Hub is unreachable here: fail fast instead of retrying
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (the first line of /proc/stat, idle and iowait left out)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def run_child(name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> dict:
    """Run one child; its last stdout line is a JSON object. Adds its peak RSS, CPU and wall time."""
    log_path = log_dir / f"{name.replace(' ', '-')}.log"
    print(f"  {name} ... (log: {log_path})", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    with open(log_path, "w") as log, tempfile.TemporaryFile("w+") as out:
        busy0, t0 = machine_busy_seconds(), time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=log, env=env, cwd=REPO_ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
        wall, busy = time.perf_counter() - t0, machine_busy_seconds() - busy0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-20:])
        sys.exit(f"error: {name} exited with status {proc.returncode}; the end of {log_path}:\n{tail}")
    result = json.loads(lines[-1])
    cpu = usage.ru_utime + usage.ru_stime
    result["process"] = {
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kB on Linux
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        # CPU that other processes took while this child ran: > 0 means the timings shared the cores
        "others_cpu_seconds": max(0.0, busy - cpu),
        "others_cpu_share": max(0.0, busy - cpu) / (wall * len(os.sched_getaffinity(0))),
        "load_avg_1m": [load_before, os.getloadavg()[0]],
    }
    print(f"  {name}: {wall:.0f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB", file=sys.stderr, flush=True)
    return result


def ours_build(corpus: Path, out: Path) -> dict:
    from medrag.build import build_index
    from medrag.config import PipelineConfig
    from medrag.embedder import TextEmbedder

    cfg = PipelineConfig.from_env()
    export_cached = any((Path(cfg.cache_dir) / "onnx").glob("*/model.onnx"))
    embedder = TextEmbedder.from_config(cfg)
    report = build_index([corpus], out, cfg, embedder=embedder)
    return {
        "documents": report.documents,
        "chunks": report.chunks,
        "seconds": report.seconds,
        "chunks_per_second": report.chunks_per_second,
        "settings": {
            "backend": embedder.backend,
            "chunk_tokens": cfg.chunk_tokens,
            "chunk_overlap": cfg.chunk_overlap,
            "index_type": cfg.index_type,
            "batch_size": cfg.embed_batch_size,
            "onnx_export_cached": export_cached,  # False: the build paid for the one-off ONNX export
        },
        "threads": ours_threads(embedder),
    }


def ours_threads(embedder) -> dict:
    import faiss

    runner = embedder._load()  # a bench may look inside: which thread pools the run really had
    if hasattr(runner, "session"):
        return {
            "onnxruntime": runner.session.get_session_options().intra_op_num_threads,
            "faiss": faiss.omp_get_max_threads(),
        }
    import torch

    return {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}


def ours_query(index_dir: Path, questions_path: Path, warmup: int) -> dict:
    from medrag.config import PipelineConfig
    from medrag.embedder import TextEmbedder
    from medrag.eval_metrics import unique_docs
    from medrag.index import VectorIndex
    from medrag.retriever import Retriever

    cfg = PipelineConfig.from_env()
    questions = [json.loads(line) for line in open(questions_path, encoding="utf-8") if line.strip()]
    t0 = time.perf_counter()
    embedder = TextEmbedder.from_config(cfg)
    index = VectorIndex.load(index_dir, expect_model=cfg.embedding_model, expect_dim=cfg.embedding_dim)
    retriever = Retriever(index, embedder, cfg)
    embedder.embed_query("warm the model up")
    load_seconds = time.perf_counter() - t0

    timed = [q["question"] for q in questions if q.get("timed")]
    latencies, ranked = {}, {}
    for mode in OURS_MODES:
        for q in timed[:warmup]:
            retriever.search(q, k=TOP_K, mode=mode)
        latencies[mode] = []
        for q in timed:
            t = time.perf_counter()
            retriever.search(q, k=TOP_K, mode=mode)
            latencies[mode].append((time.perf_counter() - t) * 1000)
        results = retriever.search_batch([q["question"] for q in questions], k=DEPTH, mode=mode)
        ranked[mode] = {
            q["id"]: unique_docs(h.chunk.doc_id for h in hits) for q, hits in zip(questions, results, strict=True)
        }
    return {
        "load_seconds": load_seconds,
        "latencies_ms": latencies,
        "ranked_docs": ranked,
        "backend": embedder.backend,
        "threads": ours_threads(embedder),
    }


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_index.py _ours")
    p.add_argument("command", choices=["build", "query"])
    p.add_argument("--corpus", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--index", type=Path)
    p.add_argument("--questions", type=Path)
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args(argv)
    if args.command == "build":
        result = ours_build(args.corpus, args.out)
    else:
        result = ours_query(args.index, args.questions, args.warmup)
    print(json.dumps(result))
    return 0


# --- inputs --------------------------------------------------------------------------------
def write_subset(corpus: Path, limit: int | None, dest: Path) -> tuple[Path, set[str] | None]:
    """The first `limit` documents, streamed to `dest`; (the corpus itself, None) without a limit."""
    if not limit:
        return corpus, None
    ids = set()
    with open(corpus, encoding="utf-8") as src, open(dest, "w", encoding="utf-8") as out:
        for line in src:
            if not line.strip():
                continue
            if len(ids) == limit:
                break
            ids.add(json.loads(line)["id"])
            out.write(line)
    return dest, ids


def pick_questions(path: Path, doc_ids: set[str] | None, n_timed: int, dest: Path) -> list:
    """Write the questions both sides run; return the ones that are scored (gold among the documents)."""
    from medrag.eval_metrics import load_questions

    questions = load_questions(path)
    scored = [q for q in questions if q.answerable and (doc_ids is None or doc_ids & set(q.gold_doc_ids))]
    step = max(len(questions) / n_timed, 1.0) if n_timed else 0
    timed = {questions[int(i * step)].id for i in range(min(n_timed, len(questions)))}  # spread over all sources
    scored_ids = {q.id for q in scored}
    with open(dest, "w", encoding="utf-8") as f:
        for q in questions:
            if q.id in timed or q.id in scored_ids:
                f.write(json.dumps({"id": q.id, "question": q.question, "timed": q.id in timed}) + "\n")
    return scored


# --- figures -------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * p / 100
    lo = int(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def latency_stats(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95), "mean": sum(ms) / len(ms)}


def quality(ranked: dict[str, list[str]], scored: list) -> dict:
    from medrag.eval_metrics import Aggregator, retrieval_metrics

    agg = Aggregator()
    for q in scored:
        agg.add(q.group, retrieval_metrics(ranked[q.id], q.gold_doc_ids))
    return agg.result()


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(res: dict) -> str:
    systems = [s for s in ("ours", "peer") if s in res["builds"]]
    b = res["builds"]
    names = {"ours": "ours", "peer": "peer (LangChain)"}
    out = [
        f"## Index build: {b[systems[0]]['documents']} documents of {res['corpus']}",
        f"threads: OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS={res['threads']} on both sides "
        f"({res['cores']} cores usable); 1-minute load average at start {res['load_avg_start']:.2f}",
        "",
    ]

    def row(label, fn):
        return [label] + [fn(s) for s in systems]

    def secs(s):
        sec = b[s]["seconds"]
        return " / ".join(f"{v:.1f}" for k, v in sec.items() if k != "total")

    out.append(
        table(
            [""] + [names[s] for s in systems],
            [
                row("recipe", lambda s: b[s]["recipe"]),
                row("threads in the child", lambda s: ", ".join(f"{k} {v}" for k, v in b[s]["threads"].items())),
                row("chunks", lambda s: str(b[s]["chunks"])),
                row("build time (s)", lambda s: f"{b[s]['seconds']['total']:.1f}"),
                row(
                    "  of which",
                    lambda s: secs(s) + " (" + " / ".join(k for k in b[s]["seconds"] if k != "total") + ")",
                ),
                row("throughput (chunks/s)", lambda s: f"{b[s]['chunks_per_second']:.1f}"),
                row("throughput (documents/s)", lambda s: f"{b[s]['documents'] / b[s]['seconds']['total']:.1f}"),
                row("peak RSS, build (MB)", lambda s: f"{b[s]['process']['peak_rss_mb']:.0f}"),
                row("CPU time, build (s)", lambda s: f"{b[s]['process']['cpu_seconds']:.0f}"),
                row("process wall incl. imports (s)", lambda s: f"{b[s]['process']['wall_seconds']:.1f}"),
                row("cores taken by other work, build", lambda s: f"{b[s]['process']['others_cpu_share']:.0%}"),
                row("index on disk (MB)", lambda s: f"{b[s]['disk_mb']:.1f}"),
                row("peak RSS, query process (MB)", lambda s: f"{res['queries'][s]['process']['peak_rss_mb']:.0f}"),
            ],
        )
    )
    lat = res["latency"]
    n = next(iter(lat.values()))["n"]
    out += [
        "",
        f"## Query latency: embed + search, k={TOP_K}, one request at a time, {n} questions after {res['warmup']} warm-up (ms)",
        "",
    ]
    out.append(
        table(
            ["", "p50", "p95", "mean"], [[k, *(f"{v[m]:.1f}" for m in ("p50", "p95", "mean"))] for k, v in lat.items()]
        )
    )
    qual = res["quality"]
    groups = list(next(iter(qual.values())))
    out += ["", f"## Document-level retrieval on {res['questions']} ({DEPTH} chunks -> distinct documents)", ""]
    header = ["source", "n"] + [f"{k} {m}" for k in qual for m in ("hit@1", "hit@5")]
    rows = []
    for g in groups:
        first = next(iter(qual.values()))[g]
        rows.append([g, str(first["n"])] + [f"{qual[k][g].get(m, 0):.3f}" for k in qual for m in ("hit@1", "hit@5")])
    out.append(table(header, rows))
    shares = {
        f"{s} {kind}": r[s]["process"]["others_cpu_share"]
        for kind, r in (("build", b), ("query", res["queries"]))
        for s in r
    }
    busy = {k: v for k, v in shares.items() if v > 0.05}
    if busy:
        out += [
            "",
            "warning: other processes took "
            + ", ".join(f"{v:.0%} of the cores during {k}" for k, v in busy.items())
            + ": those times are inflated; rerun on a quiet machine before quoting them",
        ]
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_ours"]:
        return child_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=DATA / "corpus.jsonl")
    p.add_argument("--questions", type=Path, default=DATA / "eval_dev.jsonl")
    p.add_argument("--limit", type=int, help="index only the first N documents (quick runs)")
    p.add_argument("--latency-questions", type=int, default=300, help="questions timed one at a time")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests before the timed ones")
    p.add_argument("--skip-peer", action="store_true", help="ours only")
    p.add_argument("--out-dir", type=Path, help="where the indexes and logs go (default: a temporary folder, removed)")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)

    for path in (args.corpus, args.questions):
        if not path.is_file():
            sys.exit(f"error: {path} does not exist: pass --corpus / --questions")
    if not args.skip_peer and not PEER_PYTHON.is_file():
        sys.exit(
            f"error: no peer environment at {PEER_PYTHON.parent.parent}: run 'bash bench/setup_peer_env.sh' or pass --skip-peer"
        )
    cores = len(os.sched_getaffinity(0))
    env = child_env(cores)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench-index-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        corpus, doc_ids = write_subset(args.corpus, args.limit, out_dir / "corpus-subset.jsonl")
        questions_file = out_dir / "questions.jsonl"
        scored = pick_questions(args.questions, doc_ids, args.latency_questions, questions_file)
        res = {
            "corpus": str(args.corpus) + (f" (first {args.limit})" if args.limit else ""),
            "questions": f"{args.questions.name}, {len(scored)} scored"
            + (" (gold among the indexed documents)" if args.limit else ""),
            "threads": cores,
            "cores": cores,
            "warmup": args.warmup,
            "load_avg_start": os.getloadavg()[0],
            "builds": {},
            "queries": {},
            "latency": {},
            "quality": {},
        }
        me = [sys.executable, str(Path(__file__).resolve()), "_ours"]
        peer = [str(PEER_PYTHON), str(BENCH / "peer_recipe.py")]
        runs = [("ours", me, "sentence-aware, 256 tokens / 32 overlap; {backend} all-MiniLM-L6-v2; faiss {index_type}")]
        if not args.skip_peer:
            runs.append(
                (
                    "peer",
                    peer,
                    "RecursiveCharacterTextSplitter 1000/200 chars; torch all-MiniLM-L6-v2; FAISS.from_documents",
                )
            )
        for name, cmd, recipe in runs:
            index_dir = out_dir / f"index-{name}"
            shutil.rmtree(index_dir, ignore_errors=True)
            build = run_child(
                f"{name} build", [*cmd, "build", "--corpus", str(corpus), "--out", str(index_dir)], env, out_dir
            )
            build["recipe"] = recipe.format(**build.get("settings", {}))
            if build.get("settings", {}).get("onnx_export_cached") is False:
                build["recipe"] += " (build time includes the one-off ONNX export)"
            build["disk_mb"] = du_mb(index_dir)
            res["builds"][name] = build
            q_args = [
                "query",
                "--index",
                str(index_dir),
                "--questions",
                str(questions_file),
                "--warmup",
                str(args.warmup),
            ]
            query = run_child(f"{name} query", [*cmd, *q_args], env, out_dir)
            res["queries"][name] = query
            if name == "ours":
                for mode in OURS_MODES:
                    res["latency"][f"ours {mode}"] = latency_stats(query["latencies_ms"][mode])
                    res["quality"][f"ours {mode}"] = quality(query["ranked_docs"][mode], scored)
            else:
                res["latency"]["peer similarity_search"] = latency_stats(query["latencies_ms"])
                res["quality"]["peer"] = quality(query["ranked_docs"], scored)
        for q in res["queries"].values():
            q.pop("ranked_docs")
        print(report(res))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=2) + "\n")
    finally:
        if args.out_dir is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
