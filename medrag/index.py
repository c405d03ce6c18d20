"""`VectorIndex`: chunks + a FAISS index of their unit vectors + a BM25 index of their text.

On disk an index is a folder of plain files, no pickle:
    manifest.json   format, model id, dim, chunker settings, corpus hash, counts, sha256 per file
    index.faiss     faiss.write_index (inner product over L2-normalised float32 = cosine)
    chunks.jsonl    one Chunk.to_dict() per line, row i = vector i = BM25 document i
    bm25/           bm25s' own files (.npy arrays saved with allow_pickle=False, .json vocab/params)

`save` writes into a hidden sibling folder and renames it into place, so `path` always holds a
whole index. A crash between the two renames of a replacement leaves the previous index at a
`.NAME.old-*` sibling; `load` moves it back when `path` is missing. `save` (and `prepare_out`,
which a build calls before any work) replaces only what the project wrote: `path` must be absent,
an empty folder, or an index holding nothing its manifest does not list; anything else is refused
and left as it is. Temporary folders of a build that died (`.NAME.tmp-<pid>-*` of a process gone)
are removed then. An OS error while writing (read-only folder, full disk) is an IndexWriteError
that says what failed, where and what to do; any previous index stays whole.

`load` refuses (IndexLoadError naming the file, and the line, and saying to rebuild) a manifest
that lists a file outside the folder or reached through a link, a file that does not match its
sha256, a malformed chunks.jsonl row and malformed BM25 arrays or vocabulary, so a bad index
fails when it opens, never at answer time. The Hugging Face cache's own links (snapshot files
pointing into the repo's blobs folder) are the one kind of link followed.

Shortcuts taken on purpose: BM25 scoring is done here on bm25s' CSC arrays with np.bincount
(bm25s without numba uses np.add.at, several times slower); query and corpus share `analyze`.
Cleaning leftovers asks the OS whether their process lives, which Windows cannot be asked
safely: there leftovers stay.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import stat
import threading
from pathlib import Path

import bm25s
import faiss
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

import medrag
from medrag.embedder import cpu_threads, same_model
from medrag.errors import ConfigError, IndexLoadError, IndexWriteError, InputError
from medrag.files import fsync, sha256_file, swap_into_place
from medrag.types import Chunk

FORMAT = "medrag-index/1"
BM25_FILES = ("params.index.json", "vocab.index.json", "data.csc.index.npy", "indices.csc.index.npy",
              "indptr.csc.index.npy")  # fmt: skip
REQUIRED = ("index.faiss", "chunks.jsonl", *(f"bm25/{name}" for name in BM25_FILES))  # what load reads
INDEX_TYPES = ("flat", "hnsw", "ivf")
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 64  # recall ~0.99 at k=50 on 40k vectors
IVF_NPROBE = 16  # of ~4*sqrt(n) lists: a few percent of the vectors scanned per query
log = logging.getLogger(__name__)
faiss.cvar.distance_compute_blas_threshold = 20  # BLAS from 20 queries: ~6x faster batched search, same results

_CORES = cpu_threads()
TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' (and scikit-learn's) default token pattern
STOPWORDS = frozenset(STOPWORDS_EN)
_STEMMER = Stemmer.Stemmer("english")
_STEMS: dict[str, str] = {}
_STEM_LOCK = threading.Lock()  # a PyStemmer object must not be used by two threads at once


def _stem(words: list[str]) -> list[str]:
    with _STEM_LOCK:
        return _STEMMER.stemWords(words)


def analyze(text: str) -> list[str]:
    """BM25 terms of a text: lower-cased words of 2+ characters, English stopwords out, Snowball-stemmed."""
    words = [w for w in TOKEN.findall(text.lower()) if w not in STOPWORDS]
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
        terms = [analyze(c.embed_text) for c in chunks]
        if not any(terms):
            raise InputError(
                "the documents hold no words to search (only symbols, numbers or very common words): "
                "add documents with text"
            )
        bm25 = bm25s.BM25()  # bm25s' defaults: Lucene's variant, k1=1.5, b=0.75
        bm25.index(terms, show_progress=False)
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

    def has_term(self, term: str) -> bool:
        """True when some chunk holds the BM25 term (a stem from `analyze`): medrag.evidence asks this."""
        return term in self.bm25.vocab_dict

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
        """Write the folder atomically: a failure leaves any previous index at `path` untouched.
        IndexWriteError when `path` holds other files (see `prepare_out`) or the OS refuses a write."""
        path = Path(path)
        prepare_out(path)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            with open(tmp / "index.faiss", "wb") as f:  # through Python, so a failed write is an OSError
                f.write(memoryview(faiss.serialize_index(self.faiss)))
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                for chunk in self.chunks:
                    f.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
            self.bm25.save(str(tmp / "bm25"), allow_pickle=False, show_progress=False)
            files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            self.manifest["files"] = {name: sha256_file(tmp / name) for name in files}
            (tmp / "manifest.json").write_bytes(_manifest_bytes(self.manifest))
            for name in [*files, "manifest.json"]:
                fsync(tmp / name)
            fsync(tmp / "bm25")
            fsync(tmp)
            prepare_out(path)  # again: another process may have put files there meanwhile
            swap_into_place(tmp, path)
            _clean_leftovers(path)  # an old index a crash left beside an absent `path` is replaced now
        except OSError as e:
            raise IndexWriteError(_write_failed(e, path)) from e
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
            manifest = json.loads(_member(path, "manifest.json", rebuild).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
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
        _check_manifest(manifest, path, rebuild)
        model, dim = manifest["embedding_model"], manifest["dim"]
        if (expect_model and not same_model(model, expect_model)) or (expect_dim and dim != expect_dim):
            raise IndexLoadError(
                f"Index at {path} was built with model {model} (dim {dim}) but the configuration uses model "
                f"{expect_model or model} (dim {expect_dim or dim}): {rebuild} or set MEDRAG_EMBEDDING_MODEL={model}"
            )
        files = manifest["files"]
        unlisted = sorted(f"bm25/{p.name}" for p in _member_dir(path, "bm25", rebuild).iterdir()) if verify else []
        for name in sorted({*REQUIRED, *files, *unlisted}):
            member = _member(path, name, rebuild)
            if verify and name not in files:
                raise IndexLoadError(f"Index file {member} is not listed in manifest.json: {rebuild}")
            if verify and files[name] != sha256_file(member):
                raise IndexLoadError(f"Index file {member} is corrupt (sha256 mismatch): {rebuild}")
        try:
            index = faiss.read_index(str(path / "index.faiss"))
            _tune(index, manifest["index_type"], manifest["index_params"])
            bm25 = bm25s.BM25.load(str(path / "bm25"), allow_pickle=False, show_progress=False)
        except Exception as e:
            raise IndexLoadError(f"Index at {path} could not be read ({type(e).__name__}: {e}): {rebuild}") from None
        if not isinstance(index, _FAISS_TYPES[manifest["index_type"]]):
            raise IndexLoadError(
                f"Index file {path}/index.faiss holds a {type(index).__name__}, but manifest.json says "
                f"{manifest['index_type']!r}: {rebuild}"
            )
        chunks = _read_chunks(path / "chunks.jsonl", rebuild)
        if not _is_int(bm25.scores.get("num_docs")):
            raise IndexLoadError(
                f"Index file {path}/bm25/params.index.json is malformed (num_docs must be an integer, "
                f"found {bm25.scores.get('num_docs')!r}): {rebuild}"
            )
        counts = (index.ntotal, len(chunks), bm25.scores["num_docs"], manifest["counts"]["chunks"])
        if len(set(counts)) != 1 or index.d != dim:
            raise IndexLoadError(
                f"Index at {path} is inconsistent (vectors, chunks, BM25 documents, manifest: {counts}; "
                f"dim {index.d} vs {dim}): {rebuild}"
            )
        _check_bm25(path / "bm25", bm25, len(chunks), rebuild)
        return cls(chunks, index, bm25, manifest)


# --- checks at load: a malformed index fails here, never at answer time ---------------------------
_CHUNK_FIELDS = {"id": str, "doc_id": str, "title": str, "text": str, "url": str, "source": str,
                 "position": int, "start": int, "end": int, "metadata": dict}  # fmt: skip
_FAISS_TYPES = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSW, "ivf": faiss.IndexIVF}


def _check_manifest(m: dict, path: Path, rebuild: str) -> None:
    """The fields load and search use, with their types: a hand-edited manifest fails here."""
    problems = [
        ("embedding_model", isinstance(m.get("embedding_model"), str), "a model id"),
        ("dim", _is_int(m.get("dim")) and m["dim"] > 0, "a positive integer"),
        ("index_type", m.get("index_type") in INDEX_TYPES, f"one of {', '.join(INDEX_TYPES)}"),
        ("index_params", isinstance(m.get("index_params"), dict), "an object"),
        ("counts", isinstance(m.get("counts"), dict) and _is_int(m["counts"].get("chunks")), "{'chunks': N, ...}"),
        ("files", isinstance(m.get("files"), dict) and all(isinstance(v, str) for v in m["files"].values()),
         "an object of file names and sha256 digests"),
    ]  # fmt: skip
    for key, ok, expected in problems:
        if not ok:
            raise IndexLoadError(
                f"Index file {path}/manifest.json is malformed: '{key}' must be {expected}, "
                f"found {str(m.get(key))[:60]!r}: {rebuild}"
            )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_chunks(file: Path, rebuild: str) -> list[Chunk]:
    """chunks.jsonl, each row checked: an object with every Chunk field, of its type, offsets consistent."""
    chunks = []
    with open(file, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:
                raise IndexLoadError(f"Index file {file} line {n} is not valid JSON ({e}): {rebuild}") from None
            problem = _chunk_problem(row)
            if problem:
                raise IndexLoadError(f"Index file {file} line {n} is not a chunk ({problem}): {rebuild}")
            chunks.append(Chunk(**{key: row[key] for key in _CHUNK_FIELDS}))
    return chunks


def _chunk_problem(row) -> str | None:
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    for key, kind in _CHUNK_FIELDS.items():
        if key not in row:
            return f"no '{key}'"
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            return f"'{key}' is {type(row[key]).__name__}, not {kind.__name__}"
    if not 0 <= row["start"] <= row["end"] or row["position"] < 0:
        return f"position {row['position']}, offsets {row['start']}..{row['end']}: none may be negative"
    return None


def _check_bm25(folder: Path, bm25: bm25s.BM25, n_chunks: int, rebuild: str) -> None:
    """The arrays search_bm25 indexes with, and the vocabulary that points into them."""

    def bad(name: str, what: str) -> IndexLoadError:
        return IndexLoadError(f"Index file {folder}/{name} is malformed ({what}): {rebuild}")

    data, indices, indptr = (np.asarray(bm25.scores.get(k)) for k in ("data", "indices", "indptr"))
    if data.ndim != 1 or data.dtype.kind != "f" or not np.isfinite(data).all():
        raise bad("data.csc.index.npy", "scores must be one row of finite floats")
    if indices.shape != data.shape or indices.dtype.kind not in "iu":
        raise bad("indices.csc.index.npy", f"must be {len(data)} integers, one per score")
    if indices.size and (indices.min() < 0 or indices.max() >= n_chunks):
        raise bad("indices.csc.index.npy", f"chunk numbers must lie in 0..{n_chunks - 1}")
    ok = indptr.ndim == 1 and indptr.dtype.kind in "iu" and indptr.size >= 1
    if not ok or indptr[0] != 0 or indptr[-1] != len(data) or (np.diff(indptr) < 0).any():
        raise bad("indptr.csc.index.npy", f"must rise from 0 to {len(data)}")
    terms = len(indptr) - 1
    vocab = bm25.vocab_dict
    if not isinstance(vocab, dict) or not all(
        isinstance(t, str) and _is_int(i) and (0 <= i < terms or t == "") for t, i in vocab.items()
    ):  # bm25s keeps "" as a placeholder past the last term; analyze never yields it
        raise bad("vocab.index.json", f"must map each term to a number in 0..{terms - 1}")


def _member(folder: Path, name: str, rebuild: str) -> Path:
    """folder/name, refused unless it is a regular file inside `folder` reached through no link
    (except the Hugging Face cache's links from a snapshot into the repo's blobs folder)."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if name.startswith("/") or "\\" in name or ":" in name or any(part in ("", ".", "..") for part in parts):
        raise IndexLoadError(
            f"Index at {folder} lists a file outside its folder in manifest.json ({name!r}): {rebuild}"
        )
    path = folder
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) and _cache_link(folder, path):
                mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise IndexLoadError(f"Index file {path} is missing: {rebuild}") from None
        except OSError as e:
            raise IndexLoadError(f"Index file {path} cannot be read ({e.strerror}): {rebuild}") from None
        if stat.S_ISLNK(mode):
            raise IndexLoadError(
                f"Index file {path} is a symbolic link: an index folder holds its own files; {rebuild}"
            )
        if not (stat.S_ISREG(mode) if i == len(parts) - 1 else stat.S_ISDIR(mode)):
            raise IndexLoadError(f"Index file {path} is not a regular file: {rebuild}")
    return path


