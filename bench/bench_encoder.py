"""Encoder throughput on this host: fp32 against int8 ONNX, with the ISA it ran on.

    python bench/bench_encoder.py [--corpus ../shared/data/corpus.jsonl] [--docs 400] [--repeat 2]

Chunks the first `--docs` documents of the shared corpus the way the index build does, embeds
them with each precision (after one warm-up batch), and prints chunks/s, the CPU's vector
extensions, the load average, and how close int8 vectors are to fp32 (cosine per chunk and
top-10 neighbour overlap among the chunks). Retrieval metrics are `python -m medrag.evaluate`'s.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medrag.chunking import chunk_documents  # noqa: E402
from medrag.config import PipelineConfig  # noqa: E402
from medrag.documents import load_documents  # noqa: E402
from medrag.embedder import TextEmbedder  # noqa: E402


def isa() -> str:
    """The SIMD extensions that matter to onnxruntime and faiss, from /proc/cpuinfo."""
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    except (OSError, AttributeError):
        return "unknown"
    wanted = ["avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "amx_int8"]
    model = re.search(r"^model name\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    return f"{model.group(1).strip() if model else '?'}; " + " ".join(f for f in wanted if f in flags)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("../shared/data/corpus.jsonl"))
    p.add_argument("--docs", type=int, default=400)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    cfg = PipelineConfig.from_env()
    docs = load_documents([args.corpus]).documents[: args.docs]
    tok = TextEmbedder.from_config(cfg)
    chunks = chunk_documents(docs, tok.count_tokens, cfg.chunk_tokens, cfg.chunk_overlap, tok.count_tokens_batch)
    texts = [c.embed_text for c in chunks]
    print(f"ISA: {isa()}\nthreads: {len(os.sched_getaffinity(0))}; {len(texts)} chunks of {len(docs)} documents")
    vecs = {}
    for precision in ("fp32", "int8"):
        e = TextEmbedder.from_config(cfg.replace(embedding_precision=precision))
        e.embed(texts[:64])  # warm-up: session, arena
        best = float("inf")
        for _ in range(args.repeat):
            load0, t0 = os.getloadavg()[0], time.perf_counter()
            vecs[precision] = e.embed(texts)
            best = min(best, time.perf_counter() - t0)
        print(f"{precision}: {len(texts) / best:.1f} chunks/s (best of {args.repeat}; load average {load0:.2f})")
    cos = (vecs["fp32"] * vecs["int8"]).sum(1)
    print(f"int8 vs fp32 cosine: min {cos.min():.4f}  p1 {np.percentile(cos, 1):.4f}  mean {cos.mean():.4f}")
    overlap = []
    for a, b in ((vecs["fp32"], vecs["fp32"]), (vecs["int8"], vecs["int8"])):
        s = a @ b.T
        np.fill_diagonal(s, -1)
        overlap.append(np.argsort(-s, axis=1)[:, :10])
    same = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(*overlap, strict=True)])
    print(f"top-10 neighbours among the chunks, int8 vs fp32: {same:.3f} overlap")


if __name__ == "__main__":
    main()
