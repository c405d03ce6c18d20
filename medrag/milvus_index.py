"""`MilvusIndex`: the index in a Milvus collection, for corpora past one machine.

Same search interface as `VectorIndex` (search_dense, search_bm25, vectors, chunks by row,
manifest, unknown_words), so the Retriever and the pipeline run on it unchanged. The client is
pymilvus' `MilvusClient`: a local file path (`data/milvus.db`) runs the embedded milvus-lite (no
server, what the tests use); `http://HOST:19530` or a Zilliz Cloud URI reaches a Milvus cluster,
which shards and replicates the same collection across machines.

One collection per index: `row` (int64 primary key = the row number), `vector` (float, IP),
`terms` (our own BM25 analysis: `medrag.index.analyze` joined by spaces, so stopwords and stems
match the local index), `sparse` (Milvus' BM25 function over `terms`, k1=1.5, b=0.75 as bm25s),
`chunk` (the Chunk as JSON), `topic` / `section` (the section prior's labels). The manifest is
the one row of a `<name>_manifest` collection.

Shortcuts taken on purpose: Milvus' BM25 is divided by (k1 + 1) to give bm25s' Lucene scores;
labels of rows come back with each search and are remembered (an LRU) rather than fetched for all
rows; the dense index is HNSW (FLAT below 100k rows), Milvus' own choice of search parameters.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from medrag.errors import ConfigError, IndexLoadError, missing_dependency
from medrag.index import _QUESTION_WORDS, _STOPWORDS, _TOKEN, FORMAT, analyze
from medrag.sections import chunk_section, chunk_topic
from medrag.types import Chunk

K1, B = 1.5, 0.75  # bm25s' defaults, as the local index
BATCH = 2000  # rows per insert call
LABELS = 100_000  # row labels remembered for the section prior
MAX_TEXT = 65_535  # Milvus' VARCHAR limit (bytes)
PIP = "pymilvus==3.0.2 milvus-lite==3.2.2"


def client(uri: str):
    try:
        from pymilvus import MilvusClient
    except ModuleNotFoundError:
        raise missing_dependency("pymilvus", "The Milvus index engine", PIP) from None
    try:
        return MilvusClient(uri)
    except Exception as e:
        raise IndexLoadError(
            f"Cannot reach Milvus at {uri} ({type(e).__name__}: {e}): check MEDRAG_MILVUS_URI"
        ) from None


class _Labels:
    """Row -> topic or section, filled by the rows each search returns (promote only asks for those)."""

    def __init__(self, index: MilvusIndex, field: str):
        self.index, self.field = index, field

    def __getitem__(self, row: int):
        if row not in self.index._labels:
            self.index._fetch([row])
        return self.index._labels[row][self.field]


class _Chunks(Sequence):
    def __init__(self, index: MilvusIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row) + (len(self) if int(row) < 0 else 0)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} chunks")
        return self.index._fetch([row])[row]


class _RowVectors:
    """index.vectors(rows) as something sliceable, for `create`."""

    def __init__(self, index):
        self.index = index

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.index.vectors(np.arange(*rows.indices(len(self.index))))


class MilvusIndex:
    def __init__(self, milvus, collection: str, manifest: dict):
        self.client, self.collection, self.manifest = milvus, collection, manifest
        self.chunks = _Chunks(self)
        self._labels: OrderedDict[int, dict] = OrderedDict()

    def __len__(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    @property
    def manifest_hash(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:12]

    def row_labels(self):
        return _Labels(self, "topic"), _Labels(self, "section")

    # --- write -----------------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, collection: str, chunks, vectors: np.ndarray, manifest: dict) -> MilvusIndex:
        """Upload chunks and their vectors as a new collection (an existing one of that name is replaced)."""
        from pymilvus import DataType, Function, FunctionType

        milvus, dim = client(uri), int(np.asarray(vectors[:1]).shape[1])
        for name in (collection, f"{collection}_manifest"):
            if milvus.has_collection(name):
                milvus.drop_collection(name)
        schema = milvus.create_schema(auto_id=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("terms", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("chunk", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("topic", DataType.VARCHAR, max_length=1024)
        schema.add_field("section", DataType.VARCHAR, max_length=64)
        schema.add_function(
            Function(
                name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"], output_field_names=["sparse"]
            )
        )
        params = milvus.prepare_index_params()
        params.add_index("vector", index_type="FLAT" if len(chunks) < 100_000 else "HNSW", metric_type="IP")
        params.add_index(
            "sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": K1, "bm25_b": B}
        )
        milvus.create_collection(collection, schema=schema, index_params=params)
        n = len(chunks)
        for start in range(0, n, BATCH):  # slices: a memory map or an on-disk store is read a batch at a time
            part, vecs = chunks[start : start + BATCH], np.asarray(vectors[start : start + BATCH], dtype=np.float32)
            milvus.insert(collection, [
                {"row": start + j, "vector": v.tolist(), "terms": " ".join(analyze(c.embed_text))[: MAX_TEXT // 4],
                 "chunk": json.dumps(c.to_dict(), ensure_ascii=False)[: MAX_TEXT // 4],
                 "topic": chunk_topic(c)[:256], "section": chunk_section(c) or ""}
                for j, (c, v) in enumerate(zip(part, vecs, strict=True))
            ])  # fmt: skip
        manifest = {**manifest, "format": FORMAT, "dim": dim, "index_type": "milvus", "files": {}}
        manifest["counts"] = {**manifest.get("counts", {}), "chunks": len(chunks)}
        manifest["index_params"] = {"uri_kind": "lite" if "://" not in uri else "server", "collection": collection}
        ms = milvus.create_schema(auto_id=False)
        ms.add_field("id", DataType.INT64, is_primary=True)
        ms.add_field("manifest", DataType.VARCHAR, max_length=MAX_TEXT)
        ms.add_field("dummy", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        mp = milvus.prepare_index_params()
        mp.add_index("dummy", index_type="FLAT", metric_type="L2")
        milvus.create_collection(f"{collection}_manifest", schema=ms, index_params=mp)
        milvus.insert(f"{collection}_manifest", [{"id": 0, "manifest": json.dumps(manifest), "dummy": [0.0, 0.0]}])
        for name in (collection, f"{collection}_manifest"):
            milvus.load_collection(name)
        return cls(milvus, collection, manifest)

    @classmethod
    def upload(cls, folder, uri: str, collection: str, config) -> MilvusIndex:
        """Copy a built index folder (any local type) into a Milvus collection, a batch of rows at a time."""
        from medrag.indexes import open_index

        local = open_index(folder, config.replace(index_engine="local"))
        vectors = _RowVectors(local)
        return cls.create(
            uri, collection, local.chunks, vectors, {k: v for k, v in local.manifest.items() if k != "files"}
        )

    # --- read ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, uri: str, collection: str, *, expect_model: str | None = None, expect_dim: int | None = None
    ) -> MilvusIndex:
        from medrag.embedder import same_model

        if not collection:
            raise ConfigError("MEDRAG_MILVUS_COLLECTION is empty: name the collection the index was uploaded to")
        milvus = client(uri)
        fix = f"upload one with 'python index_builder.py --engine milvus --milvus-uri {uri} --collection {collection}'"
        if not milvus.has_collection(collection) or not milvus.has_collection(f"{collection}_manifest"):
            raise IndexLoadError(f"No MedRAG index in Milvus collection {collection!r} at {uri}: {fix}")
        for name in (collection, f"{collection}_manifest"):
            milvus.load_collection(name)
        rows = milvus.query(f"{collection}_manifest", ids=[0], output_fields=["manifest"])
        manifest = json.loads(rows[0]["manifest"]) if rows else {}
        model, dim = manifest.get("embedding_model", "?"), manifest.get("dim")
        if (expect_model and not same_model(model, expect_model)) or (expect_dim and dim != expect_dim):
            raise IndexLoadError(
                f"Milvus collection {collection!r} was built with model {model} (dim {dim}), the configuration "
                f"uses {expect_model} (dim {expect_dim}): {fix}"
            )
        return cls(milvus, collection, manifest)

    def _fetch(self, rows: list[int]) -> dict[int, Chunk]:
        got = self.client.query(
            self.collection, ids=[int(r) for r in rows], output_fields=["chunk", "topic", "section"]
        )
        out = {}
        for g in got:
            out[int(g["row"])] = Chunk.from_dict(json.loads(g["chunk"]))
            self._remember(g)
        return out

    def _remember(self, entity: dict) -> None:
        row = int(entity["row"])
        self._labels[row] = {"topic": entity["topic"], "section": entity["section"] or None}
        self._labels.move_to_end(row)
        while len(self._labels) > LABELS:
            self._labels.popitem(last=False)

    def _search(self, data, field: str, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(data), k), -np.inf if field == "vector" else 0.0, dtype=np.float32)
        ids = np.full((len(data), k), -1, dtype=np.int64)
        if not data:
            return scores, ids
        result = self.client.search(
            self.collection, data=data, anns_field=field, limit=k, search_params={"metric_type": metric},
            output_fields=["row", "topic", "section"],
        )  # fmt: skip
        for i, hits in enumerate(result):
            hits = sorted(hits, key=lambda h: (-abs(h["distance"]) if field == "sparse" else -h["distance"], h["row"]))
            for j, h in enumerate(hits[:k]):
                ids[i, j] = int(h["row"])
                # milvus-lite reports BM25 negated; a server positive. Lucene's scale: / (k1 + 1)
                scores[i, j] = abs(h["distance"]) / (K1 + 1) if field == "sparse" else h["distance"]
                self._remember({**h.get("entity", {}), "row": h["row"]})
        return scores, ids

    def search_dense(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        return self._search([v.tolist() for v in q], "vector", "IP", k)

    def search_bm25(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.zeros((len(queries), k), dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        asked = [(i, " ".join(analyze(q))) for i, q in enumerate(queries)]
        asked = [(i, t) for i, t in asked if t]  # nothing left after stopwords: no hits
        if asked:
            s, r = self._search([t for _, t in asked], "sparse", "BM25", k)
            scores[[i for i, _ in asked]], ids[[i for i, _ in asked]] = s, r
        return scores, ids

    def vectors(self, ids) -> np.ndarray:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)]
        if not ids:
            return np.zeros((0, self.manifest["dim"]), dtype=np.float32)
        got = {
            int(g["row"]): g["vector"] for g in self.client.query(self.collection, ids=ids, output_fields=["vector"])
        }
        return np.asarray([got[i] for i in ids], dtype=np.float32)

    def unknown_words(self, text: str, common=None) -> list[str]:
        words = dict.fromkeys(w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS | _QUESTION_WORDS)
        out = []
        for w in words:
            terms = analyze(w)
            if not terms or (common and common(w)):
                continue
            if (self._search([terms[0]], "sparse", "BM25", 1)[1] < 0).all():
                out.append(w)
        return out