def _member_dir(folder: Path, name: str, rebuild: str) -> Path:
    path = folder / name
    if path.is_symlink() or not path.is_dir():
        raise IndexLoadError(f"Index folder {path} is missing or a link: {rebuild}")
    return path


def _cache_link(folder: Path, link: Path) -> bool:
    """True for a Hugging Face cache snapshot's link into its repo's blobs folder (which is no link)."""
    repo = folder.parent.parent
    blobs = repo / "blobs"
    if folder.parent.name != "snapshots" or blobs.is_symlink() or not blobs.is_dir():
        return False
    return link.resolve().is_relative_to(blobs.resolve())


# --- where an index may be written -----------------------------------------------------------------
def prepare_out(path: str | Path) -> None:
    """Refuse (IndexWriteError) an output folder that may hold files the project did not write, and
    remove what builds that died left beside it. Accepted: absent, an empty folder, or an index
    (by its manifest) holding nothing else. Called before a build starts, and again by `save`."""
    path = Path(path)
    todo = "choose an absent or empty folder, or an index folder to replace; nothing was changed"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        _clean_leftovers(path)
        return
    except OSError as e:
        raise IndexWriteError(f"Cannot use {path} for the index ({e.strerror}): {todo}") from None
    if stat.S_ISLNK(mode):
        raise IndexWriteError(f"{path} is a symbolic link: pass the folder it points to ({os.readlink(path)})")
    if not stat.S_ISDIR(mode):
        raise IndexWriteError(f"{path} exists and is not a folder: {todo}")
    try:
        entries = os.listdir(path)
        if entries:
            foreign = _foreign_files(path)
            if foreign is None:
                raise IndexWriteError(f"{path} is not empty and holds no MedRAG index (no manifest.json): {todo}")
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise IndexWriteError(
                    f"{path} holds an index and files it did not write ({shown}): move them out or {todo}"
                )
    except OSError as e:
        raise IndexWriteError(f"Cannot read {path} ({e.strerror}): {todo}") from None
    _clean_leftovers(path)


