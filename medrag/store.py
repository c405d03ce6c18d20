"""`ChunkStore`: chunk texts on disk, read by row for the top hits only.

Two plain files per store:
    chunks.zlib          zlib-compressed blocks, each the JSON lines (Chunk.to_dict) of BLOCK rows
    chunks.offsets.npy   int64 byte offset of every block, plus the end of the last one

A row is one `os.pread` of its block, one `zlib.decompress` (~30 us here) and one `json.loads`;
nothing is memory-mapped, so reading never counts towards the server's RSS beyond a small LRU of
decoded blocks. `StoreWriter` appends rows in order with memory bounded by one block.

Shortcuts taken on purpose: zlib from the standard library rather than zstd (no new dependency;
~3x on this corpus); rows are immutable once written (an index is rebuilt, never edited).
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from medrag.errors import IndexLoadError
from medrag.types import Chunk

BLOCK = 16  # rows per compressed block: ~3x smaller than plain JSON, one block is ~15 KB to inflate
CACHE_BLOCKS = 256  # decoded blocks kept: a page of results and its neighbours, a few MB
DATA, OFFSETS = "chunks.zlib", "chunks.offsets.npy"


class StoreWriter:
    """Append chunks (or their dicts) in row order; `close()` writes the offsets file."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._f = open(self.folder / DATA, "wb")
        self._pending: list[bytes] = []
        self._offsets = [0]
        self.rows = 0

    def add(self, chunk: Chunk | dict) -> None:
        d = chunk.to_dict() if isinstance(chunk, Chunk) else chunk
        self.add_line(json.dumps(d, ensure_ascii=False).encode())

    def add_line(self, line: bytes) -> None:
        """One row given as its JSON line (no newline), as shards keep them."""
        self._pending.append(line)
        self.rows += 1
        if len(self._pending) == BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._f.write(zlib.compress(b"\n".join(self._pending), 6))
            self._offsets.append(self._f.tell())
            self._pending = []

    def close(self) -> int:
        self._flush()
        self._f.close()
        np.save(self.folder / OFFSETS, np.asarray(self._offsets, dtype=np.int64), allow_pickle=False)
        return self.rows


class ChunkStore(Sequence):
    """Read-only rows of a store folder; `len` and indexing like a list of `Chunk`."""

    def __init__(self, folder: str | Path, rows: int):
        self.folder, self.rows = Path(folder), rows
        fix = f"rebuild it with 'python index_builder.py --out {self.folder}'"
        try:
            self._offsets = np.load(self.folder / OFFSETS, allow_pickle=False)
            self._fd = os.open(self.folder / DATA, os.O_RDONLY)
        except (OSError, ValueError) as e:
            raise IndexLoadError(f"Chunk store at {self.folder} cannot be opened ({e}): {fix}") from None
        size = os.fstat(self._fd).st_size
        blocks = -(-rows // BLOCK)
        if len(self._offsets) != blocks + 1 or int(self._offsets[-1]) != size:
            self.close()
            raise IndexLoadError(
                f"Chunk store at {self.folder} is truncated or does not match the manifest "
                f"({len(self._offsets) - 1} blocks and {size} bytes for {rows} rows): {fix}"
            )
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(self.rows))]
        row = int(row)
        if row < 0:
            row += self.rows
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range for {self.rows} chunks")
        return Chunk.from_dict(json.loads(self._block(row // BLOCK)[row % BLOCK]))

    def __iter__(self) -> Iterator[Chunk]:
        for b in range(len(self._offsets) - 1):
            for line in self._read(b):
                yield Chunk.from_dict(json.loads(line))

    def _block(self, b: int) -> list[bytes]:
        with self._lock:
            if b in self._cache:
                self._cache.move_to_end(b)
                return self._cache[b]
        lines = self._read(b)
        with self._lock:
            self._cache[b] = lines
            while len(self._cache) > CACHE_BLOCKS:
                self._cache.popitem(last=False)
        return lines

    def _read(self, b: int) -> list[bytes]:
        start, end = int(self._offsets[b]), int(self._offsets[b + 1])
        try:
            return zlib.decompress(os.pread(self._fd, end - start, start)).split(b"\n")
        except zlib.error as e:
            raise IndexLoadError(
                f"Chunk store at {self.folder} is corrupt at block {b} ({e}): "
                f"rebuild it with 'python index_builder.py --out {self.folder}'"
            ) from None

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    __del__ = close
