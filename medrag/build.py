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


def is_fresh(folder: str | Path, documents, config: PipelineConfig) -> bool:
    """Whether `folder` holds an index of exactly these documents, chunked and embedded as `config` says."""
    try:
        manifest = VectorIndex.read_manifest(folder)
    except IndexLoadError:
        return False
    chunker = manifest.get("chunker", {})
    return (
        manifest.get("corpus_sha256") == corpus_sha256(documents)
        and same_model(manifest.get("embedding_model", ""), config.embedding_model)
        and chunker.get("max_tokens") == config.chunk_tokens
        and chunker.get("overlap") == config.chunk_overlap
        and manifest.get("index_type") == config.index_type
    )


def ensure_index(
    paths: Sequence[str | Path],
    out: str | Path,
    config: PipelineConfig,
    *,
    embedder=None,
    extra: dict | None = None,
    prebuilt=None,
) -> bool:
    """Build `out` from `paths` unless it already holds an index of these documents and this model.

    `extra` goes into the manifest of what is written (the sample's attribution). `prebuilt`: an index
    folder shipped with the code (the sample corpus's, data/sample_index); when it is fresh for these
    documents it is copied (loaded with its checksums checked, saved atomically) instead of embedding
    the corpus again, which is most of a Space's cold start.
    Returns True when it wrote `out`. Used for the built-in sample corpus (medrag.index_source) and the
    evaluation CLI.
    """
    have_out = (Path(out) / "manifest.json").is_file()
    if not have_out and not (prebuilt and (Path(prebuilt) / "manifest.json").is_file()):
        return _build(paths, out, config, embedder, extra)
    docs = load_documents(paths).documents
    if have_out:
        if is_fresh(out, docs, config):
            return False
        log.info("index at %s is stale: rebuilding", out)
    if prebuilt and is_fresh(prebuilt, docs, config):
        index = VectorIndex.load(prebuilt, expect_model=config.embedding_model)
        index.manifest["extra"] = {**index.manifest.get("extra", {}), **(extra or {})}
        index.save(out)
        log.info("index at %s copied from the prebuilt %s", out, prebuilt)
        return True
    return _build(paths, out, config, embedder, extra)


def _build(paths, out, config, embedder, extra=None) -> bool:
    report = build_index(paths, out, config, embedder=embedder, extra=extra)
    log.info(report.summary())
    return True
