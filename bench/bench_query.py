"""Query latency (embed one question + dense or hybrid search), embedding throughput, peak RSS.

    .venv/bin/python bench/bench_query.py                          # build /tmp/medrag-full-index, then time
    .venv/bin/python bench/bench_query.py --index /tmp/medrag-full-index   # reuse a built index
    .venv/bin/python bench/bench_query.py --limit 2000 --index /tmp/ix --rebuild

Build: documents from a corpus jsonl (id/title/text/url/source), chunked by medrag.chunking when
it imports (else one chunk per document, cut at 256 word pieces by the embedder), or read from
--chunks (Chunk.to_dict per line); embedded with TextEmbedder (ONNX by default), indexed, saved.
Latency: one request at a time after a warm-up, `Retriever.search(question, k=5, mode)`.
--compare also times the torch backend on a sample and one vs all threads for a single query.

Shortcuts on purpose: wall-clock on a shared machine; the load average is printed beside the
figures. Peak RSS is the process's ru_maxrss, so a build's peak includes loading the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medrag.config import PipelineConfig  # noqa: E402
from medrag.embedder import TextEmbedder  # noqa: E402
from medrag.index import VectorIndex  # noqa: E402
from medrag.retriever import Retriever  # noqa: E402
from medrag.types import Chunk, Document  # noqa: E402

DATA = Path("/work/shared/data")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def load_chunks(args, embedder: TextEmbedder, cfg: PipelineConfig) -> tuple[list[Chunk], str, dict]:
    if args.chunks:
        lines = Path(args.chunks).read_bytes()
        chunks = [Chunk.from_dict(json.loads(line)) for line in lines.splitlines() if line.strip()]
        return chunks, hashlib.sha256(lines).hexdigest(), {"from": str(args.chunks)}
    raw = Path(args.corpus).read_bytes()
    rows = [json.loads(line) for line in raw.splitlines()[: args.limit or None] if line.strip()]
    docs = [Document(r["id"], r.get("title", ""), r["text"], r.get("url", ""), r.get("source", "")) for r in rows]
    try:
        from medrag.chunking import chunk_documents
    except ImportError:  # one chunk per document; the embedder cuts it at 256 word pieces
        chunks = [Chunk(f"{d.id}#0", d.id, d.title, d.text, d.url, d.source, 0, 0, len(d.text)) for d in docs]
        return chunks, hashlib.sha256(raw).hexdigest(), {"one_per_document": True}
    chunks = chunk_documents(
        docs, embedder.count_tokens, cfg.chunk_tokens, cfg.chunk_overlap, embedder.count_tokens_batch
    )  # fmt: skip
    return chunks, hashlib.sha256(raw).hexdigest(), {"max_tokens": cfg.chunk_tokens, "overlap": cfg.chunk_overlap}


def build(args, embedder: TextEmbedder, cfg: PipelineConfig) -> dict:
    t0 = time.perf_counter()
    chunks, corpus_sha, chunker = load_chunks(args, embedder, cfg)
    t1 = time.perf_counter()
    embedder.embed(["warm up"])  # model load / ONNX export outside the throughput figure
    t2 = time.perf_counter()
    vectors = embedder.embed([c.embed_text for c in chunks], progress=args.progress)
    t3 = time.perf_counter()
    index = VectorIndex.build(
        chunks, vectors, model_id=embedder.model_id, dim=embedder.dim, index_type=args.index_type,
        chunker=chunker, corpus_sha256=corpus_sha,
    )  # fmt: skip
    index.save(args.index)
    t4 = time.perf_counter()
    return {
        "chunks": len(chunks),
        "documents": index.manifest["counts"]["documents"],
        "chunk_s": round(t1 - t0, 1),
        "model_load_s": round(t2 - t1, 1),
        "embed_s": round(t3 - t2, 1),
        "embed_chunks_per_s": round(len(chunks) / (t3 - t2), 1),
        "index_and_save_s": round(t4 - t3, 1),
        "backend": embedder.backend,
        "build_peak_rss_mb": round(peak_rss_mb()),
        "export_child_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


def time_queries(retriever: Retriever, questions: list[str], mode: str) -> dict:
    for q in questions[:10]:
        retriever.search(q, k=5, mode=mode)  # warm-up
    ms = []
    for q in questions:
        t = time.perf_counter()
        retriever.search(q, k=5, mode=mode)
        ms.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def time_embed_query(embedder: TextEmbedder, questions: list[str]) -> dict:
    for q in questions[:10]:
        embedder.embed_query(q)
    ms = []
    for q in questions:
        t = time.perf_counter()
        embedder.embed_query(q)
        ms.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def compare(embedder: TextEmbedder, texts: list[str], questions: list[str], cache_dir: str) -> dict:
    """ONNX vs torch on the same sample; one thread vs all for the ONNX single-query path."""
    out = {}
    for backend in ("onnx", "torch"):
        e = embedder if backend == embedder.backend else TextEmbedder(backend=backend, cache_dir=cache_dir)
        e.embed(texts[:64])
        t = time.perf_counter()
        e.embed(texts)
        out[backend] = {
            "chunks_per_s": round(len(texts) / (time.perf_counter() - t), 1),
            "query": time_embed_query(e, questions),
        }
    runner = embedder._load()
    if embedder.backend == "onnx":
        import onnxruntime as ort

        default = runner.session
        for threads in (1, 2):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            runner.session = ort.InferenceSession(str(runner.onnx_path), opts, providers=["CPUExecutionProvider"])
            out[f"onnx_query_{threads}_threads"] = time_embed_query(embedder, questions)
        runner.session = default
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(DATA / "corpus.jsonl"))
    p.add_argument("--chunks", help="a chunks jsonl (Chunk.to_dict per line) instead of chunking the corpus")
    p.add_argument("--questions", default=str(DATA / "eval_dev.jsonl"))
    p.add_argument("--n", type=int, default=300, help="questions to time, spread over the file")
    p.add_argument("--index", default="/tmp/medrag-full-index", help="load from here, or build here when absent")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--limit", type=int, default=0, help="first N documents only (0: all)")
    p.add_argument("--index-type", default="flat")
    p.add_argument("--backend", default="auto")
    p.add_argument("--cache-dir", default=PipelineConfig().cache_dir)
    p.add_argument("--compare", action="store_true", help="also time torch vs onnx and 1 vs 2 threads")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()

    cfg = PipelineConfig(embedding_backend=args.backend, cache_dir=args.cache_dir, index_type=args.index_type)
    embedder = TextEmbedder.from_config(cfg)
    result: dict = {"load_average_1m": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
    if args.rebuild or not (Path(args.index) / "manifest.json").is_file():
        result["build"] = build(args, embedder, cfg)
    t = time.perf_counter()
    index = VectorIndex.load(args.index, expect_model=embedder.model_id, expect_dim=embedder.dim)
    result["load_s"] = round(time.perf_counter() - t, 2)
    result["chunks"] = len(index)
    lines = [line for line in Path(args.questions).read_text().split("\n") if line.strip()]  # not splitlines: U+2028
    step = max(1, len(lines) // args.n)
    questions = [json.loads(line)["question"] for line in lines[::step]][: args.n]
    retriever = Retriever(index, embedder, cfg)
    result["embed_query"] = time_embed_query(embedder, questions)
    for mode in ("dense", "bm25", "hybrid"):
        result[mode] = time_queries(retriever, questions, mode)
    if args.compare:
        sample = [c.embed_text for c in index.chunks[:: max(1, len(index) // 512)]][:512]
        result["compare"] = compare(embedder, sample, questions, args.cache_dir)
    result["peak_rss_mb"] = round(peak_rss_mb())
    result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
