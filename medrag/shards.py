"""The streaming, resumable build of a large (`ivfpq`) index: documents -> shards -> index folder.

Documents are read one at a time, chunked in groups, embedded and written in shards of about
SHARD_CHUNKS chunks into a work folder beside the output (`.NAME.build/`):
    state.json            the inputs' fingerprint, and per finished shard: documents consumed, rows, sha256s
    shards/00000/         chunks.jsonl, vectors.npy (float16), BM25 postings (medrag.bm25_disk), new_terms.json
A shard is written to a temporary folder, renamed, and only then recorded in state.json, so a
build killed at any point resumes after its last recorded shard: the documents before it are
read again (for the corpus hash) but not chunked or embedded. At the end `finalize` merges the
shards into the index folder (medrag.disk_index), hashes it, renames it into place and removes
the work folder. Memory is bounded by one shard plus the BM25 vocabulary, whatever the corpus.

Shortcuts taken on purpose: .jsonl files are streamed line by line (the PubMed-sized case);
other inputs (folders of PDF, HTML, text) are loaded per given path with `load_documents`.
Duplicate document ids are not detected across a streamed corpus (that would need every id in
RAM). Progress is a log line (also off a TTY) at most every `log_every` seconds, with an ETA
from the share of input bytes consumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import medrag
from medrag.bm25_disk import BM25Builder, read_npy_slice
from medrag.build import BuildReport
from medrag.chunking import chunk_documents
from medrag.config import PipelineConfig
from medrag.disk_index import (
    INDEX_TYPE,
    PQ_M,
    RERANK,
    SECTION_NAMES,
    TRAIN_PER_LIST,
    nlist_for,
    nprobe_for,
    train_ivfpq,
)
from medrag.documents import Document, SkippedFile, load_documents, normalise
from medrag.errors import ConfigError, DocumentError, MedRAGError
from medrag.files import fsync, sha256_file, swap_into_place
from medrag.index import FORMAT, analyze, prepare_out
from medrag.sections import chunk_section, chunk_topic
from medrag.store import StoreWriter
from medrag.types import Chunk

log = logging.getLogger(__name__)
_CHUNK_FIELDS = tuple(f.name for f in dataclasses.fields(Chunk))

SHARD_CHUNKS = 20_000  # ~4 min of CPU embedding here: a kill loses at most that; 24M chunks make 1,200 shards
DOCS_PER_GROUP = 256  # documents chunked per tokenizer batch call (as medrag.chunking does)
EMBED_STEP = 2048  # texts per embed call inside a shard: progress (and its ETA) moves every ~30 s on CPU
ADD_ROWS = 65_536  # vectors read and added to faiss at a time: 100 MB of float32
TRAIN_MIN = 65_536  # training sample floor: enough for the 256 PQ centroids of every sub-quantiser
MIN_ROWS = 2  # the fewest chunks faiss can train IVF-PQ on (require_rows)


@dataclass
class StreamReport(BuildReport):
    """A BuildReport with the shards: how many, and how many an interrupted run had finished."""

    shards: int = 0
    resumed_shards: int = 0  # shards found finished from an earlier, interrupted run

    def summary(self) -> str:
        lines = [
            f"Index written to {self.out} ({INDEX_TYPE})",
            f"  documents: {self.documents}   chunks: {self.chunks}   shards: {self.shards} "
            f"({self.resumed_shards} from an earlier run)   skipped files: {len(self.skipped)}",
            "  seconds: " + "  ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
        ]
        return "\n".join(lines + [f"  skipped {s.path}: {s.reason}" for s in self.skipped])


# --- documents, one at a time -------------------------------------------------------------
def iter_documents(paths: Sequence[str | Path], report) -> Iterator[tuple[Document, float]]:
    """(document, share of the input bytes read so far) in load_documents' order."""
    sizes = {Path(p): _size(Path(p)) for p in paths}
    total, done = max(1, sum(sizes.values())), 0
    for given, size in sizes.items():
        if given.is_file() and given.suffix.lower() == ".jsonl":
            for doc, at in _jsonl_documents(given, report):
                yield doc, (done + at) / total
        else:
            loaded = load_documents([given])
            for s in loaded.skipped:
                report(s.path, s.reason)
            for i, doc in enumerate(loaded.documents, 1):
                yield doc, (done + size * i / max(1, len(loaded.documents))) / total
        done += size


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _jsonl_documents(path: Path, report) -> Iterator[tuple[Document, int]]:
    """Rows of a .jsonl corpus as medrag.documents reads them (id, title, text, url, source, the rest)."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if n == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
                text = row.get("text") if isinstance(row, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise ValueError("missing or empty 'text' field")
            except (UnicodeDecodeError, ValueError) as e:
                report(
                    f"{path}:{n}", str(e) if isinstance(e, ValueError) and "text" in str(e) else f"invalid line ({e})"
                )
                continue
            ident = row.get("id")
            yield (
                Document(
                    id=str(ident) if ident not in (None, "") else f"{path.stem}:{n}",
                    title=" ".join(str(row.get("title") or "").split()),
                    text=normalise(text),
                    url=str(row.get("url") or ""),
                    source=str(row.get("source") or path.name),
                    metadata={k: v for k, v in row.items() if k not in {"id", "title", "text", "url", "source"}},
                ),
                f.tell(),
            )


def doc_line(doc: Document) -> bytes:
    """One document's line of medrag.documents.corpus_sha256, so the streamed hash equals the in-memory one."""
    return json.dumps([doc.id, doc.title, doc.text, doc.url], ensure_ascii=False).encode("utf-8") + b"\n"


