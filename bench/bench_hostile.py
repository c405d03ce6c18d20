"""Seconds the loaders and the chunker take on hostile inputs from issue 9 (each was quadratic or hung).

    .venv/bin/python bench/bench_hostile.py [--size 80000]

One line per input: what it is, its size, the seconds, and what came out. The inputs: a run of
`size` characters without a space (split_sentences), an inline base64 image in a document
(chunking with the real tokenizer), a long run of spaces (normalise), a markdown heading of #s,
HTML nested 100,000 deep, HTML with `size / 4` unclosed comments or tags, and a FIFO in a folder.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medrag.chunking import chunk_document, split_sentences  # noqa: E402
from medrag.documents import load_documents, normalise  # noqa: E402
from medrag.embedder import TextEmbedder  # noqa: E402
from medrag.types import Document  # noqa: E402


def timed(what: str, size: int, fn) -> None:
    t0 = time.perf_counter()
    out = fn()
    print(f"{what:<52} {size:>9,} chars  {time.perf_counter() - t0:8.3f} s   {out}")


def load(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    result = load_documents([path])
    path.unlink()
    if result.skipped:
        return f"skipped: {result.skipped[0].reason[:60]}"
    return f"{len(result.documents)} document(s), {sum(len(d.text) for d in result.documents):,} chars of text"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=80_000, help="characters in each long run (the issue used 80,000)")
    n = ap.parse_args().size
    embedder = TextEmbedder()
    blob = base64.b64encode(random.Random(0).randbytes(n * 3 // 4)).decode()
    image = Document("img", "Scan", f"The scan is below. ![scan](data:image/png;base64,{blob}) End.")
    timed("split_sentences('a' * size)", n, lambda: f"{len(split_sentences('a' * n))} sentence(s)")
    timed(
        "split_sentences(inline base64 image)", len(image.text), lambda: f"{len(split_sentences(image.text))} sentences"
    )
    timed(
        "chunk_document(inline base64 image), real tokenizer",
        len(image.text),
        lambda: (
            f"{len(chunk_document(image, embedder.count_tokens, count_tokens_batch=embedder.count_tokens_batch))} chunks"
        ),
    )
    timed("normalise('a' + ' ' * size + 'b')", n, lambda: f"{len(normalise('a' + ' ' * n + 'b'))} chars")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed("markdown heading '# ' + '#' * size + 'x'", n, lambda: load(tmp, "h.md", "# " + "#" * n + "x\n\nBody."))
        deep = "<div>" * 100_000 + "x" + "</div>" * 100_000
        timed("HTML nested 100,000 deep", len(deep), lambda: load(tmp, "deep.html", deep))
        for unit in ("<!--", "<a", "<![CDATA["):
            page = "<p>Before.</p>" + unit * (n // 4)
            timed(f"HTML with {n // 4:,} x {unit!r}", len(page), lambda page=page: load(tmp, "bad.html", page))
        if hasattr(os, "mkfifo"):
            os.mkfifo(tmp / "pipe.txt")
            (tmp / "a.txt").write_text("A\nText.")
            timed("a folder holding a FIFO nobody writes to", 0, lambda: load_documents([tmp]).skipped[0].reason[:60])


if __name__ == "__main__":
    main()
