"""Documents -> chunks -> embeddings -> an index folder, with a report of what happened.

`build_index` is what `index_builder.py`, `python -m medrag.evaluate` and the app (for the
built-in sample corpus) call. `ensure_index` rebuilds only when the folder is missing or was
built from other documents or another model, so a demo start costs one manifest read.

Before any work `build_index` checks that `out` may be written (absent, empty, or an index:
`medrag.index.prepare_out`) and is not inside a documents folder, so `--docs X --out X` loses
nothing. With `progress=True` it reports files loaded, documents chunked and chunks embedded:
a bar on a terminal, a line at each twentieth with the rate and the time left elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrag.chunking import chunk_documents
from medrag.config import PipelineConfig
from medrag.documents import SkippedFile, corpus_sha256, load_documents
from medrag.embedder import same_model
from medrag.errors import IndexLoadError, IndexWriteError, MedRAGError
from medrag.index import VectorIndex, prepare_out
from medrag.progress import Progress

log = logging.getLogger(__name__)
STEP = 1024  # documents per chunking call, texts per embedding call: one progress step each; a
# thousand texts sorted by length still fill the embedder's batches with little padding


@dataclass
class BuildReport:
    out: Path
    documents: int = 0
    chunks: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # load, chunk, embed, index, total
    corpus_sha256: str = ""

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds["total"] if self.seconds.get("total") else 0.0

    def summary(self) -> str:
        lines = [
            f"Index written to {self.out}",
            f"  documents: {self.documents}   chunks: {self.chunks}   skipped files: {len(self.skipped)}",
            "  seconds: " + "  ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
            f"  throughput: {self.chunks_per_second:.1f} chunks/s",
        ]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def build_index(
    paths: Sequence[str | Path],
    out: str | Path,
    config: PipelineConfig,
    *,
    embedder=None,
    strict: bool = False,
    progress: bool = False,
    extra: dict | None = None,
) -> BuildReport:
    """Load, chunk, embed and index `paths`; write the folder atomically to `out`."""
    from medrag.embedder import TextEmbedder

    report = BuildReport(out=Path(out))
    _check_out(Path(out), paths)
    t0 = time.perf_counter()
    loaded = load_documents(paths, strict=strict, progress=progress)
    report.skipped = loaded.skipped
    docs = loaded.documents
    if not docs:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in loaded.skipped[:5])
        raise MedRAGError(f"No documents could be read from {', '.join(map(str, paths))}. {reasons}".strip())
    report.documents, report.corpus_sha256 = len(docs), corpus_sha256(docs)
    t1 = time.perf_counter()

    embedder = embedder or TextEmbedder.from_config(config)
    bar = Progress(len(docs), "Chunking", "documents", enabled=progress)
    chunks = []
    for i in range(0, len(docs), STEP):
        chunks += chunk_documents(
            docs[i : i + STEP],
            embedder.count_tokens,
            max_tokens=config.chunk_tokens,
            overlap=config.chunk_overlap,
            count_tokens_batch=getattr(embedder, "count_tokens_batch", None),
        )
        bar.update(len(docs[i : i + STEP]))
    bar.close()
    report.chunks = len(chunks)
    t2 = time.perf_counter()

    texts = [c.embed_text for c in chunks]
    bar = Progress(len(texts), "Embedding", "chunks", enabled=progress)
    parts = []
    for i in range(0, len(texts), STEP):
        parts.append(embedder.embed(texts[i : i + STEP]))
        bar.update(len(texts[i : i + STEP]))
    bar.close()
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
    t3 = time.perf_counter()

    index = VectorIndex.build(
        chunks,
        vectors,
        model_id=embedder.model_id,
        dim=embedder.dim,
        index_type=config.index_type,
        chunker={"max_tokens": config.chunk_tokens, "overlap": config.chunk_overlap, "title_in_embedding": True},
        corpus_sha256=report.corpus_sha256,
        extra={"documents": len(docs), "sources": sorted({d.source for d in docs})[:50], **(extra or {})},
    )
    index.save(out)
    t4 = time.perf_counter()
    report.seconds = {"load": t1 - t0, "chunk": t2 - t1, "embed": t3 - t2, "index": t4 - t3, "total": t4 - t0}
    return report


def _check_out(out: Path, paths: Sequence[str | Path]) -> None:
    """Refuse, before any work, an output folder that holds other files or lies inside the documents."""
    prepare_out(out)
    where = out.resolve()
    for given in map(Path, paths):
        if given.is_dir() and not given.is_symlink() and where.is_relative_to(given.resolve()):
            raise IndexWriteError(
                f"The index folder {out} is inside the documents folder {given}: the next build would read "
                "the index as documents. Choose an --out outside it"
            )


def ensure_index(paths: Sequence[str | Path], out: str | Path, config: PipelineConfig, *, embedder=None) -> bool:
    """Build `out` from `paths` unless it already holds an index of these documents and this model.

    Returns True when it (re)built. Used for the built-in sample corpus and the evaluation CLI.
    """
    try:
        manifest = VectorIndex.read_manifest(out)
    except IndexLoadError:
        manifest = None
    if manifest is not None:
        docs = load_documents(paths).documents
        fresh = (
            manifest.get("corpus_sha256") == corpus_sha256(docs)
            and same_model(manifest.get("embedding_model", ""), config.embedding_model)
            and manifest.get("chunker", {}).get("max_tokens") == config.chunk_tokens
            and manifest.get("chunker", {}).get("overlap") == config.chunk_overlap
            and manifest.get("index_type") == config.index_type
        )
        if fresh:
            return False
        log.info("index at %s is stale: rebuilding", out)
    report = build_index(paths, out, config, embedder=embedder)
    log.info(report.summary())
    return True
