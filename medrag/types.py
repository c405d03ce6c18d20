"""The small values every module passes around: Document, Chunk, Hit, Citation, AnswerKind, Answer.

They are plain dataclasses with `to_dict()` for JSON (the index's chunks file, the API).
"""

from __future__ import annotations

import dataclasses
import enum
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
    origin: str = "index"  # index | upload: a passage of the visitor's own file (medrag.session_docs)


@dataclass
class Citation:
    number: int  # the [n] in the answer text, 1-based into Answer.sources
    sentence: str  # the answer sentence that carries it
    support: float  # how well the cited source supports the sentence (0..1)
    supported: bool
    span: tuple[int, int] | None = None  # characters of the source chunk's text that support it


class AnswerKind(enum.StrEnum):
    """What an Answer is; the values are what JSON output and the evaluation read."""

    ANSWER = "answer"  # generated from the sources, with citations
    DECLINED = "declined"  # not enough evidence, or the model declined
    URGENT = "urgent"  # a red flag: the fixed urgent-care message, nothing generated
    INVALID = "invalid"  # an unusable question: the text says what to fix


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Hit] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    kind: AnswerKind = AnswerKind.ANSWER
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
        """The answer as JSON values: what the `/ask` endpoint returns (its keys are the API's contract)."""
        return {
            "question": self.question,
            "answer": self.text,
            "kind": str(self.kind),
            "declined": self.declined,
            "decline_reason": self.decline_reason,
            "sources": [
                {
                    "rank": h.rank or i,
                    "title": h.chunk.title,
                    "url": h.chunk.url,
                    "doc_id": h.chunk.doc_id,
                    "chunk_id": h.chunk.id,
                    "text": h.chunk.text,
                    "dense_score": h.dense_score,
                    "bm25_score": h.bm25_score,
                    "score": h.score,
                    "retrievers": list(h.retrievers),
                }
                for i, h in enumerate(self.sources, 1)
            ],
            "citations": [
                {
                    "number": c.number,
                    "sentence": c.sentence,
                    "support": c.support,
                    "supported": c.supported,
                    "span": list(c.span) if c.span else None,
                }
                for c in self.citations
            ],
            "unsupported": list(self.unsupported),
            "support_rate": self.support_rate,
            "generator": self.generator,
            "versions": dict(self.versions),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "disclaimer": self.disclaimer,
        }
