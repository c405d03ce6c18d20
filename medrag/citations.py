"""Citation check: every [n] must point to a shown source, and every sentence must be supported.

For each answer sentence we strip its [n] markers and score it against each source it cites:
the best match over that source's sentences of max(embedding cosine, share of the sentence's
content words found in the source sentence). A sentence with no citation, or whose best
support is under `threshold`, is flagged as unsupported. The best-matching source sentence is
returned as a character span of the chunk text so the UI can highlight it. A "For <topic>: "
introduction (medrag.prompts.INTRO) is not part of the claim, and the fixed "The sources describe
... but do not say ..." sentence is about the sources, so it is not checked.
Shortcut on purpose: support is similarity, not entailment; a paraphrase that flips a negation
can still score high. The extractive generator copies sentences verbatim, so for it support is exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medrag.chunking import split_sentences
from medrag.prompts import CANNOT_ANSWER_PHRASE, INTRO, says_what_is_missing
from medrag.types import Citation, Hit

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by can for from has have in is it its may of on or that the this to was were which with "
    "you your they their these those not no also more most some such than then there other".split()
)
SUPPORT_THRESHOLD = 0.6  # below this the cited source does not say what the sentence says


@dataclass
class CitationReport:
    text: str  # the answer with invalid markers removed
    citations: list[Citation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    removed: int = 0  # markers that pointed to no shown source
    checked: int = 0  # sentences that make a claim

    @property
    def support_rate(self) -> float | None:
        return (self.checked - len(self.unsupported)) / self.checked if self.checked else None


def strip_invalid_markers(text: str, n_sources: int) -> tuple[str, int]:
    """Drop [n] markers (or numbers inside [n, m]) that point to no source; count them."""
    removed = 0

    def fix(m: re.Match) -> str:
        nonlocal removed
        nums = [int(x) for x in m.group(1).split(",")]
        keep = [n for n in nums if 1 <= n <= n_sources]
        removed += len(nums) - len(keep)
        return "[" + ", ".join(map(str, keep)) + "]" if keep else ""

    cleaned = MARKER.sub(fix, text)
    if removed:
        cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned))
    return cleaned, removed


def answer_sentences(text: str) -> list[tuple[str, list[int]]]:
    """Sentences with the source numbers they cite; markers that open a sentence belong to the one before."""
    out: list[tuple[str, list[int]]] = []
    for start, end in split_sentences(text):
        s = text[start:end].strip()
        lead = re.match(r"^(\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])+", s)
        if lead and out:
            out[-1] = (out[-1][0] + " " + lead.group(0).strip(), out[-1][1] + cited_numbers(lead.group(0)))
            s = s[lead.end() :].strip()
        if s:
            out.append((s, cited_numbers(s)))
    return out


def cited_numbers(s: str, n_sources: int | None = None) -> list[int]:
    """The [n] numbers `s` cites, in order of first appearance ([1, 2] counts as 1 and 2); with `n_sources`,
    only those from 1 to n_sources."""
    numbers = dict.fromkeys(int(x) for m in MARKER.finditer(s) for x in m.group(1).split(","))
    return [n for n in numbers if n_sources is None or 1 <= n <= n_sources]


def _claim(sentence: str) -> str:
    """What a sentence claims: without its [n] markers and its "For <topic>: " introduction."""
    return INTRO.sub("", MARKER.sub("", sentence).strip(), count=1)


def word_overlap(claim: str, source: str) -> float:
    words = [w for w in _WORD.findall(claim.lower()) if w not in _STOP]
    if not words:
        return 0.0
    have = set(_WORD.findall(source.lower()))
    return sum(w in have for w in words) / len(words)


def check_citations(
    text: str, sources: Sequence[Hit], embedder=None, threshold: float = SUPPORT_THRESHOLD
) -> CitationReport:
    text, removed = strip_invalid_markers(text, len(sources))
    report = CitationReport(text=text, removed=removed)
    claims = [(s, nums) for s, nums in answer_sentences(text) if _is_claim(_claim(s))]
    report.checked = len(claims)
    if not claims:
        return report
    spans = {n: split_sentences(sources[n - 1].chunk.text) for _, nums in claims for n in nums}
    sims = _similarities([_claim(s) for s, _ in claims], sources, spans, embedder)
    for i, (sentence, nums) in enumerate(claims):
        best_support = 0.0
        for n in nums:
            chunk_text = sources[n - 1].chunk.text
            scores = [
                max(word_overlap(_claim(sentence), chunk_text[a:b]), sims.get((i, n, j), 0.0))
                for j, (a, b) in enumerate(spans[n])
            ] or [0.0]
            j = int(np.argmax(scores))
            support = float(scores[j])
            best_support = max(best_support, support)
            span = spans[n][j] if spans[n] else None
            report.citations.append(Citation(n, sentence, round(support, 4), support >= threshold, span))
        if best_support < threshold:
            report.unsupported.append(sentence)
    return report


def _is_claim(claim: str) -> bool:
    """Fixed sentences about the sources (cannot answer; what they do not say) claim nothing from them."""
    return len(claim.split()) >= 3 and CANNOT_ANSWER_PHRASE.rstrip(".") not in claim and not says_what_is_missing(claim)


def _similarities(claims, sources, spans, embedder) -> dict[tuple[int, int, int], float]:
    """Cosine of each claim with each sentence of each source it cites, in one embed call."""
    if embedder is None:
        return {}
    keys, texts = [], []
    for n, sp in spans.items():
        for j, (a, b) in enumerate(sp):
            keys.append((n, j))
            texts.append(sources[n - 1].chunk.text[a:b])
    vecs = getattr(embedder, "embed_cached", embedder.embed)([*claims, *texts])
    c, s = vecs[: len(claims)], vecs[len(claims) :]
    sim = c @ s.T if len(texts) else np.zeros((len(claims), 0))
    return {(i, n, j): float(sim[i, k]) for i in range(len(claims)) for k, (n, j) in enumerate(keys)}
