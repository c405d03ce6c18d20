"""Which index class opens an index: flat/hnsw/ivf (`VectorIndex`), ivfpq (`DiskIndex`) or Milvus.

`open_index` reads the folder's manifest and hands it to the class that wrote it; with
`config.index_engine == "milvus"` the index lives in a Milvus collection instead of a folder.
`choose_index_type` is index_builder.py's pick when no --index-type is given.

Shortcut on purpose: the corpus size is estimated from the input bytes (~940 bytes of JSON per
chunk on the shared corpus), so choosing costs no read of the documents.
"""

from __future__ import annotations

import json
from pathlib import Path

from medrag.config import PipelineConfig
from medrag.errors import ConfigError

LARGE_CORPUS_CHUNKS = 500_000  # flat from here: 770 MB of float32 in RAM and ~15 ms per query scan on 2 cores
BYTES_PER_CHUNK = 940  # the shared corpus: 25.3 MB of jsonl -> 26,834 chunks


def estimate_chunks(paths) -> int:
    total = 0
    for p in map(Path, paths):
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else []
        total += sum(f.stat().st_size for f in files)
    return total // BYTES_PER_CHUNK


def choose_index_type(paths) -> str:
    """flat for what fits comfortably in RAM, ivfpq (the streaming, on-disk type) past LARGE_CORPUS_CHUNKS."""
    return "ivfpq" if estimate_chunks(paths) >= LARGE_CORPUS_CHUNKS else "flat"


def index_type_of(path: str | Path) -> str | None:
    try:
        return json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8")).get("index_type")
    except (OSError, ValueError, AttributeError):
        return None


def open_index(path: str | Path, config: PipelineConfig, *, verify: bool | None = None):
    """The index at `path` (or in Milvus, when configured), checked against the configured model.

    verify: None = each class's default (VectorIndex hashes every load; DiskIndex checks sizes only);
    True = also hash a DiskIndex, once per folder and manifest (a marker file remembers it).
    """
    model, dim = config.embedding_model, config.embedding_dim
    if config.index_engine not in ("local", "milvus"):
        raise ConfigError(f"index_engine {config.index_engine!r} is not one of local, milvus: fix MEDRAG_INDEX_ENGINE")
    if config.index_engine == "milvus":
        from medrag.milvus_index import MilvusIndex

        return MilvusIndex.open(config.milvus_uri, config.milvus_collection, expect_model=model, expect_dim=dim)
    if index_type_of(path) == "ivfpq":
        from medrag.disk_index import DiskIndex, verify_files

        index = DiskIndex.load(path, expect_model=model, expect_dim=dim)
        marker = Path(path) / f".verified-{index.manifest_hash}"
        if verify and not marker.exists():
            verify_files(path, index.manifest)
            try:
                marker.touch()
            except OSError:
                pass  # a read-only folder: verified again next time
        return index
    from medrag.index import VectorIndex

    return VectorIndex.load(path, expect_model=model, expect_dim=dim)
