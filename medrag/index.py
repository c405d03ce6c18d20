"""`VectorIndex`: chunks + a FAISS index of their unit vectors + a BM25 index of their text.

On disk an index is a folder of plain files, no pickle:
    manifest.json   format, model id, dim, chunker settings, corpus hash, counts, sha256 per file
    index.faiss     faiss.write_index (inner product over L2-normalised float32 = cosine)
    chunks.jsonl    one Chunk.to_dict() per line, row i = vector i = BM25 document i
    bm25/           bm25s' own files (.npy arrays saved with allow_pickle=False, .json vocab/params)

`save` writes into a hidden sibling folder and renames it into place, so `path` always holds a
whole index. A crash between the two renames of a replacement leaves the previous index at a
`.NAME.old-*` sibling; `load` moves it back when `path` is missing.

Shortcuts taken on purpose: BM25 scoring is done here on bm25s' CSC arrays with np.bincount
(bm25s without numba uses np.add.at, several times slower); query and corpus share `analyze`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import threading
from pathlib import Path

import bm25s
import faiss
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

import medrag
from medrag.embedder import same_model
from medrag.errors import ConfigError, IndexLoadError
from medrag.types import Chunk

FORMAT = "medrag-index/1"
INDEX_TYPES = ("flat", "hnsw", "ivf")
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 64  # recall ~0.99 at k=50 on 40k vectors
IVF_NPROBE = 16  # of ~4*sqrt(n) lists: a few percent of the vectors scanned per query
faiss.cvar.distance_compute_blas_threshold = 20  # BLAS from 20 queries: ~6x faster batched search, same results

_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' (and scikit-learn's) default token pattern
_STOPWORDS = frozenset(STOPWORDS_EN)
_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how does do did doing done can could should would will shall may might "
    "must have has had get gets got getting tell know please anyone someone thanks thank hi hello "
    "i me my mine myself we us our you your yours he him his she her it its they them their".split()
)  # words of asking, not of the topic: never a reason to decline
_STEMMER = Stemmer.Stemmer("english")
_STEMS: dict[str, str] = {}
_STEM_LOCK = threading.Lock()  # a PyStemmer object must not be used by two threads at once


def _stem(words: list[str]) -> list[str]:
    with _STEM_LOCK:
        return _STEMMER.stemWords(words)


def analyze(text: str) -> list[str]:
    """BM25 terms of a text: lower-cased words of 2+ characters, English stopwords out, Snowball-stemmed."""
    words = [w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]
    new = [w for w in set(words) if w not in _STEMS]
    if new:
        if len(_STEMS) > 1_000_000:  # a long-running server must not grow without bound
            _STEMS.clear()
        _STEMS.update(zip(new, _stem(new), strict=True))
    return [_STEMS[w] for w in words]


class VectorIndex:
    def __init__(self, chunks: list[Chunk], faiss_index, bm25: bm25s.BM25, manifest: dict):
        self.chunks, self.faiss, self.bm25, self.manifest = chunks, faiss_index, bm25, manifest

    def __len__(self) -> int:
        return len(self.chunks)

    @classmethod
    def build(
        cls,
        chunks: list[Chunk],
        embeddings: np.ndarray,
        *,
        model_id: str,
        dim: int,
        index_type: str = "flat",
        chunker: dict,
        corpus_sha256: str,
        extra: dict | None = None,
    ) -> VectorIndex:
        if index_type not in INDEX_TYPES:
            raise ConfigError(
                f"index_type {index_type!r} is not one of {', '.join(INDEX_TYPES)}: fix MEDRAG_INDEX_TYPE"
            )
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(chunks), dim):
            raise ValueError(f"embeddings have shape {vectors.shape}, expected ({len(chunks)}, {dim})")
        if not chunks:
            raise ValueError("no chunks to index: the corpus produced no text")
        bm25 = bm25s.BM25()  # bm25s' defaults: Lucene's variant, k1=1.5, b=0.75
        bm25.index([analyze(c.embed_text) for c in chunks], show_progress=False)
        manifest = {
            "format": FORMAT,
            "medrag_version": medrag.__version__,
            "embedding_model": model_id,
            "dim": dim,
            "normalization": "l2",
            "metric": "inner_product",
            "index_type": index_type,
            "index_params": {},
            "bm25": {"method": bm25.method, "k1": bm25.k1, "b": bm25.b, "stopwords": "en", "stemmer": "english"},
            "chunker": chunker,
            "corpus_sha256": corpus_sha256,
            "counts": {"documents": len({c.doc_id for c in chunks}), "chunks": len(chunks)},
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {},
            "extra": extra or {},
        }
        index = _make_faiss(vectors, index_type, manifest["index_params"])
        return cls(list(chunks), index, bm25, manifest)

    # --- search ----------------------------------------------------------------------------
    def search_dense(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine per query row: (scores (n, k), ids (n, k)); ids -1 pad past the index size."""
        q = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        kk = max(1, min(k, len(self)))
        few = len(q) < faiss.cvar.distance_compute_blas_threshold
        if few and isinstance(self.faiss, faiss.IndexFlat):
            scores, ids = self._scan(q, kk)
        else:
            # OpenMP threads gain nothing for a few queries and their spinning fights onnxruntime's
            # (20 ms instead of 3 here); a batch goes through BLAS on every core. Per calling thread.
            faiss.omp_set_num_threads(1 if few else _CORES)
            scores, ids = self.faiss.search(q, kk)
        if kk < k:
            scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        return scores, ids

    def _scan(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact flat search for a few queries on one thread: faiss's SIMD inner products, then argpartition.
        ~1.5 ms for one query over 27k vectors here, against ~3 ms for IndexFlat.search (a heap per vector)."""
        n, d = self.faiss.ntotal, self.faiss.d
        xb = faiss.rev_swig_ptr(self.faiss.get_xb(), n * d).reshape(n, d)  # a view of the index's own storage
        sims = np.empty(n, dtype=np.float32)
        scores, ids = np.empty((len(q), k), dtype=np.float32), np.empty((len(q), k), dtype=np.int64)
        for i, v in enumerate(q):
            faiss.fvec_inner_products_ny(faiss.swig_ptr(sims), faiss.swig_ptr(v), faiss.swig_ptr(xb), d, n)
            top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
            top = top[np.lexsort((top, -sims[top]))]  # score descending, then row: deterministic
            scores[i], ids[i] = sims[top], top
        return scores, ids

    def search_bm25(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k BM25 per query: (scores (n, k), ids (n, k)); only chunks sharing a term, ids -1 pad the rest."""
        scores = np.zeros((len(queries), k), dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        data, indices, indptr = (self.bm25.scores[n] for n in ("data", "indices", "indptr"))
        vocab = self.bm25.vocab_dict
        for row, query in enumerate(queries):
            terms = np.fromiter((vocab[t] for t in analyze(query) if t in vocab), dtype=np.int64)
            if terms.size == 0:
                continue  # nothing left after stopwords, or no term in the corpus: no hits
            docs = np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in terms])
            weights = np.concatenate([data[indptr[t] : indptr[t + 1]] for t in terms])
            total = np.bincount(docs, weights=weights, minlength=len(self))
            top = np.flatnonzero(total > 0)
            if top.size > k:
                top = top[np.argpartition(-total[top], k - 1)[:k]]
            top = top[np.lexsort((top, -total[top]))]  # score descending, then row: deterministic
            scores[row, : top.size], ids[row, : top.size] = total[top], top
        return scores, ids

    def unknown_words(self, text: str, common=None) -> list[str]:
        """Words of `text` that no chunk contains: names the corpus never mentions.

        Stopwords and words of asking never count, nor words `common(word)` calls everyday
        English (the pipeline passes the embedder's vocabulary), so a small corpus that never
        says "safe" still answers "is it safe...?".
        """
        vocab = self.bm25.vocab_dict
        words = dict.fromkeys(w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS | _QUESTION_WORDS)
        return [w for w in words if analyze(w) and analyze(w)[0] not in vocab and not (common and common(w))]

    def vectors(self, ids) -> np.ndarray:
        """The stored unit vectors of rows `ids`, (len(ids), dim) float32."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return np.zeros((0, self.manifest["dim"]), dtype=np.float32)
        return self.faiss.reconstruct_batch(ids)

    @property
    def manifest_hash(self) -> str:
        return hashlib.sha256(_manifest_bytes(self.manifest)).hexdigest()[:12]

    # --- disk ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the folder atomically: a failure leaves any previous index at `path` untouched."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            faiss.write_index(self.faiss, str(tmp / "index.faiss"))
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                for chunk in self.chunks:
                    f.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
            self.bm25.save(str(tmp / "bm25"), allow_pickle=False, show_progress=False)
            files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            self.manifest["files"] = {name: _sha256(tmp / name) for name in files}
            (tmp / "manifest.json").write_bytes(_manifest_bytes(self.manifest))
            for name in [*files, "manifest.json"]:
                _fsync(tmp / name)
            _fsync(tmp / "bm25")
            _fsync(tmp)
            _swap_into_place(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @staticmethod
    def read_manifest(path: str | Path) -> dict:
        """The manifest of the index at `path` (format checked, files not): IndexLoadError when there is none."""
        path = Path(path)
        _recover(path)
        rebuild = f"rebuild it with 'python index_builder.py --out {path}'"
        if not (path / "manifest.json").is_file():
            raise IndexLoadError(f"No index at {path}: run 'python index_builder.py'")
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexLoadError(f"Index file {path}/manifest.json is unreadable ({e}): {rebuild}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise IndexLoadError(f"Index at {path} has format {found!r}, this version reads {FORMAT!r}: {rebuild}")
        return manifest

    @classmethod
    def load(
        cls, path: str | Path, *, expect_model: str | None = None, expect_dim: int | None = None, verify: bool = True
    ) -> VectorIndex:
        """Open a saved index, refusing (IndexLoadError, with the fix) anything missing, corrupt or mismatched."""
        path = Path(path)
        manifest = cls.read_manifest(path)
        rebuild = f"rebuild it with 'python index_builder.py --out {path}'"
        model, dim = manifest.get("embedding_model", "?"), manifest.get("dim")
        if (expect_model and not same_model(model, expect_model)) or (expect_dim and dim != expect_dim):
            raise IndexLoadError(
                f"Index at {path} was built with model {model} (dim {dim}) but the configuration uses model "
                f"{expect_model or model} (dim {expect_dim or dim}): {rebuild} or set MEDRAG_EMBEDDING_MODEL={model}"
            )
        files = manifest.get("files") or {}
        for name in sorted({"index.faiss", "chunks.jsonl", *files}):
            if not (path / name).is_file():
                raise IndexLoadError(f"Index file {path}/{name} is missing: {rebuild}")
            if verify and files.get(name) != _sha256(path / name):
                raise IndexLoadError(f"Index file {path}/{name} is corrupt (sha256 mismatch): {rebuild}")
        try:
            index = faiss.read_index(str(path / "index.faiss"))
            _tune(index, manifest.get("index_type", "flat"), manifest.get("index_params") or {})
            with open(path / "chunks.jsonl", encoding="utf-8") as f:
                chunks = [Chunk.from_dict(json.loads(line)) for line in f if line.strip()]
            bm25 = bm25s.BM25.load(str(path / "bm25"), allow_pickle=False, show_progress=False)
        except Exception as e:
            raise IndexLoadError(f"Index at {path} could not be read ({type(e).__name__}: {e}): {rebuild}") from None
        counts = (index.ntotal, len(chunks), int(bm25.scores["num_docs"]), manifest.get("counts", {}).get("chunks"))
        if len(set(counts)) != 1 or index.d != dim:
            raise IndexLoadError(
                f"Index at {path} is inconsistent (vectors, chunks, BM25 documents, manifest: {counts}; "
                f"dim {index.d} vs {dim}): {rebuild}"
            )
        return cls(chunks, index, bm25, manifest)


def _make_faiss(vectors: np.ndarray, index_type: str, params: dict):
    n, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        params.update(M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, ef_search=HNSW_EF_SEARCH)
    elif index_type == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        params.update(nlist=nlist, nprobe=IVF_NPROBE)
    else:
        raise ConfigError(f"index_type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    index.add(vectors)
    _tune(index, index_type, params)
    return index


def _tune(index, index_type: str, params: dict) -> None:
    """Search-time settings, set after build and after load (not all survive write_index)."""
    if index_type == "hnsw":
        index.hnsw.efSearch = params.get("ef_search", HNSW_EF_SEARCH)
    elif index_type == "ivf":
        index.nprobe = params.get("nprobe", IVF_NPROBE)
        index.make_direct_map()  # so vectors() can reconstruct any row


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file (or, best effort, a directory entry) to disk before the rename publishes it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return  # some platforms cannot open directories
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path`; an existing `path` is first moved to a `.old-*` sibling, removed last."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = path.parent / f".{path.name}.old-{secrets.token_hex(4)}"
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _recover(path: Path) -> None:
    """A crash between the two renames of `_swap_into_place` left no `path`: put the old index back."""
    if path.exists() or not path.parent.is_dir():
        return
    for old in sorted(path.parent.glob(f".{path.name}.old-*")):
        if (old / "manifest.json").is_file():
            os.rename(old, path)
            return
