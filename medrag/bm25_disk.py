"""BM25 for corpora that do not fit in RAM: built shard by shard, searched through memory maps.

Scores are bm25s' Lucene variant with its defaults (k1=1.5, b=0.75) over `medrag.index.analyze`
terms, so on the same chunks `DiskBM25.search` returns what `VectorIndex.search_bm25` returns.

Build (`BM25Builder`): each shard's postings (term id, row, tf) go to plain .npy files sorted by
term; only the vocabulary (term -> id, in order of first use), the document frequencies and one
int32 length per row stay in RAM. `finish` merges the shards by term range, a bounded number of
postings at a time read with plain file reads (no memory map, so the build's RSS stays flat),
and writes a CSC layout with the final scores precomputed:
    bm25/indptr.npy     int64 (V+1)    postings of term t are [indptr[t], indptr[t+1])
    bm25/rows.npy       int32 (nnz)    rows, ascending within a term
    bm25/scores.npy     float32 (nnz)  idf(t) * tf / (tf + k1 * (1 - b + b * len / avglen))
    bm25/max_score.npy  float32 (V)    the best score of each term, for pruning
    bm25/vocab.bin + vocab_offsets.npy + vocab_ids.npy   terms sorted (UTF-8), for binary search
    bm25/params.json    counts, k1, b, avglen

Search (MaxScore, Turtle & Flood 1995, in numpy): the rarest terms' postings are gathered in full
(up to GATHER postings); a row with none of them scores at most the sum of the other terms' best
scores, so when the k-th candidate beats that bound the top-k is exact after looking the
candidates up in the common terms' row-sorted postings (binary search). Otherwise every posting is
scored (the exhaustive path, exact too). Both paths give the same ranking.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrag.errors import IndexLoadError

K1, B = 1.5, 0.75  # bm25s' defaults, which the in-memory index uses
GATHER = 400_000  # postings read in full per query before the bound is checked: ~3 MB, a few ms
MERGE_POSTINGS = 16_000_000  # postings per merge pass: ~200 MB of buffers, whatever the corpus size
FILES = ("indptr.npy", "rows.npy", "scores.npy", "max_score.npy", "vocab.bin", "vocab_offsets.npy", "vocab_ids.npy")


class BM25Builder:
    """Feed it one shard of analysed chunks at a time; `finish` writes the bm25/ folder."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.terms: list[str] = []  # id -> term
        self.df = np.zeros(0, dtype=np.int64)
        self.lengths: list[np.ndarray] = []  # per shard: analysed length of each row
        self.rows = 0

    def add_shard(self, folder: Path, token_lists: list[list[str]]) -> list[str]:
        """Write `folder`/postings.*.npy for these rows (numbered from `self.rows`); returns the new terms."""
        first_new, ids, owner = len(self.terms), [], []
        vocab, terms = self.vocab, self.terms
        for tokens in token_lists:
            for t in tokens:
                i = vocab.get(t)
                if i is None:
                    i = vocab[t] = len(terms)
                    terms.append(t)
                ids.append(i)
            owner.append(len(tokens))
        new = terms[first_new:]
        lengths = np.asarray(owner, dtype=np.int32)
        self._write(folder, np.asarray(ids, dtype=np.int64), lengths)
        return new

    def _write(self, folder: Path, ids: np.ndarray, lengths: np.ndarray) -> None:
        n = len(lengths)
        local = np.repeat(np.arange(n, dtype=np.int64), lengths)
        keys, tf = np.unique(ids * n + local, return_counts=True) if n else (np.zeros(0, np.int64), np.zeros(0))
        term, row = keys // max(n, 1), keys % max(n, 1) + self.rows
        uniq, starts = np.unique(term, return_index=True)
        folder.mkdir(parents=True, exist_ok=True)
        save = lambda name, a: np.save(folder / name, a, allow_pickle=False)  # noqa: E731
        save("postings.terms.npy", uniq.astype(np.int32))
        save("postings.starts.npy", np.append(starts, len(term)).astype(np.int64))
        save("postings.rows.npy", row.astype(np.int32))
        save("postings.tf.npy", np.minimum(tf, 65535).astype(np.uint16))
        save("lengths.npy", lengths)
        self._account(uniq, np.diff(np.append(starts, len(term))), lengths)

    def _account(self, uniq: np.ndarray, counts: np.ndarray, lengths: np.ndarray) -> None:
        if len(self.terms) > len(self.df):
            self.df = np.concatenate([self.df, np.zeros(len(self.terms) - len(self.df), dtype=np.int64)])
        self.df[uniq] += counts
        self.lengths.append(lengths)
        self.rows += len(lengths)

    def replay(self, folder: Path, new_terms: list[str]) -> None:
        """Take back a shard written before a restart: its new terms and its counts, no re-analysis."""
        for t in new_terms:
            self.vocab[t] = len(self.terms)
            self.terms.append(t)
        uniq = np.load(folder / "postings.terms.npy", allow_pickle=False).astype(np.int64)
        starts = np.load(folder / "postings.starts.npy", allow_pickle=False)
        self._account(uniq, np.diff(starts), np.load(folder / "lengths.npy", allow_pickle=False))

    def finish(self, shards: Sequence[Path], out: Path) -> dict:
        """Merge the shards' postings into `out` (the bm25/ folder); returns the params written."""
        out.mkdir(parents=True, exist_ok=True)
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        n, vocab_size = len(lengths), len(self.terms)
        avglen = float(lengths.mean()) if n else 0.0
        idf = np.log1p((n - self.df + 0.5) / (self.df + 0.5)).astype(np.float32)  # bm25s: float32 idf
        norm = (K1 * (1 - B + B * lengths / avglen)).astype(np.float32) if n else np.zeros(0, np.float32)
        indptr = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(self.df, out=indptr[1:])
        np.save(out / "indptr.npy", indptr, allow_pickle=False)
        max_score = np.zeros(vocab_size, dtype=np.float32)
        index = [_ShardPostings(s) for s in shards]
        with (
            _NpyAppender(out / "rows.npy", np.int32, int(indptr[-1])) as rows_f,
            _NpyAppender(out / "scores.npy", np.float32, int(indptr[-1])) as scores_f,
        ):
            lo = 0
            while lo < vocab_size:  # term ranges of about MERGE_POSTINGS postings
                hi = int(np.searchsorted(indptr, indptr[lo] + MERGE_POSTINGS, side="right")) - 1
                hi = min(max(hi, lo + 1), vocab_size)
                base, size = int(indptr[lo]), int(indptr[hi] - indptr[lo])
                rows, tf = np.empty(size, dtype=np.int32), np.empty(size, dtype=np.float32)
                terms = np.empty(size, dtype=np.int64)
                cursor = indptr[lo:hi] - base  # where each term's next postings go
                for shard in index:  # shards in row order: each term's rows stay ascending
                    t, r, f = shard.read(lo, hi)
                    if not len(t):
                        continue
                    first = np.searchsorted(t, t, side="left")  # first posting of the same term in this slice
                    pos = cursor[t - lo] + (np.arange(len(t)) - first)
                    rows[pos], tf[pos], terms[pos] = r, f, t
                    uniq, counts = np.unique(t, return_counts=True)
                    cursor[uniq - lo] += counts
                scores = (idf[terms] * (tf / (tf + norm[rows]))).astype(np.float32)
                rows_f.write(rows)
                scores_f.write(scores)
                if size:
                    nonempty = self.df[lo:hi] > 0
                    starts = (indptr[lo:hi] - base)[nonempty]
                    max_score[lo:hi][nonempty] = np.maximum.reduceat(scores, starts)
                lo = hi
        np.save(out / "max_score.npy", max_score, allow_pickle=False)
        _write_vocab(out, self.terms)
        params = {"method": "lucene", "k1": K1, "b": B, "rows": n, "vocab": vocab_size, "postings": int(indptr[-1])}
        params["avglen"] = avglen
        (out / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        return params


class _ShardPostings:
    """One shard's postings files, read by term range with plain reads (nothing stays mapped)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.terms = np.load(folder / "postings.terms.npy", allow_pickle=False).astype(np.int64)
        self.starts = np.load(folder / "postings.starts.npy", allow_pickle=False)

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = np.searchsorted(self.terms, [lo, hi])
        start, end = int(self.starts[a]), int(self.starts[b])
        term = np.repeat(self.terms[a:b], np.diff(self.starts[a : b + 1]))
        rows = _read_npy_slice(self.folder / "postings.rows.npy", start, end)
        tf = _read_npy_slice(self.folder / "postings.tf.npy", start, end).astype(np.float32)
        return term, rows, tf


def _read_npy_slice(path: Path, start: int, end: int) -> np.ndarray:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read(f)
        f.seek(f.tell() + start * dtype.itemsize)
        return np.fromfile(f, dtype=dtype, count=end - start)


class _NpyAppender:
    """A 1-d .npy file of known length written front to back in pieces."""

    def __init__(self, path: Path, dtype, length: int):
        self.path, self.length, self.written = path, length, 0
        self.f = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(self.f, header)

    def write(self, a: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(a).tobytes())
        self.written += len(a)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        if exc[0] is None and self.written != self.length:
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.length} values")


def _write_vocab(out: Path, terms: list[str]) -> None:
    order = sorted(range(len(terms)), key=terms.__getitem__)
    blob = [terms[i].encode() for i in order]
    offsets = np.zeros(len(blob) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blob], out=offsets[1:])
    (out / "vocab.bin").write_bytes(b"".join(blob))
    np.save(out / "vocab_offsets.npy", offsets, allow_pickle=False)
    np.save(out / "vocab_ids.npy", np.asarray(order, dtype=np.int32), allow_pickle=False)


class _SortedTerms(Sequence):
    """The sorted vocabulary as a read-only sequence of str over memory maps (for bisect)."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray):
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return bytes(self.blob[self.offsets[i] : self.offsets[i + 1]]).decode()


class DiskBM25:
    """Search a bm25/ folder written by `BM25Builder.finish`; arrays stay on disk (memory maps)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        fix = "rebuild the index with 'python index_builder.py'"
        try:
            self.params = json.loads((self.folder / "params.json").read_text())
            load = lambda name: np.load(self.folder / name, mmap_mode="r", allow_pickle=False)  # noqa: E731
            self.indptr, self.rows, self.scores = load("indptr.npy"), load("rows.npy"), load("scores.npy")
            self.max_score, ids = load("max_score.npy"), load("vocab_ids.npy")
            size = (self.folder / "vocab.bin").stat().st_size
            blob = np.memmap(self.folder / "vocab.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
            self._sorted, self._ids = _SortedTerms(blob, load("vocab_offsets.npy")), ids
        except (OSError, ValueError, KeyError) as e:
            raise IndexLoadError(f"BM25 files in {self.folder} cannot be read ({e}): {fix}") from None
        self.n = int(self.params["rows"])
        nnz = int(self.indptr[-1]) if len(self.indptr) else 0
        if len(self.rows) != nnz or len(self.scores) != nnz or len(self.indptr) != len(self._sorted) + 1:
            raise IndexLoadError(f"BM25 files in {self.folder} do not match each other (truncated?): {fix}")

    def term_id(self, term: str) -> int | None:
        i = bisect.bisect_left(self._sorted, term)
        return int(self._ids[i]) if i < len(self._sorted) and self._sorted[i] == term else None

    def __contains__(self, term: str) -> bool:
        return self.term_id(term) is not None

    def search(self, query_terms: list[list[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query (terms already analysed; repeats count): (scores (n, k), rows (n, k)), -1 pads."""
        scores = np.zeros((len(query_terms), k), dtype=np.float32)
        ids = np.full((len(query_terms), k), -1, dtype=np.int64)
        for i, terms in enumerate(query_terms):
            found = [t for t in (self.term_id(w) for w in terms) if t is not None]
            if found:
                top, s = self._top(found, k)
                scores[i, : len(top)], ids[i, : len(top)] = s, top
        return scores, ids

    def _postings(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[t]), int(self.indptr[t + 1])
        return self.rows[a:b], self.scores[a:b]

    def _top(self, terms: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        df = {t: int(self.indptr[t + 1] - self.indptr[t]) for t in set(terms)}
        order = sorted(terms, key=lambda t: (df[t], t))
        gathered, budget = [], 0
        for t in order:  # rarest first, at least one term
            if gathered and budget + df[t] > GATHER:
                break
            gathered.append(t)
            budget += df[t]
        rest = order[len(gathered) :]
        rows, total = _accumulate([self._postings(t) for t in gathered], self.n)
        if rest:
            bound = float(sum(float(self.max_score[t]) for t in rest)) * (1 + 1e-6)
            if len(rows) < k:
                return self._exhaustive(terms, k)
            floor = _kth(total, k)  # final scores only grow: a candidate below floor - bound cannot make it
            keep = total + bound >= floor
            rows, total = rows[keep], total[keep].copy()
            for t in rest:
                p_rows, p_scores = self._postings(t)
                at = np.searchsorted(p_rows, rows)
                at_c = np.minimum(at, len(p_rows) - 1)
                hit = (at < len(p_rows)) & (np.asarray(p_rows[at_c]) == rows)
                total[hit] += np.asarray(p_scores[at_c[hit]], dtype=np.float64)
            if _kth(total, k) <= bound:  # a row holding only common terms might still rank: score them all
                return self._exhaustive(terms, k)
        return _best(rows, total, k)

    def _exhaustive(self, terms: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        rows, total = _accumulate([self._postings(t) for t in terms], self.n)
        return _best(rows, total, k)


def _accumulate(postings: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that have any of the postings and their summed scores (float64, as np.bincount sums)."""
    rows = np.concatenate([np.asarray(r) for r, _ in postings]) if postings else np.zeros(0, np.int32)
    weights = np.concatenate([np.asarray(s) for _, s in postings]) if postings else np.zeros(0, np.float32)
    if len(rows) * 16 < n:  # few postings: sort them rather than touch an array of every row
        uniq, inverse = np.unique(rows, return_inverse=True)
        return uniq.astype(np.int64), np.bincount(inverse, weights=weights, minlength=len(uniq))
    total = np.bincount(rows, weights=weights, minlength=n)
    hit = np.flatnonzero(total > 0)
    return hit, total[hit]


def _kth(total: np.ndarray, k: int) -> float:
    return float(np.partition(total, len(total) - k)[len(total) - k]) if len(total) >= k else -math.inf


def _best(rows: np.ndarray, total: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keep = total > 0
    rows, total = rows[keep], total[keep]
    if len(rows) > k:
        part = np.argpartition(-total, k - 1)[:k]
        rows, total = rows[part], total[part]
    order = np.lexsort((rows, -total))  # score descending, then row: as the in-memory index
    return rows[order], total[order].astype(np.float32)