# --- shards on disk -------------------------------------------------------------------------
class ShardedBuild:
    """A work folder of finished shards; resumable; `finalize` turns it into an index folder."""

    def __init__(self, work: str | Path, fingerprint: dict):
        self.work, self.fingerprint = Path(work), fingerprint
        self.bm25 = BM25Builder()
        self.shards: list[dict] = []
        state = self.work / "state.json"
        if state.is_file():
            saved = json.loads(state.read_text())
            if saved.get("fingerprint") != fingerprint:
                raise MedRAGError(
                    f"The interrupted build in {self.work} was started with other documents or settings: "
                    f"delete that folder to start over, or rerun with the same arguments to resume it"
                )
            self._take_back(saved.get("shards", []))
        (self.work / "shards").mkdir(parents=True, exist_ok=True)
        for stray in (self.work / "shards").iterdir():  # written but never recorded: a kill came in between
            if stray.name not in {s["name"] for s in self.shards}:
                shutil.rmtree(stray, ignore_errors=True)
        self._save_state()

    @property
    def documents_done(self) -> int:
        return self.shards[-1]["documents_end"] if self.shards else 0

    @property
    def rows(self) -> int:
        return self.bm25.rows

    def _take_back(self, recorded: list[dict]) -> None:
        for entry in recorded:
            folder = self.work / "shards" / entry["name"]
            problem = _check_shard(folder, entry["files"])
            if problem:
                log.warning("Shard %s of the interrupted build is %s: building again from there", folder, problem)
                break
            new_terms = json.loads((folder / "new_terms.json").read_text(encoding="utf-8"))
            self.bm25.replay(folder, new_terms)
            self.shards.append(entry)
        log.info("resuming the build in %s after %d finished shards", self.work, len(self.shards))

    def add_shard(self, chunks: list[Chunk], vectors: np.ndarray, documents_end: int) -> None:
        """Write one shard (rows numbered after the previous ones) and record it."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        name = f"{len(self.shards):05d}"
        tmp = self.work / "shards" / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with open(tmp / "chunks.jsonl", "wb") as f:
            for c in chunks:  # Chunk.to_dict's dataclasses.asdict deep-copies: 40% of a shard's time
                f.write(json.dumps({k: getattr(c, k) for k in _CHUNK_FIELDS}, ensure_ascii=False).encode() + b"\n")
        np.save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float16), allow_pickle=False)
        new_terms = self.bm25.add_shard(tmp, [analyze(c.embed_text) for c in chunks])
        (tmp / "new_terms.json").write_text(json.dumps(new_terms, ensure_ascii=False), encoding="utf-8")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        for p in tmp.iterdir():
            fsync(p)
        os.rename(tmp, self.work / "shards" / name)
        self.shards.append({"name": name, "documents_end": documents_end, "rows": len(chunks), "files": files})
        self._save_state()

    def _save_state(self) -> None:
        tmp = self.work / f".state-{secrets.token_hex(4)}.json"
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "shards": self.shards}, indent=1))
        fsync(tmp)
        os.replace(tmp, self.work / "state.json")

    def finalize(self, out: str | Path, manifest: dict, *, pq_m: int = PQ_M, seed: int = 0) -> Path:
        """Merge the shards into the index folder `out` (atomically), then remove the work folder."""
        out = Path(out)
        if not self.shards or not self.rows:
            raise MedRAGError("no chunks to index: the corpus produced no text")
        tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            folders = [self.work / "shards" / s["name"] for s in self.shards]
            t0 = time.perf_counter()
            dim = self._write_rows(folders, tmp)
            t1 = time.perf_counter()
            bm25 = self.bm25.finish(folders, tmp / "bm25")
            t2 = time.perf_counter()
            params = self._write_ivfpq(tmp, dim, pq_m, seed)
            t3 = time.perf_counter()
            files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            manifest = {
                **manifest,
                "format": FORMAT,
                "dim": dim,
                "index_type": INDEX_TYPE,
                "index_params": params,
                "bm25": {"method": bm25["method"], "k1": bm25["k1"], "b": bm25["b"], "stopwords": "en",
                         "stemmer": "english", "layout": "medrag.bm25_disk"},
                "counts": {**manifest.get("counts", {}), "chunks": self.rows},
                "files": {n: {"sha256": sha256_file(tmp / n), "size": (tmp / n).stat().st_size} for n in files},
            }  # fmt: skip
            manifest.setdefault("extra", {})["build_seconds"] = {
                "rows": round(t1 - t0, 1), "bm25": round(t2 - t1, 1), "ivfpq": round(t3 - t2, 1),
                "hash": round(time.perf_counter() - t3, 1),
            }  # fmt: skip
            (tmp / "manifest.json").write_text(
                json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            )
            for p in tmp.rglob("*"):
                fsync(p) if p.is_file() else None
            swap_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)
        return out

    def _write_rows(self, folders: list[Path], tmp: Path) -> int:
        """chunks store, float16 vectors, topic hashes and section codes, shard after shard."""
        store = StoreWriter(tmp)
        topics, sections = np.zeros(self.rows, dtype=np.int64), np.zeros(self.rows, dtype=np.uint8)
        codes = {name: i for i, name in enumerate(SECTION_NAMES)}
        dim, row = None, 0
        vec_f = None
        try:
            for folder in folders:
                vecs = np.load(folder / "vectors.npy", allow_pickle=False)
                if vec_f is None:
                    dim = vecs.shape[1]
                    vec_f = open(tmp / "vectors.f16.npy", "wb")
                    header = {"descr": "<f2", "fortran_order": False, "shape": (self.rows, dim)}
                    np.lib.format.write_array_header_1_0(vec_f, header)
                vec_f.write(np.ascontiguousarray(vecs, dtype="<f2").tobytes())
                with open(folder / "chunks.jsonl", "rb") as f:
                    for line in f:
                        chunk = Chunk.from_dict(json.loads(line))
                        store.add_line(line.rstrip(b"\n"))
                        topics[row] = _topic_hash(chunk_topic(chunk))
                        sections[row] = codes[chunk_section(chunk)]
                        row += 1
        finally:
            if vec_f is not None:
                vec_f.close()
        store.close()
        np.save(tmp / "topics.npy", topics, allow_pickle=False)
        np.save(tmp / "sections.npy", sections, allow_pickle=False)
        return int(dim)

    def _write_ivfpq(self, tmp: Path, dim: int, pq_m: int, seed: int) -> dict:
        import faiss

        n, path = self.rows, tmp / "vectors.f16.npy"
        require_rows(n)
        nlist = nlist_for(n)
        size = min(n, max(TRAIN_MIN, TRAIN_PER_LIST * nlist))
        rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
        index = train_ivfpq(_read_rows_at(path, dim, rows).astype(np.float32), n, pq_m)
        for start in range(0, n, ADD_ROWS):
            index.add(_read_rows(path, dim, start, min(n, start + ADD_ROWS)).astype(np.float32))
        faiss.write_index(index, str(tmp / "ivfpq.faiss"))
        return {"nlist": index.nlist, "pq_m": index.pq.M, "pq_bits": index.pq.nbits, "nprobe": nprobe_for(index.nlist),
                "rerank": RERANK, "vectors": "float16", "train_rows": int(size)}  # fmt: skip


def _read_rows(path: Path, dim: int, start: int, end: int) -> np.ndarray:
    return read_npy_slice(path, start * dim, end * dim).reshape(end - start, dim)


def _read_rows_at(path: Path, dim: int, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (ascending) of a (n, dim) float16 .npy, one seek each: the training sample."""
    out = np.empty((len(rows), dim), dtype=np.float16)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
        base = f.tell()
        for i, r in enumerate(rows):
            f.seek(base + int(r) * dim * 2)
            out[i] = np.frombuffer(f.read(dim * 2), dtype="<f2")
    return out