def _foreign_files(path: Path) -> list[str] | None:
    """Entries of an index folder that its manifest does not account for; None when it is no index."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    files = manifest.get("files") if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None
    if not isinstance(files, dict):
        return None
    ours = {"manifest.json", *files}
    ours |= {"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)}  # their folders
    found = []
    for root, dirs, names in os.walk(path):  # links are listed, never followed
        for name in sorted([*dirs, *names]):
            rel = Path(root, name).relative_to(path).as_posix()
            if rel not in ours:
                found.append(rel)
        dirs[:] = [d for d in dirs if Path(root, d).relative_to(path).as_posix() in ours]
    return found


def _clean_leftovers(path: Path) -> None:
    """Remove `.NAME.tmp-<pid>-*` siblings of a process that is gone, and `.NAME.old-*` ones once
    `path` is an index again (both are left only by a build that died mid-way)."""
    if os.name == "nt" or not path.parent.is_dir():
        return  # on Windows, os.kill(pid, 0) would not ask whether a process lives
    swapped = (path / "manifest.json").is_file()
    for entry in os.scandir(path.parent):
        tmp, old = entry.name.startswith(f".{path.name}.tmp-"), entry.name.startswith(f".{path.name}.old-")
        if (tmp and not _alive(entry.name.split(".tmp-", 1)[1])) or (old and swapped):
            log.info("removing %s, left by an interrupted index build", entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)


def _alive(tag: str) -> bool:
    """Whether the process that named a temporary folder `<pid>-<hex>` still runs."""
    pid = tag.split("-", 1)[0]
    if not pid.isdigit():
        return False  # a name from before the pid was part of it
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def _write_failed(error: OSError, path: Path) -> str:
    """One line: what failed, where, what to do."""
    where = error.filename or path
    todo = {
        errno.ENOSPC: "free some disk space or choose a folder on another disk",
        errno.EDQUOT: "free some space in your quota or choose another folder",
        errno.EROFS: "the file system is read-only: choose a folder you can write to",
        errno.EACCES: "choose a folder you can write to",
        errno.EPERM: "choose a folder you can write to",
        errno.EFBIG: "the file is larger than this system allows: choose a folder on another disk",
    }.get(error.errno, "check the folder and try again")
    return (
        f"Could not write the index to {path}: {error.strerror or error} ({where}): {todo}; "
        "any index already there is unchanged"
    )


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


def _recover(path: Path) -> None:
    """A crash between the two renames of `_swap_into_place` left no `path`: put the old index back."""
    if path.exists() or not path.parent.is_dir():
        return
    for old in sorted(path.parent.glob(f".{path.name}.old-*")):
        if (old / "manifest.json").is_file():
            os.rename(old, path)
            return
