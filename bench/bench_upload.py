"""Upload to first cited answer: a 20-page PDF added to a visitor's session, then a question about it.

    python bench/bench_upload.py [--index DIR] [--pages 20] [--repeat 3]

The PDF is written by the script (tests/pdfs.py) from consecutive MedQuAD sections of
../shared/data/corpus.jsonl (or --corpus) when it is there, else from the built-in sample corpus (data/sample),
wrapped at 95 characters, 48 lines a page. The question asks about a topic from the middle of the
file. The app is warm, as a visitor meets it: encoder and index loaded, extractive generator.
Without --index the sample corpus is indexed into a temporary folder first (not timed).

Prints wall and CPU seconds (CPU: this process's threads and the PDF reader's child) for load,
chunk, embed (+ index) and the first streamed answer text that cites a source, then the total
from upload to that answer; target <= 15 s on the 2-core dev machine. Not a test: quote figures
with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pdfs import make_pdf, paginate  # noqa: E402

from medrag.build import build_index  # noqa: E402
from medrag.config import PipelineConfig  # noqa: E402
from medrag.index import VectorIndex  # noqa: E402
from medrag.pipeline import RAGPipeline  # noqa: E402
from medrag.session_docs import SessionDocs  # noqa: E402

SHARED = [ROOT.parent / "shared", ROOT.parents[1] / "shared"]  # beside a checkout, or beside its worktrees' folder
CORPUS = next((d / "data" / "corpus.jsonl" for d in SHARED if (d / "data" / "corpus.jsonl").is_file()), None)
LINES_PER_PAGE = 48  # Helvetica 11 pt at 14 pt leading on a Letter page, as tests/pdfs.py lays it out


def sections(pages: int, corpus: Path | None) -> tuple[list[str], str, str]:
    """(paragraphs for `pages` pages, the question, where the text came from)."""
    wanted = pages * LINES_PER_PAGE * 95 * 0.8  # characters that fill the pages, blank lines and wrap included
    paragraphs, foci = [], []
    if corpus is not None and corpus.is_file():
        source = f"{corpus} (MedQuAD sections, consecutive from line 4001)"
        with open(corpus, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if n < 4000:
                    continue
                row = json.loads(line)
                if row.get("collection") != "MedQuAD":
                    continue
                paragraphs += [row["title"], *[p for p in row["text"].split("\n") if p.strip()]]
                foci.append((row.get("focus") or row["title"], row.get("qtype", "")))
                if sum(map(len, paragraphs)) > wanted:
                    break
    else:
        source = f"{ROOT / 'data' / 'sample'} (the built-in sample corpus)"
        for path in sorted((ROOT / "data" / "sample").glob("*.md")):
            text = re.sub(r"\A---\n.*?\n---\n", "", path.read_text(encoding="utf-8"), flags=re.S)
            paragraphs += [p.lstrip("# ") for p in text.split("\n") if p.strip()]
            foci.append((path.stem.replace("-", " "), "information"))
            if sum(map(len, paragraphs)) > wanted:
                break
    focus = foci[len(foci) // 2][0]
    return paragraphs, f"What are the symptoms of {focus}?", source


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", help="index folder (default: the sample corpus, indexed into a temporary folder)")
    p.add_argument("--pages", type=int, default=20)
    p.add_argument("--corpus", type=Path, default=CORPUS, help="corpus.jsonl to take the PDF's text from")
    p.add_argument("--repeat", type=int, default=3, help="uploads, each into a fresh session")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    config = PipelineConfig.from_env()
    config.generator = "extractive"
    if args.index:
        config.index_dir = args.index
    else:
        config.index_dir = str(tmp / "index")
        build_index([config.sample_docs], config.index_dir, config)
    pipeline = RAGPipeline(config, index=VectorIndex.load(config.index_dir))
    pipeline.retriever.search("warm up", k=1)  # a warm app: encoder and index loaded
    pipeline.answer("What are the symptoms of asthma?")

    paragraphs, question, source = sections(args.pages, args.corpus)
    pdf = tmp / "my-notes.pdf"
    pdf.write_bytes(make_pdf(paginate(paragraphs, args.pages, LINES_PER_PAGE), "My health notes"))
    print(f"PDF: {args.pages} pages, {pdf.stat().st_size / 1024:.0f} KiB, text from {source}")
    print(f"question: {question}")
    print(f"index: {config.index_dir} ({len(pipeline.index)} chunks); load average {os.getloadavg()[0]:.2f}")

    for run in range(1, args.repeat + 1):
        docs = SessionDocs(pipeline.embedder, config)
        t0, c0 = time.perf_counter(), _cpu()
        result = docs.add_file(pdf, pdf.name)
        t1, c1 = time.perf_counter(), _cpu()
        first = None
        for answer in pipeline.stream(question, user_docs=docs):
            if re.search(r"\[\d+\]", answer.text):
                first = answer
                break
        t2, c2 = time.perf_counter(), _cpu()
        cited = first is not None and any(h.origin == "upload" for h in first.sources)
        w, c = result.seconds, result.cpu_seconds
        print(
            f"run {run}: {result.pages} pages, {result.chunks} passages | "
            + " | ".join(f"{k} {w[k]:.2f} s wall {c[k]:.2f} s CPU" for k in ("load", "chunk", "embed", "index"))
            + f" | first cited answer {t2 - t1:.2f} s wall {c2 - c1:.2f} s CPU"
            + f" | upload to first cited answer {t2 - t0:.2f} s wall {c2 - c0:.2f} s CPU"
            + f" | an uploaded passage among the sources: {cited}"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    raise SystemExit(main())
