"""The large-corpus index (ivfpq + chunk store + disk BM25) against the in-memory VectorIndex.

BM25 must give exactly the in-memory ranking (both search paths: pruned and exhaustive); dense
search re-ranks its candidates exactly, so with every list probed it equals flat search; damaged
files are refused with a message that says what to do.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import medrag.bm25_disk as bm25_disk
from medrag.disk_index import DiskIndex, verify_files
from medrag.errors import IndexLoadError
from medrag.index import VectorIndex
from medrag.retriever import Retriever
from medrag.shards import build_from_chunks
from medrag.store import BLOCK, ChunkStore, StoreWriter
from medrag.types import Chunk

WORDS = (
    "asthma wheeze airway inhaler insulin glucose diabetes kidney heart attack chest pain blood pressure "
    "migraine headache nausea eczema itchy skin rash fever cough lungs pneumonia stroke numbness vision "
    "thyroid fatigue weight anemia iron bleeding liver jaundice hepatitis vaccine measles mumps"
).split()


def corpus(n=300, seed=1):
    rng = np.random.default_rng(seed)
    chunks = []
    for i in range(n):
        words = rng.choice(WORDS, size=rng.integers(3, 25), p=_zipf(len(WORDS)))
        section = ["symptoms", "treatment", "causes", ""][i % 4]
        title = f"Topic {i // 4}" + (f" ({section})" if section else "")
        chunks.append(Chunk(id=f"d{i // 4}#{i % 4}", doc_id=f"d{i // 4}", title=title, text=" ".join(words) + "."))
    vecs = rng.normal(size=(n, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return chunks, vecs


def _zipf(n):
    p = 1 / np.arange(1, n + 1)
    return p / p.sum()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    chunks, vecs = corpus()
    flat = VectorIndex.build(chunks, vecs, model_id="fake", dim=16, chunker={}, corpus_sha256="x")
    out = build_from_chunks(chunks, vecs, tmp_path_factory.mktemp("ix") / "disk", model_id="fake", shard_rows=70)
    return flat, DiskIndex.load(out), vecs


QUERIES = ["asthma inhaler", "heart attack chest pain", "the of and", "zzz unknown", "fever", "skin rash itchy eczema"]


def test_bm25_matches_in_memory_on_both_paths(pair, monkeypatch):
    flat, disk, _ = pair
    expected = flat.search_bm25(QUERIES, 10)
    for gather in (10**9, 1):  # everything gathered at once; and the bound/lookup path with an exhaustive fallback
        monkeypatch.setattr(bm25_disk, "GATHER", gather)
        got = disk.search_bm25(QUERIES, 10)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)


def test_bm25_pruned_path_is_taken_and_exact(pair, monkeypatch):
    flat, disk, _ = pair
    calls = []
    real = bm25_disk.DiskBM25._exhaustive
    monkeypatch.setattr(bm25_disk.DiskBM25, "_exhaustive", lambda self, *a: calls.append(a) or real(self, *a))
    monkeypatch.setattr(bm25_disk, "GATHER", 70)  # measles, vaccine, mumps gathered (66 postings); asthma looked up
    q = ["measles vaccine mumps asthma"]
    np.testing.assert_array_equal(disk.search_bm25(q, 3)[1], flat.search_bm25(q, 3)[1])
    assert not calls  # the bound held: no exhaustive scoring


def test_dense_with_every_list_probed_equals_flat(pair):
    flat, disk, vecs = pair
    disk.nprobe, disk.rerank = disk.faiss.nlist, len(disk)
    q = vecs[:5] + 0.1
    f, d = flat.search_dense(q, 8), disk.search_dense(q, 8)
    np.testing.assert_array_equal(d[1], f[1])
    np.testing.assert_allclose(d[0], f[0], atol=2e-3)  # float16 vectors
    assert d[1][:, 0].tolist() == f[1][:, 0].tolist()


def test_dense_default_settings_find_each_vector_itself(pair):
    _, disk, vecs = pair
    scores, ids = disk.search_dense(vecs[:20], 3)
    assert ids[:, 0].tolist() == list(range(20))
    assert np.all(scores[:, 0] > 0.99)


def test_chunks_vectors_and_words_by_row(pair):
    flat, disk, vecs = pair
    assert len(disk) == len(flat) == 300
    assert [disk.chunks[i] for i in (0, 17, 299, -1)] == [flat.chunks[i] for i in (0, 17, 299, -1)]
    assert list(disk.chunks) == flat.chunks
    np.testing.assert_allclose(disk.vectors([3, 250]), vecs[[3, 250]], atol=1e-3)
    assert disk.unknown_words("Is zyrtec good for asthma?") == flat.unknown_words("Is zyrtec good for asthma?")


def test_retriever_gives_the_flat_ranking(pair):
    flat, disk, _ = pair

    class Embed:
        def embed(self, texts):
            return flat.vectors([sum(map(ord, t)) % 300 for t in texts])

    disk.nprobe, disk.rerank = disk.faiss.nlist, len(disk)
    questions = ["What are the symptoms of asthma?", "how to treat a fever", "causes of anemia and bleeding"]
    for mode in ("dense", "bm25", "hybrid"):
        a = Retriever(flat, Embed()).search_batch(questions, 5, mode)
        b = Retriever(disk, Embed()).search_batch(questions, 5, mode)
        assert [[h.chunk.id for h in hits] for hits in a] == [[h.chunk.id for h in hits] for hits in b], mode


def test_store_round_trip_and_refusals(tmp_path):
    w = StoreWriter(tmp_path / "s")
    rows = [Chunk(id=f"c{i}", doc_id="d", title="Ünïcode", text="x" * i) for i in range(BLOCK * 2 + 3)]
    for c in rows:
        w.add(c)
    assert w.close() == len(rows)
    store = ChunkStore(tmp_path / "s", len(rows))
    assert store[BLOCK + 1] == rows[BLOCK + 1] and list(store) == rows and store[-1] == rows[-1]
    with pytest.raises(IndexError):
        store[len(rows)]
    with pytest.raises(IndexLoadError, match="does not match the manifest"):
        ChunkStore(tmp_path / "s", len(rows) + BLOCK)
    data = tmp_path / "s" / "chunks.zlib"
    raw = bytearray(data.read_bytes())
    raw[5:25] = b"\x00" * 20
    data.write_bytes(bytes(raw))
    with pytest.raises(IndexLoadError, match=r"corrupt at block 0.*index_builder"):
        ChunkStore(tmp_path / "s", len(rows))[0]
    data.write_bytes(bytes(raw[:-10]))
    with pytest.raises(IndexLoadError, match="truncated"):
        ChunkStore(tmp_path / "s", len(rows))


def test_damaged_index_files_are_refused(tmp_path):
    chunks, vecs = corpus(60)
    out = build_from_chunks(chunks, vecs, tmp_path / "ix", model_id="fake")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index_type"] == "ivfpq" and manifest["counts"]["chunks"] == 60
    assert {"vectors.f16.npy", "ivfpq.faiss", "chunks.zlib", "bm25/rows.npy"} <= set(manifest["files"])
    verify_files(out)  # as built
    with pytest.raises(IndexLoadError, match="other model|built with model fake"):
        DiskIndex.load(out, expect_model="sentence-transformers/all-MiniLM-L6-v2")
    scores = out / "bm25" / "scores.npy"
    whole = scores.read_bytes()
    scores.write_bytes(whole[:-4])
    with pytest.raises(IndexLoadError, match=r"bm25/scores.npy has the wrong size.*index_builder"):
        DiskIndex.load(out)
    scores.write_bytes(whole)
    (out / "ivfpq.faiss").unlink()
    with pytest.raises(IndexLoadError, match=r"ivfpq.faiss is missing.*index_builder"):
        DiskIndex.load(out)


def test_a_flipped_byte_is_caught_by_verify(tmp_path):
    chunks, vecs = corpus(40)
    out = build_from_chunks(chunks, vecs, tmp_path / "ix", model_id="fake")
    path = out / "vectors.f16.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    DiskIndex.load(out)  # sizes only: a load stays cheap
    with pytest.raises(IndexLoadError, match=r"vectors.f16.npy is corrupt \(sha256 mismatch\)"):
        DiskIndex.load(out, verify=True)


def test_a_download_is_hashed_once_then_loads_on_sizes(tmp_path, monkeypatch):
    from medrag import disk_index
    from medrag.config import PipelineConfig
    from medrag.indexes import open_index

    chunks, vecs = corpus(40)
    out = build_from_chunks(chunks, vecs, tmp_path / "ix", model_id="fake")
    cfg = PipelineConfig(embedding_model="fake", embedding_dim=16)
    hashed = []
    real = disk_index.sha256_file
    monkeypatch.setattr(disk_index, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert len(open_index(out, cfg, verify=True)) == 40 and hashed  # first load of a download: every file hashed
    hashed.clear()
    open_index(out, cfg, verify=True)
    open_index(out, cfg)
    assert not hashed  # later loads: sizes only
    marker = next(out.glob(".verified-*"))
    marker.unlink()
    raw = bytearray((out / "chunks.zlib").read_bytes())
    raw[-1] ^= 0xFF
    (out / "chunks.zlib").write_bytes(bytes(raw))
    with pytest.raises(IndexLoadError, match=r"chunks.zlib is corrupt \(sha256 mismatch\)"):
        open_index(out, cfg, verify=True)
