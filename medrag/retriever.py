"""`Retriever`: a question -> ranked `Hit`s, by dense cosine, BM25, or both fused with RRF.

Hybrid ranking is reciprocal rank fusion (Cormack et al., 2009): each retriever contributes
1 / (rrf_k + rank) for every chunk in its top `candidate_k`, ranks 1-based. It needs no score
calibration between cosine and BM25, which live on different scales.

In every mode, the section prior (medrag.sections) then lifts, within one page, the section the
question asks for ("how to diagnose X" -> "X (exams and tests)") to the top of that page's chunks.

Every returned hit carries its dense cosine, also when only BM25 found it (computed from the
stored vector), because `evidence()` - the gate that lets generation decline - reads it.

Shortcuts taken on purpose: no document-level de-duplication (evaluation works per document
itself; several chunks of one document may be returned); ties in RRF break by dense rank, then
BM25 rank, then row, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medrag.config import PipelineConfig
from medrag.errors import ConfigError
from medrag.index import VectorIndex
from medrag.sections import chunk_section, chunk_topic, promote, question_sections
from medrag.types import Hit

MODES = ("dense", "bm25", "hybrid")


def evidence(hits: Sequence[Hit]) -> float:
    """How strongly the corpus covers a question: the best dense cosine among `hits` (0.0 for none).

    Cosine rather than the RRF score: RRF says only how ranks agree, not whether anything is close.
    The pipeline declines to answer below `PipelineConfig.min_evidence`.
    """
    return max((h.dense_score for h in hits if h.dense_score is not None), default=0.0)


class Retriever:
    def __init__(self, index: VectorIndex, embedder, config: PipelineConfig | None = None):
        self.index, self.embedder = index, embedder  # embedder: anything with embed(texts) -> (n, d) array
        self.config = config or PipelineConfig()
        labels = getattr(index, "row_labels", None)  # a large on-disk index keeps them per row: no chunk is read
        if labels is not None:
            self._topics, self._sections = labels()
        else:
            self._topics = [chunk_topic(c) for c in index.chunks]  # for the section prior (medrag.sections)
            self._sections = [chunk_section(c) for c in index.chunks]

    evidence = staticmethod(evidence)  # so the pipeline can ask the retriever it holds

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        return self.search_batch([query], k, mode)[0]

    def search_batch(self, queries: list[str], k: int | None = None, mode: str | None = None) -> list[list[Hit]]:
        """Hits for many queries: one embedding call and one FAISS call for all of them."""
        mode = mode or self.config.retrieval_mode
        if mode not in MODES:
            raise ConfigError(f"retrieval mode {mode!r} is not one of {', '.join(MODES)}: fix MEDRAG_RETRIEVAL_MODE")
        k = k or self.config.top_k
        if not queries:
            return []
        depth = max(k, self.config.candidate_k) if mode == "hybrid" else k
        vecs = self._embed(queries)  # in bm25 mode too: every hit gets its cosine for the evidence gate
        dense = self.index.search_dense(vecs, depth) if mode != "bm25" else None
        bm25 = self.index.search_bm25(queries, depth) if mode != "dense" else None
        return [
            self._hits(queries[i], vecs[i], _column(dense, i), _column(bm25, i), k, mode) for i in range(len(queries))
        ]

    def _embed(self, queries: list[str]) -> np.ndarray:
        if len(queries) == 1 and hasattr(self.embedder, "embed_query"):
            return np.asarray(self.embedder.embed_query(queries[0]), dtype=np.float32)[None, :]
        return np.asarray(self.embedder.embed(queries), dtype=np.float32)

    def _hits(self, query: str, vec: np.ndarray, dense: dict, bm25: dict, k: int, mode: str) -> list[Hit]:
        """Rank one query's candidates ({row: (score, rank)} per retriever) and build its Hits."""
        rows = dense.keys() | bm25.keys()
        if mode == "hybrid":
            c = self.config.rrf_k
            score = {
                r: (1.0 / (c + dense[r][1]) if r in dense else 0.0) + (1.0 / (c + bm25[r][1]) if r in bm25 else 0.0)
                for r in rows
            }
        else:
            score = {r: (dense if mode == "dense" else bm25)[r][0] for r in rows}
        if self.config.section_prior:
            score = promote(score, question_sections(query), self._topics, self._sections)
        last = len(self.index) + 1  # a retriever that missed a row ranks it after everything
        key = lambda r: (-score[r], dense.get(r, (0, last))[1], bm25.get(r, (0, last))[1], r)  # noqa: E731
        order = sorted(rows, key=key)[:k]
        only_bm25 = [r for r in order if r not in dense]
        cosine = dict(zip(only_bm25, (self.index.vectors(only_bm25) @ vec).tolist(), strict=True)) if only_bm25 else {}
        hits = []
        for rank, r in enumerate(order, start=1):
            d_score, d_rank = dense.get(r, (cosine.get(r), None))
            b_score, b_rank = bm25.get(r, (None, None))
            hits.append(
                Hit(
                    chunk=self.index.chunks[r],
                    score=score[r],
                    rank=rank,
                    dense_score=d_score,
                    bm25_score=b_score,
                    dense_rank=d_rank,
                    bm25_rank=b_rank,
                    retrievers=tuple(name for name, seen in (("dense", dense), ("bm25", bm25)) if r in seen),
                )
            )
        return hits


def _column(result: tuple[np.ndarray, np.ndarray] | None, i: int) -> dict[int, tuple[float, int]]:
    """Query i's candidates from a (scores, ids) search result as {row: (score, 1-based rank)}; -1 ids dropped."""
    if result is None:
        return {}
    scores, ids = result[0][i].tolist(), result[1][i].tolist()
    return {row: (score, rank) for rank, (score, row) in enumerate(zip(scores, ids, strict=True), start=1) if row >= 0}
