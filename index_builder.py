"""Build a MedRAG index folder from documents, and optionally push it to the Hugging Face Hub.

    python index_builder.py                                   # the built-in sample corpus -> data/index
    python index_builder.py --docs ../shared/data/corpus.jsonl --out data/index-full
    python index_builder.py --docs notes/ guides.pdf --index-type hnsw --out data/index-mine
    python index_builder.py --docs pubmed.jsonl --out data/index-pubmed          # large: ivfpq, streamed, resumable
    python index_builder.py --out data/index-full --no-build --engine milvus --milvus-uri http://HOST:19530
    python index_builder.py --out data/index-full --push-to-hub USER/medrag-index --metrics eval.json

Bad files are reported by name and skipped (--strict stops at the first one). The folder is
written to a temporary sibling and renamed into place, so a failed build leaves the old one.
--out must be absent, empty, or an index (which is replaced): any other folder is refused before
any work. Progress goes to stderr: a bar on a terminal, a line at each twentieth elsewhere.
Every error (a refused folder, a full disk, a read-only --out) is one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from medrag.config import PipelineConfig
from medrag.errors import MedRAGError


def parse_args(argv: list[str] | None, cfg: PipelineConfig) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", nargs="+", help=f"files or folders to index (default: {cfg.sample_docs})")
    p.add_argument("--out", type=Path, default=Path(cfg.index_dir), help=f"index folder (default: {cfg.index_dir})")
    p.add_argument(
        "--index-type",
        choices=["auto", "flat", "hnsw", "ivf", "ivfpq"],
        default=cfg.index_type if cfg.index_type != "flat" else "auto",  # MEDRAG_INDEX_TYPE still applies
        help="auto (default): flat, or ivfpq (on disk, streamed, resumable) from ~500k chunks",
    )
    p.add_argument("--shard-chunks", type=int, default=None, help="ivfpq: chunks per resumable shard")
    p.add_argument("--engine", choices=["local", "milvus"], default="local", help="milvus: also upload to Milvus")
    p.add_argument("--milvus-uri", default=cfg.milvus_uri, help="a file (embedded milvus-lite) or http://HOST:19530")
    p.add_argument("--collection", default=cfg.milvus_collection, help="the Milvus collection to (re)create")
    p.add_argument(
        "--chunk-tokens", type=int, default=cfg.chunk_tokens, help="max word pieces per chunk, title included"
    )
    p.add_argument(
        "--chunk-overlap", type=int, default=cfg.chunk_overlap, help="word pieces repeated across a boundary"
    )
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file instead of skipping it")
    p.add_argument("--push-to-hub", metavar="USER/NAME", help="upload the index folder to this Hub dataset repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--metrics", type=Path, help="evaluation JSON (python -m medrag.evaluate --json) for the card")
    p.add_argument("--no-build", action="store_true", help="push an existing --out folder without rebuilding")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("medrag").setLevel(logging.INFO)
    cfg = PipelineConfig.from_env()
    args = parse_args(argv, cfg)
    cfg = cfg.replace(chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
    try:
        if args.chunk_tokens < 32 or not 0 <= args.chunk_overlap < args.chunk_tokens // 2:
            raise MedRAGError("--chunk-tokens must be >= 32 and --chunk-overlap between 0 and half of it")
        if not args.no_build:
            from medrag.build import build_index

            docs = args.docs or [cfg.sample_docs]
            missing = [d for d in docs if not Path(d).exists()]
            if missing:
                raise MedRAGError(f"not found: {', '.join(missing)}: check the --docs paths")
            from medrag.indexes import choose_index_type

            index_type = choose_index_type(docs) if args.index_type == "auto" else args.index_type
            if index_type == "ivfpq":
                from medrag.shards import SHARD_CHUNKS, build_streaming

                shard = args.shard_chunks or SHARD_CHUNKS
                report = build_streaming(docs, args.out, cfg, strict=args.strict, shard_chunks=shard)
            else:
                cfg = cfg.replace(index_type=index_type)
                report = build_index(docs, args.out, cfg, strict=args.strict, progress=True)
            print(report.summary())
        if args.engine == "milvus":
            from medrag.milvus_index import MilvusIndex

            MilvusIndex.upload(args.out, args.milvus_uri, args.collection, cfg)
            print(f"uploaded {args.out} to Milvus at {args.milvus_uri}, collection {args.collection!r}")
        if args.push_to_hub:
            push(args.out, args.push_to_hub, args.private, args.metrics)
    except MedRAGError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # reading --metrics, or a disk error outside the index writer
        print(f"error: {e.strerror or e} ({e.filename or args.out}): check the path and try again", file=sys.stderr)
        return 2
    return 0


def push(folder: Path, repo: str, private: bool, metrics_file: Path | None) -> None:
    from medrag.hub import index_card, push_index
    from medrag.index import VectorIndex

    manifest = VectorIndex.read_manifest(folder)
    metrics = json.loads(metrics_file.read_text()) if metrics_file else None
    sha = push_index(folder, repo, private=private, card=index_card(manifest, metrics))
    print(f"pushed {folder} to https://huggingface.co/datasets/{repo} at commit {sha}")


if __name__ == "__main__":
    sys.exit(main())
