"""Scale benchmark: the ivfpq index at 1M and 5M chunks made from the shared corpus, and a 24M projection.

    python bench/bench_scale.py --index /work/cache/index-full --sizes 1000000 5000000 \\
        --work /work/scale-bench --json bench/results/scale.json

The synthetic corpus (`synth_shard`): chunk j < R (R = the real chunks of `--index`) is real
chunk j with its real vector. Chunk j >= R is a recombination: real chunk b = j mod R, a share p
(uniform 0..0.5) of its sentences replaced by sentences of a random other chunk o, under b's
title; its vector is the unit vector of (1-p) v_b + p v_o plus Gaussian noise of norm ~0.1. So
text statistics (vocabulary, term frequencies, lengths, section titles) are the corpus's own, and
vectors stay on the manifold the encoder produces (mean pooling makes the embedding of mixed
sentences close to the mix of embeddings: `--check-mix` embeds a sample and prints the cosine).
The queries are real eval_dev questions and their real embeddings.

Per size it prints: build time and peak RSS (a child process: shard writing, BM25 merge, IVF-PQ
training and adding; embeddings are given, their cost is bench_encoder.py's), disk size, cold
load time (the index files evicted from the page cache first with posix_fadvise), serving RSS,
dense recall@10 against exact search over the same float32 vectors, and p50/p95 of hybrid,
dense and BM25 retrieval (query embedding included, one request at a time, k=5). Then the same
index type against flat on the real corpus (hit@1/5 per source, hybrid and dense), and a
projection to 24M chunks from the measured per-chunk costs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARD = 50_000  # rows per synthetic shard: the build's unit too
NOISE = 0.1  # norm of the noise added to a mixed vector


def isa() -> str:
    import re

    text = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())
    model = re.search(r"^model name\s*:(.*)$", text, re.M).group(1).strip()
    wanted = ["avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "amx_int8"]
    return f"{model}; " + " ".join(f for f in wanted if f in flags)


# --- the synthetic corpus ---------------------------------------------------------------------
class Real:
    """The real chunks (as dicts), their sentences and unit vectors, from a flat index folder."""

    def __init__(self, index_dir: Path):
        from medrag.chunking import split_sentences
        from medrag.index import VectorIndex

        index = VectorIndex.load(index_dir, verify=False)
        self.chunks = index.chunks
        self.vectors = index.vectors(np.arange(len(index)))
        self.sentences = [[c.text[s:e] for s, e in split_sentences(c.text)] or [c.text] for c in self.chunks]


def _mix(real: Real, shard: int, size: int, seed: int = 0):
    """The shard's random stream and its vectors: (rng, rows, base, other, share, float32 unit vectors)."""
    r = len(real.chunks)
    lo, hi = shard * SHARD, min(size, (shard + 1) * SHARD)
    rng = np.random.default_rng([seed, shard])
    rows = np.arange(lo, hi)
    base, other = rows % r, rng.integers(0, r, hi - lo)
    share = np.where(rows < r, 0.0, rng.uniform(0.0, 0.5, hi - lo))
    vecs = (1 - share)[:, None] * real.vectors[base] + share[:, None] * real.vectors[other]
    noise = rng.normal(size=vecs.shape).astype(np.float32) * (NOISE / np.sqrt(vecs.shape[1]))
    vecs = np.where((rows < r)[:, None], vecs, vecs + noise)
    return rng, rows, base, other, share, (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def synth_shard(real: Real, shard: int, size: int, seed: int = 0):
    """Rows [shard*SHARD, min(size, (shard+1)*SHARD)) of the synthetic corpus: (chunks, float32 vectors)."""
    from medrag.types import Chunk

    r = len(real.chunks)
    _, rows, base, other, share, vecs = _mix(real, shard, size, seed)
    rng = random.Random(seed * 1_000_003 + shard)  # texts: Python's generator is ~10x faster per small draw
    chunks = []
    for j, b, o, p in zip(rows.tolist(), base.tolist(), other.tolist(), share.tolist(), strict=True):
        c = real.chunks[b]
        if j < r:
            chunks.append(c)
            continue
        sents = list(real.sentences[b])
        swap = rng.sample(range(len(sents)), int(round(p * len(sents)))) if len(sents) > 1 else []
        donor = real.sentences[o]
        for s in swap:
            sents[s] = donor[rng.randrange(len(donor))]
        copy = j // r
        chunks.append(
            Chunk(id=f"{c.id}~{copy}", doc_id=f"{c.doc_id}~{copy}", title=c.title, text=" ".join(sents),
                  url=c.url, source=c.source, position=c.position, metadata=c.metadata)
        )  # fmt: skip
    return chunks, vecs


def shards_of(real: Real, size: int):
    return range(-(-size // SHARD))


# --- children ---------------------------------------------------------------------------------
def child_build(args) -> dict:
    from medrag.shards import build_from_chunks

    real = Real(args.index)
    t0 = time.perf_counter()
    gen = (synth_shard(real, s, args.size) for s in shards_of(real, args.size))
    chunks_iter, vectors_iter = _split(gen)
    build_from_chunks(chunks_iter, vectors_iter, args.out, model_id=real_model(args.index), shard_rows=SHARD)
    manifest = json.loads((Path(args.out) / "manifest.json").read_text())
    phases = manifest["extra"].get("build_seconds", {})
    return {"seconds": time.perf_counter() - t0, "phases": phases, "hwm_mb": rss_mb("VmHWM")}


def _split(gen):
    """Two iterators over one generator of pairs, consumed in lockstep by zip()."""
    pending = []

    def firsts():
        for a, b in gen:
            pending.append(b)
            yield a

    def seconds():
        while pending:
            yield pending.pop(0)

    return firsts(), seconds()


def real_model(index_dir: Path) -> str:
    return json.loads((Path(index_dir) / "manifest.json").read_text())["embedding_model"]


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache (POSIX_FADV_DONTNEED), so the next load is cold."""
    for p in Path(folder).rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def rss_mb(field: str = "VmRSS") -> float:
    """VmRSS (all resident pages), RssAnon (the process's own memory) or RssFile (mapped file pages, reclaimable)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_serve(args) -> dict:
    os.sched_setaffinity(0, set(list(os.sched_getaffinity(0))[:2]))
    from medrag.config import PipelineConfig
    from medrag.embedder import TextEmbedder

    cfg = PipelineConfig.from_env()
    embedder = TextEmbedder.from_config(cfg)
    embedder.embed_query("warm the encoder up")  # the encoder is not the index: load it before the clock
    rss_encoder = rss_mb()
    evict(args.out)
    t0 = time.perf_counter()
    from medrag.disk_index import DiskIndex
    from medrag.retriever import Retriever

    index = DiskIndex.load(args.out)
    retriever = Retriever(index, embedder, cfg)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    if args.nprobe:
        index.nprobe = args.nprobe
    if args.rerank:
        index.rerank = args.rerank
    questions = json.loads(Path(args.questions_json).read_text())
    qvecs = np.load(args.qvecs)
    exact = np.load(args.exact)
    first = time.perf_counter()
    retriever.search(questions[0], 5, "hybrid")
    first_s = time.perf_counter() - first
    out = {"load_s": load_s, "first_query_s": first_s, "rss_encoder_mb": rss_encoder, "rss_loaded_mb": rss_loaded}
    for mode in ("hybrid", "dense", "bm25"):
        for q in questions[:20]:
            retriever.search(q, 5, mode)
        times = []
        for q in questions:
            t = time.perf_counter()
            retriever.search(q, 5, mode)
            times.append(time.perf_counter() - t)
        out[mode] = {"p50_ms": 1000 * np.percentile(times, 50), "p95_ms": 1000 * np.percentile(times, 95)}
    _, ids = index.search_dense(qvecs, 10)
    out["recall@10"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)]))
    out["rss_mb"], out["rss_anon_mb"], out["rss_file_mb"] = rss_mb(), rss_mb("RssAnon"), rss_mb("RssFile")
    out["peak_rss_mb"] = rss_mb("VmHWM")  # this process's own high-water mark (ru_maxrss inherits the parent's)
    return out


def run_child(argv: list[str]) -> tuple[dict, dict]:
    """This script as a child process: its JSON result, and its own wall time, CPU time and peak RSS."""
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"child {argv[:2]} failed with status {status}")
    # ru_maxrss survives fork and exec: it is max(this parent's peak, the child's), so the child reports VmHWM
    stats = {"wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
             "ru_maxrss_mb": usage.ru_maxrss / 1024, "load_avg": load0}  # fmt: skip
    return json.loads(out.decode().strip().splitlines()[-1]), stats


