"""ExtractiveGenerator: answers by quoting the source sentences closest to the question, each cited.

The CPU fallback (laptop demo, CI): no language model, so nothing can be made up. Each source is
split into sentences; the question and every candidate sentence are embedded in one call and
scored by cosine; the best few are kept (the top-ranked source alone when it supplies enough,
else all sources with a per-source cap; near-duplicates and fragments skipped),
put back in source-then-position order, and each is followed by its citation `[n]`. Every
sentence is a verbatim substring of the source it cites.

Shortcuts on purpose: sentences come from the chunker's splitter, and there is no attempt to
rephrase, so answers read like a list of quotes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np

from medrag.chunking import split_sentences
from medrag.generator import Generator
from medrag.prompts import CANNOT_ANSWER_PHRASE
from medrag.types import Chunk

_BULLET = re.compile(r"(?:[-*\u2022]|\d+[.)])\s+")  # a list marker is not part of the quoted sentence


class ExtractiveGenerator(Generator):
    name = "extractive"

    def __init__(
        self,
        embedder,
        max_sentences: int = 4,  # a short answer a reader checks against the sources at a glance
        min_similarity: float = 0.3,  # MiniLM cosine below ~0.3 is topical noise, not an answer
        per_source: int = 2,  # one long source must not crowd out the others
        duplicate_similarity: float = 0.95,  # overlapping chunks repeat sentences; say each once
        min_words: int = 4,  # shorter pieces are headings or fragments, not statements
        focus: bool = True,  # answer from the top-ranked source alone when it has enough to say
        focus_min: int = 1,  # sentences the top source must supply, else all sources compete
    ):
        self.embedder = embedder
        self.max_sentences, self.min_similarity, self.per_source = max_sentences, min_similarity, per_source
        self.duplicate_similarity, self.min_words = duplicate_similarity, min_words
        self.focus, self.focus_min = focus, focus_min

    def select(self, question: str, sources: Sequence[Chunk]) -> list[tuple[int, str, float]]:
        """The chosen sentences as (source number, sentence, cosine), in answer order.

        With `focus`, the top-ranked source is tried alone first: one page that answers the
        question makes a cleaner, more precisely cited answer than quotes from five (and embeds
        a fifth of the sentences, so the first words stream sooner).
        """
        if self.focus and len(sources) > 1:
            chosen = self._select(question, sources[:1], per_source=self.max_sentences)
            if len(chosen) >= self.focus_min:
                return chosen
        return self._select(question, sources, per_source=self.per_source)

    def _select(self, question: str, sources: Sequence[Chunk], per_source: int) -> list[tuple[int, str, float]]:
        candidates = []  # (source index, position, sentence)
        for i, source in enumerate(sources):
            text = getattr(source, "chunk", source).text  # a Hit works too
            for pos, (a, b) in enumerate(split_sentences(text)):
                bullet = _BULLET.match(text, a, b)
                sentence = text[bullet.end() if bullet else a : b]
                if len(sentence.split()) >= self.min_words:
                    candidates.append((i, pos, sentence))
        if not candidates:
            return []
        vectors = _normalise(
            np.asarray(
                getattr(self.embedder, "embed_cached", self.embedder.embed)([question, *(c[2] for c in candidates)]),
                dtype=np.float32,
            )
        )
        q, sents = vectors[0], vectors[1:]
        scores = sents @ q
        chosen: list[int] = []
        taken: dict[int, int] = {}
        for k in np.argsort(-scores, kind="stable"):
            if len(chosen) == self.max_sentences or scores[k] < self.min_similarity:
                break
            i = candidates[k][0]
            if taken.get(i, 0) >= per_source:
                continue
            if chosen and float(np.max(sents[chosen] @ sents[k])) > self.duplicate_similarity:
                continue
            chosen.append(int(k))
            taken[i] = taken.get(i, 0) + 1
        chosen.sort(key=lambda k: candidates[k][:2])
        return [(candidates[k][0] + 1, candidates[k][2], float(scores[k])) for k in chosen]

    def stream(
        self, question, sources, history=None, *, max_new_tokens=None, temperature=None, info=None
    ) -> Iterator[str]:
        """One delta per cited sentence; history, max_new_tokens and temperature do not apply here."""
        chosen = self.select(question, sources) if sources else []
        if not chosen:
            yield CANNOT_ANSWER_PHRASE
            return
        for k, (number, sentence, _) in enumerate(chosen):
            yield f"{' ' if k else ''}{sentence} [{number}]"

    def versions(self) -> dict[str, str]:
        return {"generator": "extractive"}


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)