def require_rows(n: int) -> None:
    """faiss trains an IVF-PQ index's smallest quantisers (2 centroids) on 2 vectors at least."""
    if n < MIN_ROWS:
        raise ConfigError(
            f"ivfpq needs at least {MIN_ROWS} chunks and these documents give {n}; it is meant for large corpora: "
            "build with --index-type flat (or auto, which picks it)"
        )


def build_from_chunks(
    chunks, vectors, out: str | Path, *, model_id: str, shard_rows: int = SHARD_CHUNKS, manifest: dict | None = None
) -> Path:
    """An ivfpq index of chunks whose vectors are already known (tests, benchmarks, re-indexing).

    `chunks` and `vectors` may be iterables of shards (lists of Chunk, (n, dim) arrays) or two flat sequences.
    """
    out = Path(out)
    work = out.parent / f".{out.name}.build"
    shutil.rmtree(work, ignore_errors=True)
    build = ShardedBuild(work, {"from_chunks": True})
    if isinstance(chunks, list) and isinstance(vectors, np.ndarray):
        parts = ((chunks[i : i + shard_rows], vectors[i : i + shard_rows]) for i in range(0, len(chunks), shard_rows))
    else:
        parts = zip(chunks, vectors, strict=True)
    for part_chunks, part_vectors in parts:
        build.add_shard(list(part_chunks), part_vectors, documents_end=0)
    base = {"embedding_model": model_id, "normalization": "l2", "metric": "inner_product", "chunker": {},
            "corpus_sha256": "", "counts": {}, "medrag_version": medrag.__version__, "extra": {}}  # fmt: skip
    return build.finalize(out, {**base, **(manifest or {})})


