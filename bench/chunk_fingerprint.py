"""Fingerprint of the chunk boundaries of a corpus: proof that a chunker change moved no chunk.

    .venv/bin/python bench/chunk_fingerprint.py data/sample
    .venv/bin/python bench/chunk_fingerprint.py ../shared/data/corpus.jsonl --limit 5000

Prints the number of documents, sentences and chunks, the seconds spent splitting and chunking,
and the sha256 of every (chunk id, start, end) line and of every sentence span: run it before and
after a change to `medrag.chunking`; identical hashes mean identical sentences and chunks. Token
counts come from the real all-MiniLM-L6-v2 tokenizer, as in a build.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medrag.chunking import chunk_documents, split_sentences  # noqa: E402
from medrag.documents import load_documents  # noqa: E402
from medrag.embedder import TextEmbedder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("docs", nargs="+", help="files or folders, as for index_builder.py --docs")
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents")
    args = ap.parse_args()
    docs = list(itertools.islice(load_documents(args.docs).documents, args.limit))
    embedder = TextEmbedder()
    t0 = time.perf_counter()
    spans = hashlib.sha256()
    n_sentences = 0
    for doc in docs:
        for start, end in split_sentences(doc.text):
            spans.update(f"{doc.id}\t{start}\t{end}\n".encode())
            n_sentences += 1
    t1 = time.perf_counter()
    chunks = chunk_documents(docs, embedder.count_tokens, count_tokens_batch=embedder.count_tokens_batch)
    t2 = time.perf_counter()
    boundaries = hashlib.sha256("".join(f"{c.id}\t{c.start}\t{c.end}\n" for c in chunks).encode())
    print(f"documents {len(docs)}  sentences {n_sentences}  chunks {len(chunks)}")
    print(f"seconds: split {t1 - t0:.2f}  chunk {t2 - t1:.2f}")
    print(f"sentences sha256 {spans.hexdigest()}")
    print(f"chunks    sha256 {boundaries.hexdigest()}")


if __name__ == "__main__":
    main()