# --- the parent -------------------------------------------------------------------------------
def exact_top10(real: Real, size: int, qvecs: np.ndarray) -> np.ndarray:
    """Exact top-10 rows per query over the float32 synthetic vectors, one shard at a time."""
    best_s = np.full((len(qvecs), 10), -np.inf, dtype=np.float32)
    best_i = np.full((len(qvecs), 10), -1, dtype=np.int64)
    for s in shards_of(real, size):
        vecs = _mix(real, s, size)[-1]
        sims = qvecs @ vecs.T
        rows = np.arange(s * SHARD, s * SHARD + len(vecs))
        cat_s, cat_i = np.concatenate([best_s, sims], 1), np.concatenate([best_i, np.broadcast_to(rows, sims.shape)], 1)
        top = np.argpartition(-cat_s, 9, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_i


def du_mb(folder: Path) -> dict:
    sizes = {}
    for p in Path(folder).rglob("*"):
        if p.is_file():
            key = p.relative_to(folder).parts[0]
            sizes[key] = sizes.get(key, 0) + p.stat().st_size / 1e6
    return sizes


def real_corpus_quality(args, real_index: Path, questions, work: Path) -> dict:
    """hit@1/5 per source for flat and ivfpq on the real corpus, hybrid and dense (as medrag.evaluate)."""
    from medrag.config import PipelineConfig
    from medrag.disk_index import DiskIndex
    from medrag.embedder import TextEmbedder
    from medrag.evaluate import evaluate_retrieval
    from medrag.index import VectorIndex
    from medrag.retriever import Retriever
    from medrag.shards import build_from_chunks

    flat = VectorIndex.load(real_index, verify=False)
    out = work / "real-ivfpq"
    if not (out / "manifest.json").is_file():
        build_from_chunks(flat.chunks, flat.vectors(np.arange(len(flat))), out, model_id=real_model(real_index))
    disk = DiskIndex.load(out)
    cfg = PipelineConfig.from_env()
    embedder = TextEmbedder.from_config(cfg)
    result = {}
    for name, index in (("flat", flat), ("ivfpq", disk)):
        retriever = Retriever(index, embedder, cfg)
        for mode in ("hybrid", "dense"):
            result[f"{name}/{mode}"] = evaluate_retrieval(retriever, questions, mode)
    return result


def report(results: dict, embed_rate: float | None = None, target: int = 24_000_000) -> str:
    """Markdown tables of a results JSON: per size, the real-corpus comparison, and the projection."""
    lines = [f"ISA: {results['isa']}", "", "| chunks | build s | build peak RSS MB | disk MB | cold load s | "
             "serving RSS MB | recall@10 | hybrid p50 / p95 ms | dense p50 / p95 ms | bm25 p50 / p95 ms | load avg |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    sizes = sorted(results["sizes"], key=int)
    for size in sizes:
        row = results["sizes"][size]
        b, v = row.get("build", {}), row["serve"]
        ms = lambda m, v=v: f"{v[m]['p50_ms']:.1f} / {v[m]['p95_ms']:.1f}"  # noqa: E731
        lines.append(
            f"| {int(size):,} | {b.get('wall_s', float('nan')):.0f} | {b.get('hwm_mb', float('nan')):,.0f} | "
            f"{sum(row['disk_mb'].values()):,.0f} | {v['load_s']:.1f} | {v['rss_mb']:,.0f} | {v['recall@10']:.3f} | "
            f"{ms('hybrid')} | {ms('dense')} | {ms('bm25')} | {b.get('load_avg', 0):.1f} / {v['process']['load_avg']:.1f} |"
        )
        for key in sorted(k for k in row if k.startswith("serve_nprobe_")):
            w = row[key]
            lines.append(f"|   nprobe {key.rsplit('_', 1)[1]} | | | | | {w['rss_mb']:,.0f} | {w['recall@10']:.3f} | "
                         f"{w['hybrid']['p50_ms']:.1f} / {w['hybrid']['p95_ms']:.1f} | "
                         f"{w['dense']['p50_ms']:.1f} / {w['dense']['p95_ms']:.1f} | | |")  # fmt: skip
    if "real" in results:
        lines += ["", "| index | mode | source | hit@1 | hit@5 |", "| --- | --- | --- | --- | --- |"]
        for key, table in results["real"].items():
            name, mode = key.split("/")
            for source in ("MedQuAD", "LiveQA", "PubMedQA", "all"):
                if source in table:
                    m = table[source]
                    lines.append(f"| {name} | {mode} | {source} | {m['hit@1']:.3f} | {m['hit@5']:.3f} |")
    if len(sizes) >= 2:
        (n1, r1), (n2, r2) = [(int(s), results["sizes"][s]) for s in sizes[-2:]]
        fit = lambda a, b: a + (b - a) * (target - n1) / (n2 - n1)  # noqa: E731  linear in chunks
        rss = fit(r1["serve"]["rss_mb"], r2["serve"]["rss_mb"])
        disk = sum(r2["disk_mb"].values()) * target / n2
        lines += ["", f"Projection to {target:,} chunks (linear in chunks through the {n1:,} and {n2:,} figures):", "",
                  "| what | projected | limit | margin |", "| --- | --- | --- | --- |",
                  f"| serving RSS | {rss / 1024:.1f} GB | 16 GB (free CPU Space) | {16 - rss / 1024:.1f} GB |",
                  f"| disk | {disk / 1000:.1f} GB | 50 GB (free CPU Space) | {50 - disk / 1000:.1f} GB |"]  # fmt: skip
        for part, mb in sorted(r2["disk_mb"].items(), key=lambda kv: -kv[1]):
            lines.append(f"|   {part} | {mb * target / n2 / 1000:.1f} GB | | |")
        if "build" in r1 and "build" in r2:
            peak = fit(r1["build"]["hwm_mb"], r2["build"]["hwm_mb"])
            secs = r2["build"]["wall_s"] * target / n2
            lines.append(f"| build peak RSS | {peak / 1024:.1f} GB | 16 GB | {16 - peak / 1024:.1f} GB |")
            lines.append(f"| build time, index part (vectors given) | {secs / 3600:.1f} h | | |")
        if embed_rate:
            lines.append(
                f"| embedding on this CPU at {embed_rate:.0f} chunks/s | {target / embed_rate / 3600:.0f} h | | |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--index", type=Path, default=Path("/work/cache/index-full"), help="a flat index of the shared corpus"
    )
    p.add_argument("--questions", type=Path, default=ROOT.parent.parent / "shared" / "data" / "eval_dev.jsonl")
    p.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 5_000_000])
    p.add_argument("--work", type=Path, default=Path("/tmp/medrag-scale"), help="indexes are written here")
    p.add_argument("--latency-questions", type=int, default=300)
    p.add_argument("--nprobe", type=int, nargs="*", default=[], help="also serve with these nprobe values")
    p.add_argument("--skip-real", action="store_true", help="skip the flat-vs-ivfpq comparison on the real corpus")
    p.add_argument("--keep", action="store_true", help="keep the indexes (default: removed after measuring)")
    p.add_argument("--json", type=Path)
    p.add_argument("--report", type=Path, help="print the tables of an earlier --json file and stop")
    p.add_argument("--embed-rate", type=float, help="chunks/s of the encoder (bench_encoder.py), for the projection")
    p.add_argument("--child", choices=["build", "serve"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--questions-json", help=argparse.SUPPRESS)
    p.add_argument("--qvecs", help=argparse.SUPPRESS)
    p.add_argument("--exact", help=argparse.SUPPRESS)
    p.add_argument("--rerank", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.nprobe:
            args.nprobe = args.nprobe[0]
        print(json.dumps(child_build(args) if args.child == "build" else child_serve(args)))
        return

    import shutil

    if args.report:
        print(report(json.loads(args.report.read_text()), args.embed_rate))
        return

    from medrag.config import PipelineConfig
    from medrag.embedder import TextEmbedder
    from medrag.evaluation import load_questions

    args.work.mkdir(parents=True, exist_ok=True)
    print(f"ISA: {isa()}; cores: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}", flush=True)
    real = Real(args.index)
    questions = [q for q in load_questions(args.questions) if q.answerable]
    step = max(1, len(questions) // args.latency_questions)
    timed = [q.question for q in questions[::step][: args.latency_questions]]
    embedder = TextEmbedder.from_config(PipelineConfig.from_env())
    qvecs = embedder.embed(timed)
    (args.work / "questions.json").write_text(json.dumps(timed))
    np.save(args.work / "qvecs.npy", qvecs)
    results = {"isa": isa(), "real_chunks": len(real.chunks), "sizes": {}}
    for size in args.sizes:
        out = args.work / f"ivfpq-{size}"
        t = time.perf_counter()
        if not (args.work / f"exact-{size}.npy").is_file():  # the same queries and vectors give the same answer
            np.save(args.work / f"exact-{size}.npy", exact_top10(real, size, qvecs))
            print(f"[{size}] exact top-10 for {len(timed)} queries in {time.perf_counter() - t:.0f} s", flush=True)
        row = {}
        if not (out / "manifest.json").is_file():
            built, stats = run_child(
                ["--child", "build", "--index", str(args.index), "--size", str(size), "--out", str(out)]
            )
            row["build"] = {**built, **stats}
            print(f"[{size}] build: {json.dumps(row['build'])}", flush=True)
        row["disk_mb"] = du_mb(out)
        serve_argv = ["--child", "serve", "--out", str(out), "--questions-json", str(args.work / "questions.json"),
                      "--qvecs", str(args.work / "qvecs.npy"), "--exact", str(args.work / f"exact-{size}.npy")]  # fmt: skip
        served, stats = run_child(serve_argv)
        row["serve"] = {**served, "process": stats}
        print(f"[{size}] serve: {json.dumps(row['serve'])}", flush=True)
        for nprobe in args.nprobe:
            served, stats = run_child([*serve_argv, "--nprobe", str(nprobe)])
            row[f"serve_nprobe_{nprobe}"] = {**served, "process": stats}
            print(f"[{size}] serve nprobe {nprobe}: {json.dumps(served)}", flush=True)
        results["sizes"][str(size)] = row
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    if not args.skip_real:
        results["real"] = real_corpus_quality(args, args.index, questions, args.work)
        print(json.dumps(results["real"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results, args.embed_rate))


if __name__ == "__main__":
    main()