def _topic_hash(topic: str) -> int:
    return int.from_bytes(hashlib.blake2b(topic.encode(), digest_size=8).digest(), "little", signed=True)


def _check_shard(folder: Path, files: dict[str, str]) -> str | None:
    """Why a recorded shard cannot be used (missing or corrupt file), or None."""
    for name, digest in files.items():
        if not (folder / name).is_file():
            return f"missing {name}"  # read as "shard ... is missing chunks.jsonl"
        if sha256_file(folder / name) != digest:
            return f"corrupt ({name}: sha256 mismatch)"
    return None


# --- the build ------------------------------------------------------------------------------
class _Progress:
    """A log line at most every `every` seconds: chunks, documents, rate and an ETA from input bytes."""

    def __init__(self, every: float):
        self.every, self.t0, self.last, self.f0 = every, time.monotonic(), 0.0, None

    def update(self, fraction: float, chunks: int, documents: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.f0 is None:
            self.f0 = fraction
        if not force and now - self.last < self.every:
            return
        self.last = now
        spent, gained = now - self.t0, fraction - self.f0
        eta = spent * (1 - fraction) / gained if gained > 0 else float("nan")
        log.info(
            "build: %.1f%% of the input, %d documents, %d chunks, %.0f s spent, ETA %s",
            100 * fraction, documents, chunks, spent, "?" if eta != eta else f"{eta / 60:.1f} min",
        )  # fmt: skip


def build_streaming(
    paths: Sequence[str | Path],
    out: str | Path,
    config: PipelineConfig,
    *,
    embedder=None,
    shard_chunks: int = SHARD_CHUNKS,
    strict: bool = False,
    log_every: float = 30.0,
) -> StreamReport:
    """Build (or resume building) the ivfpq index of `paths` at `out`."""

    out, t0 = Path(out), time.perf_counter()
    prepare_out(out)  # absent, empty or an index: never a folder of someone's files (issue 9)
    report = StreamReport(out=out)

    def skip(where: str, reason: str) -> None:
        if strict:
            raise DocumentError(f"{where}: {reason} (fix or remove it, or build without --strict to skip it)")
        report.skipped.append(SkippedFile(where, reason))

    embedder = embedder or build_embedder(config)
    chunker = {"max_tokens": config.chunk_tokens, "overlap": config.chunk_overlap, "title_in_embedding": True}
    fingerprint = {
        "inputs": [[str(Path(p).resolve()), _size(Path(p))] for p in paths],
        "model": embedder.model_id, "precision": getattr(embedder, "precision", "fp32"),
        "chunker": chunker, "shard_chunks": shard_chunks,
    }  # fmt: skip
    build = ShardedBuild(out.parent / f".{out.name}.build", fingerprint)
    report.resumed_shards = len(build.shards)
    skip_docs, digest, progress = build.documents_done, hashlib.sha256(), _Progress(log_every)
    pending: list[Chunk] = []
    sources: set[str] = set()
    docs_seen = 0
    if not skip_docs:
        progress.f0 = 0.0

    def flush(documents_end: int, fraction: float) -> None:
        vectors = np.zeros((len(pending), embedder.dim), dtype=np.float32)
        for start in range(0, len(pending), EMBED_STEP):
            part = pending[start : start + EMBED_STEP]
            vectors[start : start + len(part)] = embedder.embed([c.embed_text for c in part])
            progress.update(fraction, build.rows + start + len(part), documents_end)
        build.add_shard(pending, vectors, documents_end)
        progress.update(fraction, build.rows, documents_end, force=True)
        pending.clear()

    stream = iter_documents(paths, skip)
    while True:
        group = list(itertools.islice(stream, DOCS_PER_GROUP))
        if not group:
            break
        for doc, _ in group:
            digest.update(doc_line(doc))
            if len(sources) < 50:
                sources.add(doc.source)
        fresh = [(i, doc, f) for i, (doc, f) in enumerate(group, start=docs_seen) if i >= skip_docs]
        docs_seen += len(group)
        position = {doc.id: (i, f) for i, doc, f in fresh}  # a shard ends after a whole document
        chunks = chunk_documents(
            [doc for _, doc, _ in fresh], embedder.count_tokens, config.chunk_tokens, config.chunk_overlap,
            getattr(embedder, "count_tokens_batch", None),
        )  # fmt: skip
        for j, chunk in enumerate(chunks):
            pending.append(chunk)
            last_of_doc = j + 1 == len(chunks) or chunks[j + 1].doc_id != chunk.doc_id
            if last_of_doc and len(pending) >= shard_chunks:
                flush(position[chunk.doc_id][0] + 1, position[chunk.doc_id][1])
    if pending:
        flush(docs_seen, 1.0)
    if not docs_seen:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
        raise MedRAGError(f"No documents could be read from {', '.join(map(str, paths))}. {reasons}".strip())
    if build.rows < MIN_ROWS:
        shutil.rmtree(build.work, ignore_errors=True)  # a handful of vectors: nothing worth keeping to resume
        require_rows(build.rows)
    t1 = time.perf_counter()
    report.documents, report.chunks, report.shards = docs_seen, build.rows, len(build.shards)
    report.corpus_sha256 = digest.hexdigest()
    manifest = {
        "medrag_version": medrag.__version__,
        "embedding_model": embedder.model_id,
        "normalization": "l2",
        "metric": "inner_product",
        "chunker": chunker,
        "corpus_sha256": report.corpus_sha256,
        "counts": {"documents": docs_seen},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "extra": {"documents": docs_seen, "sources": sorted(sources), "embedding_precision": fingerprint["precision"]},
    }
    build.finalize(out, manifest)
    report.seconds = {"read+chunk+embed": t1 - t0, "merge": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    return report


def build_embedder(config: PipelineConfig):
    """The build's embedder: torch on CUDA when a GPU is present and the backend is auto, else as configured."""
    from medrag.embedder import TextEmbedder
    from medrag.hardware import cuda_available

    if config.embedding_backend == "auto" and cuda_available():
        return TextEmbedder.from_config(config.replace(embedding_backend="torch"))  # the torch runner picks CUDA
    return TextEmbedder.from_config(config)
