"""VectorIndex: build, search, save/load round trips, and the refusals that protect a deployment."""

from __future__ import annotations

import hashlib
import json

import faiss
import numpy as np
import pytest

from medrag.errors import ConfigError, IndexLoadError
from medrag.index import FORMAT, VectorIndex, analyze
from medrag.types import Chunk

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "Asthma narrows the airways and causes wheezing.",
    "Insulin lowers blood sugar in diabetes.",
    "Sunburn is skin damage from ultraviolet light.",
    "A heart attack blocks blood flow to the heart muscle.",
    "Migraine headaches come with nausea and light sensitivity.",
    "Eczema makes the skin itchy and dry.",
    "Hypertension means high blood pressure.",
    "Pneumonia inflames the air sacs in the lungs.",
]


def make_index(index_type="flat", texts=TEXTS, seed=0, dim=16):
    chunks = [Chunk(id=f"d{i}#0", doc_id=f"d{i // 2}", title=f"Doc {i}", text=t) for i, t in enumerate(texts)]
    vecs = np.random.default_rng(seed).normal(size=(len(texts), dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex.build(
        chunks, vecs, model_id=MODEL, dim=dim, index_type=index_type, chunker={"max_tokens": 256}, corpus_sha256="abc"
    )
    return index, vecs


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_round_trip_gives_identical_results(tmp_path, index_type):
    index, vecs = make_index(index_type)
    queries = ["blood pressure and the heart", "itchy skin", "the of and"]
    before = index.search_dense(vecs[:3], 5), index.search_bm25(queries, 5)
    index.save(tmp_path / "ix")
    loaded = VectorIndex.load(tmp_path / "ix", expect_model="all-MiniLM-L6-v2", expect_dim=16)
    after = loaded.search_dense(vecs[:3], 5), loaded.search_bm25(queries, 5)
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x[1], y[1])
        np.testing.assert_allclose(x[0], y[0], rtol=1e-6)
    assert before[0][1][:, 0].tolist() == [0, 1, 2]  # each vector finds itself first
    np.testing.assert_allclose(loaded.vectors([3, 1]), vecs[[3, 1]], atol=1e-6)
    assert loaded.chunks == index.chunks and loaded.manifest == index.manifest


def test_manifest_records_what_built_it(tmp_path):
    index, _ = make_index()
    index.save(tmp_path / "ix")
    m = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert m["format"] == FORMAT and m["embedding_model"] == MODEL and m["dim"] == 16
    assert (m["normalization"], m["metric"], m["index_type"]) == ("l2", "inner_product", "flat")
    assert m["counts"] == {"documents": 4, "chunks": 8} and m["corpus_sha256"] == "abc"
    assert {"index.faiss", "chunks.jsonl", "bm25/params.index.json", "bm25/data.csc.index.npy"} <= set(m["files"])
    assert not [p for p in (tmp_path / "ix").rglob("*") if p.suffix in (".pkl", ".pickle")]
    digest = hashlib.sha256((tmp_path / "ix" / "manifest.json").read_bytes()).hexdigest()[:12]
    assert index.manifest_hash == VectorIndex.load(tmp_path / "ix").manifest_hash == digest


def test_bm25_analysis_and_empty_queries():
    assert analyze("The Patients are treated") == ["patient", "treat"]
    index, _ = make_index()
    scores, ids = index.search_bm25(["the of and", "zzzz unknownword", "skin"], 4)
    assert (ids[:2] == -1).all() and (scores[:2] == 0).all()
    assert sorted(ids[2][ids[2] >= 0].tolist()) == [2, 5]  # only chunks that share a term


def test_invalid_index_type():
    with pytest.raises(ConfigError, match="flat, hnsw, ivf"):
        make_index("annoy")


def test_missing_folder_says_how_to_build(tmp_path):
    with pytest.raises(IndexLoadError, match=r"No index at .*nowhere: run 'python index_builder.py'"):
        VectorIndex.load(tmp_path / "nowhere")


def test_model_or_dim_mismatch_is_refused(tmp_path):
    make_index()[0].save(tmp_path / "ix")
    with pytest.raises(IndexLoadError, match=r"built with model .*all-MiniLM-L6-v2 \(dim 16\).*uses model BAAI/bge"):
        VectorIndex.load(tmp_path / "ix", expect_model="BAAI/bge-small-en-v1.5")
    with pytest.raises(IndexLoadError, match="MEDRAG_EMBEDDING_MODEL=sentence-transformers/all-MiniLM-L6-v2"):
        VectorIndex.load(tmp_path / "ix", expect_dim=384)


def test_unknown_format_is_refused(tmp_path):
    make_index()[0].save(tmp_path / "ix")
    manifest = tmp_path / "ix" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(FORMAT, "medrag-index/99"))
    with pytest.raises(IndexLoadError, match="medrag-index/99"):
        VectorIndex.load(tmp_path / "ix")


@pytest.mark.parametrize("name", ["chunks.jsonl", "index.faiss", "bm25/vocab.index.json"])
def test_corrupt_file_is_refused(tmp_path, name):
    make_index()[0].save(tmp_path / "ix")
    path = tmp_path / "ix" / name
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(IndexLoadError, match=f"{name} is corrupt \\(sha256 mismatch\\): rebuild"):
        VectorIndex.load(tmp_path / "ix")


def test_unreadable_file_is_refused_without_verification(tmp_path):
    make_index()[0].save(tmp_path / "ix")
    (tmp_path / "ix" / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexLoadError, match="could not be read"):
        VectorIndex.load(tmp_path / "ix", verify=False)


def test_interrupted_save_keeps_the_old_index(tmp_path, monkeypatch):
    old, _ = make_index(texts=TEXTS[:4])
    old.save(tmp_path / "ix")
    new, _ = make_index(seed=1)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path / "ix")
    monkeypatch.undo()
    monkeypatch.setattr(type(new.bm25), "save", boom)  # after index.faiss and chunks.jsonl were written
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path / "ix")
    assert len(VectorIndex.load(tmp_path / "ix")) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # no temporary folders left behind


def test_replacing_an_index_and_recovering_a_crash_between_renames(tmp_path):
    make_index(texts=TEXTS[:4])[0].save(tmp_path / "ix")
    make_index()[0].save(tmp_path / "ix")
    assert len(VectorIndex.load(tmp_path / "ix")) == 8 and sorted(p.name for p in tmp_path.iterdir()) == ["ix"]
    (tmp_path / "ix").rename(tmp_path / ".ix.old-1234")  # what a crash after the first rename leaves
    assert len(VectorIndex.load(tmp_path / "ix")) == 8


def test_single_query_scan_matches_faiss_search():
    rng = np.random.default_rng(3)
    texts = [f"text {i}" for i in range(500)]
    index, vecs = make_index(texts=texts, dim=32)
    queries = rng.normal(size=(25, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    expected_scores, expected_ids = index.faiss.search(queries, 10)
    one_by_one = [index.search_dense(q, 10) for q in queries]  # the single-query scan
    batched = index.search_dense(queries, 10)  # 25 >= 20 queries: faiss and BLAS
    np.testing.assert_array_equal(np.vstack([ids for _, ids in one_by_one]), expected_ids)
    np.testing.assert_allclose(np.vstack([s for s, _ in one_by_one]), expected_scores, atol=1e-5)
    np.testing.assert_array_equal(batched[1], expected_ids)
    assert index.search_dense(queries[0], 600)[1][0, 500:].tolist() == [-1] * 100  # k past the size pads
