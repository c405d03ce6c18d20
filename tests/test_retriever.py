"""Retriever rankings, checked exactly against values computed by hand.

The fake embedder counts four keywords (heart, lung, skin, blood) and normalises, so every
cosine is a ratio of small integers; BM25 is Lucene's formula with bm25s' defaults (k1=1.5,
b=0.75), written out below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medrag.config import PipelineConfig
from medrag.errors import ConfigError
from medrag.index import VectorIndex
from medrag.retriever import Retriever, evidence
from medrag.types import Chunk, Hit

KEYWORDS = ["heart", "lung", "skin", "blood"]
TEXTS = [
    "heart heart lung",  # c0 (2,1,0,0)
    "heart skin",  # c1 (1,0,1,0)
    "lung lung lung blood",  # c2 (0,3,0,1)
    "skin blood lung",  # c3 (0,1,1,1)
    "blood blood pressure heart",  # c4 (1,0,0,2)
    "pressure pressure heart skin skin skin",  # c5 (1,0,3,0)
]


class KeywordEmbedder:
    def embed(self, texts):
        v = np.array([[t.lower().split().count(k) for k in KEYWORDS] for t in texts], dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def bm25(query: str, i: int) -> float:
    """Lucene BM25 of chunk i, every word a term (no stopwords or stems in this corpus but 'pressure')."""
    docs = [t.split() for t in TEXTS]
    avg = sum(map(len, docs)) / len(docs)
    score = 0.0
    for term in query.split():
        df, tf = sum(term in d for d in docs), docs[i].count(term)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        score += idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * len(docs[i]) / avg)) if tf else 0.0
    return score


@pytest.fixture(params=["memory", "disk", "milvus"])
def retriever(request, tmp_path):
    """The same retriever over each index engine: in memory (flat), on disk (ivfpq, every list probed, so
    exact up to its float16 vectors), and Milvus (embedded milvus-lite; skipped, with the pip line, without it)."""
    chunks = [Chunk(id=f"c{i}", doc_id=f"c{i}", title="", text=t) for i, t in enumerate(TEXTS)]
    emb = KeywordEmbedder()
    if request.param == "memory":
        index = VectorIndex.build(chunks, emb.embed(TEXTS), model_id="fake", dim=4, chunker={}, corpus_sha256="x")
    elif request.param == "disk":
        from medrag.disk_index import DiskIndex
        from medrag.shards import build_from_chunks

        index = DiskIndex.load(build_from_chunks(chunks, emb.embed(TEXTS), tmp_path / "ix", model_id="fake"))
        index.nprobe, index.rerank = index.faiss.nlist, len(index)
    else:
        from medrag.milvus_index import PIP, MilvusIndex

        pytest.importorskip("pymilvus", reason=f"the Milvus engine needs: pip install {PIP}")
        pytest.importorskip("milvus_lite", reason=f"the Milvus engine needs: pip install {PIP}")
        index = MilvusIndex.create(
            str(tmp_path / "m.db"), "chunks", chunks, emb.embed(TEXTS), {"embedding_model": "fake"}
        )
    r = Retriever(index, emb, PipelineConfig(top_k=6, candidate_k=50, rrf_k=60))
    r.rel = 1e-3 if request.param == "disk" else 1e-6  # float16 vectors on disk: cosines to ~3 digits
    return r


def ids(hits: list[Hit]) -> list[str]:
    return [h.chunk.id for h in hits]


def test_dense(retriever):
    hits = retriever.search("heart lung", k=3, mode="dense")
    assert ids(hits) == ["c0", "c2", "c1"]
    assert [h.score for h in hits] == pytest.approx([3 / math.sqrt(10), 3 / math.sqrt(20), 1 / 2], rel=retriever.rel)
    assert [(h.rank, h.dense_rank, h.bm25_score, h.retrievers) for h in hits] == [
        (1, 1, None, ("dense",)),
        (2, 2, None, ("dense",)),
        (3, 3, None, ("dense",)),
    ]


def test_bm25_hits_get_their_cosine(retriever):
    hits = retriever.search("heart lung", k=3, mode="bm25")
    assert ids(hits) == ["c0", "c2", "c3"]
    assert [h.score for h in hits] == pytest.approx([bm25("heart lung", i) for i in (0, 2, 3)], rel=1e-5)
    assert [h.bm25_rank for h in hits] == [1, 2, 3] and all(h.retrievers == ("bm25",) for h in hits)
    expected = [3 / math.sqrt(10), 3 / math.sqrt(20), 1 / math.sqrt(6)]
    assert [h.dense_score for h in hits] == pytest.approx(expected, rel=retriever.rel)
    assert all(h.dense_rank is None for h in hits)


def test_hybrid_rrf_with_full_agreement(retriever):
    # dense: c0 c2 c1 c3 c4 c5; bm25: c0 c2 c3 c1 c4 c5; c1 and c3 tie on RRF, dense rank breaks it
    hits = retriever.search("heart lung", mode="hybrid")
    assert ids(hits) == ["c0", "c2", "c1", "c3", "c4", "c5"]
    expected = [2 / 61, 2 / 62, 1 / 63 + 1 / 64, 1 / 64 + 1 / 63, 2 / 65, 2 / 66]
    assert [h.score for h in hits] == pytest.approx(expected, rel=1e-12)
    assert [(h.dense_rank, h.bm25_rank) for h in hits] == [(1, 1), (2, 2), (3, 4), (4, 3), (5, 5), (6, 6)]
    assert all(h.retrievers == ("dense", "bm25") for h in hits) and [h.rank for h in hits] == [1, 2, 3, 4, 5, 6]


def test_hybrid_with_shallow_candidates_mixes_single_retriever_hits(retriever):
    retriever.config = retriever.config.replace(candidate_k=3)
    # dense top 3: c0 (3/sqrt10), c2 (3/sqrt20), c1 (1/2); bm25 top 3: c5 ("pressure" twice), c0, then c4
    hits = retriever.search("heart lung pressure", k=3, mode="hybrid")
    assert ids(hits) == ["c0", "c5", "c2"]
    assert [h.score for h in hits] == pytest.approx([1 / 61 + 1 / 62, 1 / 61, 1 / 62], rel=1e-12)
    assert [h.retrievers for h in hits] == [("dense", "bm25"), ("bm25",), ("dense",)]
    c0, c5, c2 = hits
    assert (c0.dense_rank, c0.bm25_rank) == (1, 2)
    assert (c5.dense_rank, c5.bm25_rank, c5.dense_score) == (
        None,
        1,
        pytest.approx(1 / math.sqrt(20), rel=retriever.rel),
    )
    assert c5.bm25_score == pytest.approx(bm25("heart lung pressure", 5), rel=1e-5)
    assert (c2.dense_rank, c2.bm25_rank, c2.bm25_score) == (2, None, None)
    assert evidence(hits) == pytest.approx(3 / math.sqrt(10), rel=retriever.rel) == retriever.evidence(hits)


def test_batch_equals_one_by_one(retriever):
    queries = ["heart lung", "pressure heart", "skin"]
    for mode in ("dense", "bm25", "hybrid"):
        batch = retriever.search_batch(queries, k=4, mode=mode)
        assert [ids(h) for h in batch] == [ids(retriever.search(q, k=4, mode=mode)) for q in queries]


def test_stopword_query_and_evidence_of_nothing(retriever):
    assert retriever.search("the of and", mode="bm25") == []
    assert evidence([]) == 0.0
    assert retriever.search_batch([], mode="hybrid") == []


def test_invalid_mode(retriever):
    with pytest.raises(ConfigError, match="dense, bm25, hybrid"):
        retriever.search("heart", mode="sparse")
