"""The small values every module passes around: Document, Chunk, Hit, Citation, Answer.

They are plain dataclasses with `to_dict()` for JSON (the index's chunks file, the API).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    id: str  # stable and unique within a corpus; chunks cite it
    title: str
    text: str
    url: str = ""
    source: str = ""  # where it came from: a collection name or the file path
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Chunk:
    id: str  # f"{doc_id}#{position}"
    doc_id: str
    title: str
    text: str
    url: str = ""
    source: str = ""
    position: int = 0  # 0-based index of this chunk within its document
    start: int = 0  # character offsets of `text` within the document's text
    end: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        """What the embedder and BM25 see: the title says what the text is about."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class Hit:
    chunk: Chunk
    score: float  # the score the ranking used (cosine, BM25, or RRF when fused)
    rank: int = 0  # 1-based rank in the final list
    dense_score: float | None = None  # cosine similarity, when the dense retriever saw it
    bm25_score: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None
    retrievers: tuple[str, ...] = ()  # which retrievers found it: ("dense", "bm25")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["retrievers"] = list(self.retrievers)
        return d


@dataclass
class Citation:
    number: int  # the [n] in the answer text, 1-based into Answer.sources
    sentence: str  # the answer sentence that carries it
    support: float  # how well the cited source supports the sentence (0..1)
    supported: bool
    span: tuple[int, int] | None = None  # characters of the source chunk's text that support it


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Hit] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    kind: str = "answer"  # answer | urgent | declined | invalid
    declined: bool = False
    # red_flag (kind urgent: text is the urgent message for the help needed, medrag.prompts.URGENT_MESSAGES)
    # | weak_evidence | model_declined (kind declined) | bad_input (kind invalid: text says what to fix)
    # | not_english (kind invalid: text is medrag.prompts.NOT_ENGLISH_MESSAGE, which names the emergency numbers)
    decline_reason: str | None = None
    unsupported: list[str] = field(default_factory=list)  # sentences whose cited source does not support them
    support_rate: float | None = None  # share of claim sentences supported by what they cite
    removed_citations: int = 0  # [n] markers that pointed to no shown source and were removed
    disclaimer: str = ""
    generator: str = ""  # hf | extractive | openai | none
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: retrieval, first_token, total
    warnings: list[str] = field(default_factory=list)

    @property
    def cited_numbers(self) -> list[int]:
        return sorted({c.number for c in self.citations})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sources"] = [h.to_dict() for h in self.sources]
        return d
