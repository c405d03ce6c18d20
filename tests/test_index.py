"""VectorIndex: build, search, save/load round trips, and the refusals that protect a deployment."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from medrag.errors import ConfigError, IndexLoadError, IndexWriteError
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

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faiss, "serialize_index", full)
    with pytest.raises(IndexWriteError, match="No space left on device .*: free some disk space"):
        new.save(tmp_path / "ix")
    monkeypatch.undo()
    monkeypatch.setattr(type(new.bm25), "save", full)  # after index.faiss and chunks.jsonl were written
    with pytest.raises(IndexWriteError, match="any index already there is unchanged$"):
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


# --- nothing is replaced that the project did not write -----------------------------------------


def test_save_refuses_a_folder_that_is_not_an_index_and_changes_nothing(tmp_path):
    index = make_index()[0]
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.txt").write_text("mine")
    (notes / "sub" / "b.md").write_text("also mine")
    with pytest.raises(IndexWriteError, match=r"notes is not empty and holds no MedRAG index \(no manifest.json\)"):
        index.save(notes)
    assert sorted(p.relative_to(notes).as_posix() for p in notes.rglob("*")) == ["a.txt", "sub", "sub/b.md"]
    (tmp_path / "file").write_text("a file")
    with pytest.raises(IndexWriteError, match="file exists and is not a folder"):
        index.save(tmp_path / "file")
    (tmp_path / "link").symlink_to(notes, target_is_directory=True)
    with pytest.raises(IndexWriteError, match="link is a symbolic link: pass the folder it points to"):
        index.save(tmp_path / "link")
    assert (tmp_path / "file").read_text() == "a file" and (notes / "a.txt").read_text() == "mine"


def test_save_accepts_absent_empty_or_an_index_and_refuses_an_index_with_other_files(tmp_path):
    index = make_index()[0]
    (tmp_path / "empty").mkdir()
    for name in ("absent", "empty", "absent"):  # the second "absent" is an index by then
        index.save(tmp_path / name)
        assert len(VectorIndex.load(tmp_path / name)) == 8
    (tmp_path / "absent" / "my-notes.txt").write_text("mine")
    (tmp_path / "absent" / "bm25" / "extra.json").write_text("{}")
    with pytest.raises(
        IndexWriteError, match=r"holds an index and files it did not write \(my-notes.txt, bm25/extra.json\)"
    ):
        index.save(tmp_path / "absent")
    assert (tmp_path / "absent" / "my-notes.txt").read_text() == "mine"


def test_leftovers_of_a_dead_build_are_removed_by_the_next_one(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftovers = [f".ix.tmp-{dead.stdout.strip()}-0a1b2c3d", ".ix.tmp-deadbeef", ".ix.old-12345678"]
    for name in [*leftovers, ".ix.tmp-1-0a1b2c3d", ".other.tmp-0-0a1b2c3d"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.faiss").write_bytes(b"half written")
    make_index()[0].save(tmp_path / "ix")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ix.tmp-1-0a1b2c3d", ".other.tmp-0-0a1b2c3d", "ix"]


def test_an_os_error_names_what_failed_where_and_what_to_do(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ix"))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(IndexWriteError) as e:
        make_index()[0].save(tmp_path / "ix")
    assert str(e.value) == (
        f"Could not write the index to {tmp_path / 'ix'}: Read-only file system ({tmp_path / 'ix'}): the file "
        "system is read-only: choose a folder you can write to; any index already there is unchanged"
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes whatever the mode")
def test_a_read_only_folder_is_an_index_write_error(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        with pytest.raises(IndexWriteError, match="Permission denied .*: choose a folder you can write to"):
            make_index()[0].save(tmp_path / "ro" / "ix")
    finally:
        (tmp_path / "ro").chmod(0o755)


# --- load refuses what is outside the folder, reached through a link, or malformed -----------------


def saved(tmp_path) -> Path:
    make_index()[0].save(tmp_path / "ix")
    return tmp_path / "ix"


def edit_manifest(folder: Path, change) -> None:
    """Change the manifest and recompute every digest: a consistent index, as a buggy tool might write."""
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    for name in manifest["files"]:
        if (folder / name).is_file() and ".." not in name and not name.startswith("/"):
            manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "bm25/../../outside.txt", "C:/x", "a\\b", ""])
def test_a_manifest_naming_a_file_outside_the_folder_is_refused(tmp_path, name):
    folder = saved(tmp_path)
    (tmp_path / "outside.txt").write_text("secret")
    edit_manifest(folder, lambda m: m["files"].update({name: "0" * 64}))
    with pytest.raises(IndexLoadError, match="lists a file outside its folder in manifest.json"):
        VectorIndex.load(folder)


@pytest.mark.parametrize("name", ["chunks.jsonl", "bm25/vocab.index.json", "manifest.json"])
def test_a_member_that_is_a_link_is_refused_even_with_the_right_digest(tmp_path, name):
    folder = saved(tmp_path)
    (tmp_path / "copy").write_bytes((folder / name).read_bytes())
    (folder / name).unlink()
    (folder / name).symlink_to(tmp_path / "copy")
    with pytest.raises(IndexLoadError, match=f"{name} is a symbolic link"):
        VectorIndex.load(folder)


def test_a_file_in_bm25_the_manifest_does_not_list_is_refused(tmp_path):
    folder = saved(tmp_path)
    np.save(folder / "bm25" / "nonoccurrence_array.index.npy", np.zeros(3))
    with pytest.raises(IndexLoadError, match="nonoccurrence_array.index.npy is not listed in manifest.json"):
        VectorIndex.load(folder)


def test_the_hugging_face_cache_links_into_its_blobs_are_followed(tmp_path):
    folder = saved(tmp_path)
    repo = tmp_path / "datasets--u--ix"
    snapshot = repo / "snapshots" / ("a" * 40)
    for file in folder.rglob("*"):
        if file.is_file():
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(file.read_bytes())
            link = snapshot / file.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    assert len(VectorIndex.load(snapshot)) == 8
    (snapshot / "chunks.jsonl").unlink()
    (snapshot / "chunks.jsonl").symlink_to(folder / "chunks.jsonl")  # same bytes, but outside the blobs
    with pytest.raises(IndexLoadError, match="chunks.jsonl is a symbolic link"):
        VectorIndex.load(snapshot)


CHUNK = {"id": "x#0", "doc_id": "x", "title": "T", "text": "t", "url": "", "source": "", "position": 0,
         "start": 0, "end": 1, "metadata": {}}  # fmt: skip
BAD_ROWS = {
    "{broken": "line 3 is not valid JSON",
    "[1, 2]": r"line 3 is not a chunk \(a JSON list, not an object\)",
    json.dumps({k: v for k, v in CHUNK.items() if k != "text"}): r"line 3 is not a chunk \(no 'text'\)",
    json.dumps({**CHUNK, "text": 5}): r"line 3 is not a chunk \('text' is int, not str\)",
    json.dumps({**CHUNK, "position": True}): r"line 3 is not a chunk \('position' is bool, not int\)",
    json.dumps({**CHUNK, "metadata": []}): r"line 3 is not a chunk \('metadata' is list, not dict\)",
    json.dumps({**CHUNK, "start": -1}): r"line 3 is not a chunk \(position 0, offsets -1..1: none may be negative\)",
    "[" * 100_000: "line 3 is not valid JSON",
}


@pytest.mark.parametrize("row", list(BAD_ROWS))
def test_a_malformed_chunks_row_fails_at_load_naming_the_line(tmp_path, row):
    folder = saved(tmp_path)
    lines = (folder / "chunks.jsonl").read_text().splitlines()
    lines[2] = row
    (folder / "chunks.jsonl").write_text("\n".join(lines) + "\n")
    edit_manifest(folder, lambda m: None)
    with pytest.raises(IndexLoadError, match=f"chunks.jsonl {BAD_ROWS[row]}.*: rebuild it"):
        VectorIndex.load(folder)


def test_a_missing_chunks_row_fails_at_load(tmp_path):
    folder = saved(tmp_path)
    lines = (folder / "chunks.jsonl").read_text().splitlines()
    (folder / "chunks.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    edit_manifest(folder, lambda m: None)
    with pytest.raises(
        IndexLoadError, match=r"inconsistent \(vectors, chunks, BM25 documents, manifest: \(8, 7, 8, 8\)"
    ):
        VectorIndex.load(folder)


def save_array(folder: Path, name: str, change) -> None:
    path = folder / "bm25" / name
    np.save(path, change(np.load(path)), allow_pickle=False)


BAD_BM25 = {
    "vocab": (lambda f: (f / "bm25" / "vocab.index.json").write_text('{"asthma": 999}'),
              r"vocab.index.json is malformed \(must map each term to a number in 0..\d+\)"),
    "vocab-type": (lambda f: (f / "bm25" / "vocab.index.json").write_text('{"asthma": "0"}'),
                   "vocab.index.json is malformed"),
    "indices": (lambda f: save_array(f, "indices.csc.index.npy", lambda a: a + 100),
                r"indices.csc.index.npy is malformed \(chunk numbers must lie in 0..7\)"),
    "indptr": (lambda f: save_array(f, "indptr.csc.index.npy", lambda a: a[::-1].copy()),
               r"indptr.csc.index.npy is malformed \(must rise from 0 to \d+\)"),
    "data": (lambda f: save_array(f, "data.csc.index.npy", lambda a: np.full_like(a, np.nan)),
             "data.csc.index.npy is malformed"),
    "num_docs": (lambda f: (f / "bm25" / "params.index.json").write_text(
        (f / "bm25" / "params.index.json").read_text().replace('"num_docs": 8', '"num_docs": "8"')),
        "params.index.json is malformed"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_BM25))
def test_malformed_bm25_files_fail_at_load(tmp_path, case):
    folder = saved(tmp_path)
    change, message = BAD_BM25[case]
    change(folder)
    edit_manifest(folder, lambda m: None)
    with pytest.raises(IndexLoadError, match=message + ".*: rebuild it"):
        VectorIndex.load(folder)


@pytest.mark.parametrize(
    ("key", "value"), [("dim", "16"), ("counts", {}), ("index_type", "annoy"), ("files", []), ("embedding_model", 1)]
)
def test_a_malformed_manifest_fails_at_load(tmp_path, key, value):
    folder = saved(tmp_path)
    edit_manifest(folder, lambda m: m.update({key: value}) if key != "files" else None)
    if key == "files":
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "files": value}))
    with pytest.raises(IndexLoadError, match=f"manifest.json is malformed: '{key}' must be"):
        VectorIndex.load(folder)
