"""`DiskIndex`: the large-corpus index type, with the same search interface as `VectorIndex`.

Only what a query needs per row stays in RAM: IVF-PQ codes (faiss, PQ_M bytes per chunk). The
rest is on disk and read on demand:
    manifest.json        as VectorIndex's (format medrag-index/1), index_type "ivfpq", per-file sha256
    ivfpq.faiss          coarse centroids + PQ codes: the candidates of a query
    vectors.f16.npy      (n, dim) float16 unit vectors, read by row (pread): the exact re-rank of candidates
    chunks.zlib, chunks.offsets.npy   medrag.store: chunk texts, read for the hits only
    topics.npy, sections.npy          int64 topic hash and uint8 section code per row (the section prior)
    bm25/                medrag.bm25_disk: memory-mapped postings

Dense search asks faiss for `rerank` candidates (nprobe lists of nlist scanned with PQ
distances), then scores those candidates exactly against their float16 vectors, so the scores a
caller sees are true cosines (to float16 precision) and the ranking among candidates is exact.

Hashes: written at build time and checked by `verify_files` for a download (the pipeline opens a
Hub index with `medrag.indexes.open_index(verify=True)`: once per manifest), not on every load:
hashing a 5M-chunk folder (~8 GB) would take minutes. `load` checks each file's presence and size.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from medrag.bm25_disk import DiskBM25
from medrag.embedder import same_model
from medrag.errors import IndexLoadError
from medrag.index import _QUESTION_WORDS, _STOPWORDS, _TOKEN, FORMAT, analyze
from medrag.sections import SECTIONS
from medrag.store import ChunkStore

INDEX_TYPE = "ivfpq"
PQ_M = 48  # bytes per vector; with the float16 re-rank, recall@10 0.980 at 1M (bench/README.md); not swept
NPROBE = 64  # lists scanned per query at least; nprobe_for scales it with the lists (bench/README.md)
RERANK = 200  # PQ candidates re-scored exactly from float16 vectors
TRAIN_PER_LIST = 40  # faiss wants >= 39 training points per list
SECTION_NAMES = (None, *SECTIONS, "information")  # uint8 codes in sections.npy
READERS = 8  # threads reading re-rank rows: disk reads overlap; they wait on I/O, not on the 2 cores
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def nlist_for(n: int) -> int:
    """Coarse lists for n vectors: ~2*sqrt(n) (4,472 at 5M), a power of two, and enough points to train."""
    return int(max(1, min(2 ** round(math.log2(max(2.0, 2 * math.sqrt(n)))), n // TRAIN_PER_LIST)))


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(READERS, thread_name_prefix="medrag-rows")


def nprobe_for(nlist: int) -> int:
    """Lists to scan: 1/32 of them, 64 at least. At 1M chunks (2,048 lists) 64 gave recall@10 0.980 against
    exact search and 32 gave 0.952 (bench_scale.py), so the share is kept as the lists grow with the corpus."""
    return max(NPROBE, nlist // 32)


def train_ivfpq(sample: np.ndarray, n_total: int, pq_m: int = PQ_M) -> faiss.Index:
    """An empty IVF-PQ inner-product index trained on `sample` (float32 unit vectors)."""
    dim = sample.shape[1]
    nlist = nlist_for(n_total)
    m = pq_m if dim % pq_m == 0 else next(d for d in range(min(pq_m, dim), 0, -1) if dim % d == 0)
    bits = 8 if len(sample) >= 256 * 39 else max(1, int(math.log2(max(2, len(sample) // 39))))
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)
    faiss.omp_set_num_threads(_CORES)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(path: str | Path, manifest: dict | None = None) -> None:
    """Hash every file the manifest lists; IndexLoadError naming the first one that differs or is missing."""
    path = Path(path)
    manifest = manifest or json.loads((path / "manifest.json").read_text())
    for name, entry in sorted((manifest.get("files") or {}).items()):
        expected = entry["sha256"] if isinstance(entry, dict) else entry
        if not (path / name).is_file():
            raise IndexLoadError(f"Index file {path}/{name} is missing: rebuild it with 'python index_builder.py'")
        if sha256_file(path / name) != expected:
            raise IndexLoadError(
                f"Index file {path}/{name} is corrupt (sha256 mismatch): rebuild it with 'python index_builder.py'"
            )


class _Sections:
    """sections.npy codes read as section names, by row (what medrag.sections.promote indexes)."""

    def __init__(self, codes: np.ndarray):
        self.codes = codes

    def __getitem__(self, row: int) -> str | None:
        return SECTION_NAMES[self.codes[row]]

    def __len__(self) -> int:
        return len(self.codes)


class DiskIndex:
    def __init__(self, path: Path, manifest: dict, ivf, vectors: np.ndarray, store: ChunkStore, bm25: DiskBM25):
        self.path, self.manifest, self.faiss = path, manifest, ivf
        self.chunks, self.bm25 = store, bm25
        self._dim, self._vec_start = vectors.shape[1], vectors.offset  # rows are read with pread, not through the map:
        self._vec_fd = os.open(path / "vectors.f16.npy", os.O_RDONLY)  # a long-running server's RSS stays flat
        self.topics = np.load(path / "topics.npy", mmap_mode="r", allow_pickle=False)
        self.sections = _Sections(np.load(path / "sections.npy", mmap_mode="r", allow_pickle=False))
        params = manifest.get("index_params") or {}
        self.nprobe, self.rerank = int(params.get("nprobe", NPROBE)), int(params.get("rerank", RERANK))

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def manifest_hash(self) -> str:
        return hashlib.sha256(_manifest_bytes(self.manifest)).hexdigest()[:12]

    def row_labels(self):
        """(topic per row, section per row) for the section prior, without reading any chunk."""
        return self.topics, self.sections

    # --- search ----------------------------------------------------------------------------
    def search_dense(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine per query row: (scores (n, k), ids (n, k)); ids -1 pad past the index size."""
        q = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        depth = max(k, self.rerank)
        faiss.omp_set_num_threads(1 if len(q) < 20 else _CORES)  # one query: threads only spin (see index.py)
        self.faiss.nprobe = self.nprobe
        _, cand = self.faiss.search(q, depth)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        for i, row_ids in enumerate(cand):
            rows = np.unique(row_ids[row_ids >= 0])  # ascending: the memory map is read front to back
            if not len(rows):
                continue
            exact = self._rows(rows) @ q[i]
            top = np.lexsort((rows, -exact))[:k]  # score descending, then row: deterministic
            scores[i, : len(top)], ids[i, : len(top)] = exact[top], rows[top]
        return scores, ids

    def search_bm25(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.bm25.search([analyze(q) for q in queries], k)

    def unknown_words(self, text: str, common=None) -> list[str]:
        """As VectorIndex.unknown_words: words no chunk contains, asking and everyday words aside."""
        words = dict.fromkeys(w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS | _QUESTION_WORDS)
        return [w for w in words if analyze(w) and analyze(w)[0] not in self.bm25 and not (common and common(w))]

    def vectors(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        return self._rows(ids) if ids.size else np.zeros((0, self.manifest["dim"]), np.float32)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """float32 copies of float16 rows, one pread each. Rows not in the page cache cost a disk read
        (~50 us here): READERS threads overlap them (pread releases the GIL), so 200 cold rows take ~2 ms."""
        size, rows = self._dim * 2, rows.tolist()
        out = np.empty((len(rows), self._dim), dtype="<f2")

        def read(part: range) -> None:
            for i in part:
                out[i] = np.frombuffer(os.pread(self._vec_fd, size, self._vec_start + rows[i] * size), dtype="<f2")

        if len(rows) < 4 * READERS:
            read(range(len(rows)))
        else:
            list(_pool().map(read, [range(i, len(rows), READERS) for i in range(READERS)]))
        return out.astype(np.float32)

    def __del__(self):
        fd, self._vec_fd = getattr(self, "_vec_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    # --- disk ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | Path, *, expect_model: str | None = None, expect_dim: int | None = None, verify: bool = False
    ) -> DiskIndex:
        """Open an index folder; sizes checked always, sha256 only with verify=True (see the module doc)."""
        path = Path(path)
        rebuild = f"rebuild it with 'python index_builder.py --out {path}'"
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexLoadError(f"No readable index at {path} ({e}): run 'python index_builder.py'") from None
        if manifest.get("format") != FORMAT or manifest.get("index_type") != INDEX_TYPE:
            raise IndexLoadError(f"Index at {path} is not an {INDEX_TYPE} index: {rebuild}")
        model, dim = manifest.get("embedding_model", "?"), manifest.get("dim")
        if (expect_model and not same_model(model, expect_model)) or (expect_dim and dim != expect_dim):
            raise IndexLoadError(
                f"Index at {path} was built with model {model} (dim {dim}) but the configuration uses model "
                f"{expect_model or model} (dim {expect_dim or dim}): {rebuild} or set MEDRAG_EMBEDDING_MODEL={model}"
            )
        for name, entry in sorted((manifest.get("files") or {}).items()):
            size = entry.get("size") if isinstance(entry, dict) else None
            if not (path / name).is_file():
                raise IndexLoadError(f"Index file {path}/{name} is missing: {rebuild}")
            if size is not None and (path / name).stat().st_size != size:
                raise IndexLoadError(f"Index file {path}/{name} has the wrong size (truncated or replaced): {rebuild}")
        if verify:
            verify_files(path, manifest)
        n = int(manifest["counts"]["chunks"])
        try:
            ivf = faiss.read_index(str(path / "ivfpq.faiss"))
            vectors = np.load(path / "vectors.f16.npy", mmap_mode="r", allow_pickle=False)
        except Exception as e:
            raise IndexLoadError(f"Index at {path} could not be read ({type(e).__name__}: {e}): {rebuild}") from None
        store, bm25 = ChunkStore(path, n), DiskBM25(path / "bm25")
        if ivf.ntotal != n or vectors.shape != (n, dim) or bm25.n != n:
            raise IndexLoadError(
                f"Index at {path} is inconsistent (vectors {vectors.shape}, codes {ivf.ntotal}, BM25 rows {bm25.n}, "
                f"manifest {n}): {rebuild}"
            )
        return cls(path, manifest, ivf, vectors, store, bm25)


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
