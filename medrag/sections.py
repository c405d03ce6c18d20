"""Section-aware ranking: a question about symptoms should get the symptoms section of a page.

Health pages (MedlinePlus, NHS, NIH, GARD) are cut into sections: information, symptoms,
causes, exams and tests, treatment, outlook... Retrievers find the right page but often rank
its sections by how much they say about the condition, not by what the question asks. So:
1. `question_sections` reads the question's intent from plain wording ("how to diagnose" ->
   exams and tests; "who is at risk" -> susceptibility; a bare "what is X?" -> information).
2. `chunk_section` reads a chunk's section from `metadata["section"]` / `["qtype"]` or from a
   title ending in "(label)", and `chunk_topic` is the title without that label.
3. `promote` moves, within each topic, the chunks of the asked-for section up to the score of
   that topic's best chunk. A topic never rises above another topic: the prior only reorders
   sections of one page, so documents without sections (abstracts, notes) are untouched.
Shortcut on purpose: English regular expressions, no classifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from medrag.types import Chunk

# section name: (question wording that asks for it, section labels that provide it)
SECTIONS: dict[str, tuple[str, str]] = {
    "symptoms": (r"\b(symptoms?|signs?)\b", r"symptom|signs"),
    "exams and tests": (r"\b(diagnos\w*|tests?|tested|exams?|screen(ing)?|detect\w*)\b", r"exams and tests|diagnos"),
    "treatment": (r"\b(treat\w*|therap\w*|cure[sd]?|manag\w*|medications?|drugs?)\b", r"treatment|management|therap"),
    "causes": (r"\b(caus\w*|why does|why do|triggers?)\b", r"\bcauses?\b"),
    "prevention": (r"\b(prevent\w*|avoid\w*|reduce (the|my) risk)\b", r"prevention"),
    "outlook": (r"\b(outlook|prognosis|life expectancy|survival|recover\w*)\b", r"outlook|prognosis"),
    "susceptibility": (r"\b(at risk|risk factors?|who (gets|is likely|can get))\b", r"susceptibility|risk factors"),
    "frequency": (r"\b(how (many|common)|prevalen\w*|frequen\w*|incidence)\b", r"frequency|prevalence"),
    "inheritance": (r"\b(inherit\w*|passed down|hereditary|run in families)\b", r"inheritance"),
    "genetic changes": (r"\b(genetic changes?|genes?|mutations?)\b", r"genetic changes|genetics"),
    "research": (r"\b(research|clinical trials?)\b", r"research|clinical trials"),
    "stages": (r"\bstag(es?|ing)\b", r"stages|staging"),
    "complications": (r"\bcomplications?\b", r"complications"),
}
_ASKS = {name: re.compile(q, re.IGNORECASE) for name, (q, _) in SECTIONS.items()}
_PROVIDES = {name: re.compile(s, re.IGNORECASE) for name, (_, s) in SECTIONS.items()}
_DEFINITION = re.compile(r"^\s*(what (is|are)( \(are\))?|do you have (any )?information about|tell me about)\b", re.I)
_OVERVIEW = re.compile(r"information|overview|summary|definition", re.IGNORECASE)
_LABEL = re.compile(r"\s*\(([^()]+)\)\s*$")


def question_sections(question: str) -> frozenset[str]:
    """The sections a question asks for; a bare definition question asks for the overview."""
    asked = frozenset(name for name, pattern in _ASKS.items() if pattern.search(question))
    if not asked and _DEFINITION.search(question):
        return frozenset({"information"})
    return asked


def chunk_section(chunk: Chunk) -> str | None:
    label = chunk.metadata.get("section") or chunk.metadata.get("qtype")
    if not label:
        m = _LABEL.search(chunk.title or "")
        label = m.group(1) if m else None
    if not label:
        return None
    for name, pattern in _PROVIDES.items():
        if pattern.search(label):
            return name
    return "information" if _OVERVIEW.search(label) else None


def chunk_topic(chunk: Chunk) -> str:
    return _LABEL.sub("", chunk.title or "").strip().lower() or chunk.doc_id


def promote(scores: dict[int, float], asked: Iterable[str], topics: Sequence[str], sections: Sequence[str | None]):
    """Lift each topic's asked-for sections just above that topic's best score, keeping their order."""
    asked = set(asked)
    if not asked:
        return scores
    best: dict[str, float] = {}
    matched: dict[str, list[int]] = {}
    for row, score in scores.items():
        best[topics[row]] = max(best.get(topics[row], score), score)
        if sections[row] in asked:
            matched.setdefault(topics[row], []).append(row)
    out = dict(scores)
    for topic, rows in matched.items():
        rows.sort(key=lambda r: -scores[r])
        for j, row in enumerate(rows):
            out[row] = best[topic] + 1e-9 * (len(rows) - j)  # above the topic's best, below any better topic
    return out
