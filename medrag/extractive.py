"""ExtractiveGenerator: answers by quoting the source sentences that answer the kind of question asked.

The CPU fallback (laptop demo, CI): no language model, so nothing can be made up. Each source is
split into quotable units (sentences, or a list's lead-in with its items); the question and
every unit are embedded in one call, each unit after its source's topic ("Measles: It spreads
easily ..."), and scored by cosine. The kind of question (how long, is it contagious, can it come
back...; see medrag.question_kinds) decides which units count as an answer: those with the
kind's cues, most similar first, plus one unit of context. The top-ranked source's page is tried
first; otherwise all sources whose best unit is close to the best source's compete. When no
source sentence answers the kind, the answer says so in the fixed form "The sources describe X
but do not say how long it lasts." and quotes the opening of the page on the topic. A quote whose
subject is its source's topic ("This condition ...") is introduced by that topic when the topic
is narrower than the question (medrag.topics). Every quote is a verbatim substring of the source
it cites. Kinds without cues ("What is X?") keep the plain most-similar choice.

Skipped on purpose: questions a source asks itself, fragments (a list item alone, a piece that
starts in lower case, a heading), near-duplicates, and the background and methods of a
structured abstract (its results and conclusions are kept, without their labels). Shortcuts on
purpose: units come from the chunker's sentence splitter, cues are regular expressions, and
there is no rephrasing, so answers read like a list of quotes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from medrag.chunking import split_sentences
from medrag.generator import Generator
from medrag.prompts import CANNOT_ANSWER_PHRASE, missing_statement
from medrag.question_kinds import BY_NAME, answers_kind, has_cues, question_kind
from medrag.topics import attribute, content_words, narrower_topic, source_section, source_topic, study_id
from medrag.types import Chunk

_BULLET = re.compile(r"(?:[-*\u2022]|\d+[.)])\s+")  # a list marker is not part of the quoted sentence
_LABEL = re.compile(r"([A-Z][A-Za-z ]{2,40}?)\s?:\s+")  # "Results: ..." opening a structured abstract's section
_KEEP = re.compile(r"result|conclusion|finding|interpretation|discussion|^summary$")  # what a study found
# the study's framing: general facts worth quoting when a chunk holds no findings (never its aims, below)
_BACKGROUND = re.compile(r"background|introduction|context|rationale|purpose|objective|aim|hypothesis")
_SKIP = re.compile(  # how the study was done: never an answer
    r"design|setting|method|patient|participant|subject|intervention|measure|outcome|data|selection|limitation|"
    r"\bobject\b|population|case report"
)
_INTENT = re.compile(
    r"(?:To |This (?:study|trial|paper|report|analysis|review)|We |Our |The (?:aim|purpose|objective|goal))"
)
_NAVIGATION = re.compile(r"(?:click here|see (?:the|also)|for more information|visit |read more|learn more)\b", re.I)
# A list item that swallowed the next sentence ("- Sweating Your doctor can run tests ..."): split there.
_SWALLOWED = re.compile(r"(?<=[a-z)])\s+(?=[A-Z][a-z']*\s+\S+\s+\S+\s+\S.*[.!?]$)")


@dataclass(frozen=True)
class Unit:
    """A quotable piece of one source: a sentence, or a list's lead-in with its items."""

    source: int  # 0-based index into the sources
    position: int  # order within the source
    text: str  # the verbatim sentence (or lead-in)
    items: tuple[str, ...] = ()  # verbatim list items that follow the lead-in

    @property
    def full(self) -> str:
        return " ".join([self.text, *self.items])


@dataclass(eq=False)
class _Scored:
    unit: Unit
    score: float  # cosine with the question
    vector: np.ndarray
    floor: float  # the cosine below which this unit is noise for this question

    @property
    def relevant(self) -> bool:
        return self.score >= self.floor


@dataclass
class Plan:
    """What the answer will say: the chosen units (answer order) and, when nothing answers the kind, what is missing."""

    kind: str
    units: list[_Scored] = field(default_factory=list)
    missing: str | None = None  # the fixed "The sources describe ... but do not say ..." sentence


class ExtractiveGenerator(Generator):
    name = "extractive"

    def __init__(
        self,
        embedder,
        max_sentences: int = 4,  # a short answer a reader checks against the sources at a glance
        min_similarity: float = 0.3,  # MiniLM cosine below ~0.3 is topical noise, not an answer
        study_similarity: float = 0.1,  # a top-ranked study's findings are rarely worded like the question
        per_source: int = 2,  # one long source must not crowd out the others
        duplicate_similarity: float = 0.95,  # overlapping chunks repeat sentences; say each once
        min_words: int = 4,  # shorter pieces are headings or fragments, not statements
        focus: bool = True,  # answer from the top-ranked source alone when it has enough to say
        focus_min: int = 1,  # sentences the top source must supply, else all sources compete
        context: int = 1,  # units beside those that answer the kind: what the answer is about
        missing_quotes: int = 2,  # what the sources do say, quoted after "... but do not say ..."
        about_margin: float = 0.12,  # a source whose best sentence is this much less similar than the best
        # source's is about something else ("Canker sores are not contagious" for psoriasis)
        max_items: int = 6,  # list items quoted after a lead-in ("Symptoms include")
    ):
        self.embedder = embedder
        self.max_sentences, self.min_similarity, self.per_source = max_sentences, min_similarity, per_source
        self.study_similarity = study_similarity
        self.duplicate_similarity, self.min_words = duplicate_similarity, min_words
        self.focus, self.focus_min, self.context = focus, focus_min, context
        self.missing_quotes, self.max_items, self.about_margin = missing_quotes, max_items, about_margin

    def plan(self, question: str, sources: Sequence[Chunk]) -> Plan:
        """The units to quote and whether the kind asked goes unanswered.

        With `focus`, the top-ranked source's page (its chunks among the sources) is tried alone
        first: one page that answers the question makes a cleaner, more precisely cited answer
        than quotes from five (and embeds fewer sentences, so the first words stream sooner).
        """
        kind = question_kind(question)
        if not sources:
            return Plan(kind)
        lead = _lead(question, sources, kind) if has_cues(kind) else 0
        page = [i for i, s in enumerate(sources) if _doc(s) == _doc(sources[lead])]  # the leading source's page
        if self.focus and len(page) < len(sources) and kind != "differential":  # "what could it be" wants several
            study = study_id(getattr(sources[lead], "chunk", sources[lead]).title)
            # a study retrieval put first is what the question asks about: its findings answer, whatever the kind
            chosen = self._choose(self._scored(question, sources, page), "other" if study else kind, self.max_sentences)
            if chosen is not None and len(chosen) >= self.focus_min:
                return Plan(kind, _in_order(chosen))
        scored = self._scored(question, sources)
        if not has_cues(kind):
            return Plan(kind, _in_order(self._choose(scored, kind, self.per_source) or []))
        scored = _about(scored, self.about_margin)  # an answer to the kind counts only from a page on the question
        on_topic = scored if kind == "differential" else _on_topic(scored, question, sources)
        n_pages = len({x.unit.source for x in on_topic if x.relevant}) or 1
        chosen = self._choose(on_topic, kind, max(self.per_source, -(-self.max_sentences // n_pages)))
        if chosen is not None:
            return Plan(kind, _in_order(chosen))
        described = on_topic if any(x.relevant for x in on_topic) else scored
        return self._missing(question, sources, described, kind)

    def select(self, question: str, sources: Sequence[Chunk]) -> list[tuple[int, str, float]]:
        """The quotes that answer `question` as (1-based source number, verbatim text, cosine), in answer order.

        For the training-data builder (medrag.sft_data): a list's items follow their lead-in, each
        on its own; no "For <topic>: " introduction (medrag.topics.attribute adds it); empty when
        the sources do not answer the kind asked (the plan would say what they lack instead).
        """
        plan = self.plan(question, sources)
        if plan.missing:
            return []
        return [(x.unit.source + 1, text, x.score) for x in plan.units for text in (x.unit.text, *x.unit.items)]

    def _missing(self, question: str, sources: Sequence[Chunk], scored: list[_Scored], kind: str) -> Plan:
        """Nothing answers the kind: say what the sources cover, and quote the opening of the page on the topic.

        The most similar sentences are the wrong quotes here: for "how long does the flu last?"
        MiniLM ranks "antibodies develop about two weeks after the vaccine" first. The opening
        sentences of the best page about the question's own topic (not a narrower one) say what it is.
        """
        best: dict[int, float] = {}
        for x in scored:
            if x.relevant:
                best[x.unit.source] = max(best.get(x.unit.source, 0.0), x.score)
        if not best:
            return Plan(kind)
        ranked = sorted(best, key=lambda i: -best[i])
        titles = [getattr(sources[i], "chunk", sources[i]).title for i in ranked]
        page = next((i for i, t in zip(ranked, titles, strict=True) if not narrower_topic(question, t)), ranked[0])
        opening = [x for x in scored if x.unit.source == page and x.relevant]
        units = self._greedy(sorted(opening, key=lambda x: x.unit.position), self.missing_quotes, self.missing_quotes)
        covered = _covered([sources[i] for i in ranked][:3])
        return Plan(kind, units, missing_statement(covered, BY_NAME[kind].missing))

    def _choose(self, scored: list[_Scored], kind: str, per_source: int) -> list[_Scored] | None:
        """Units that answer `kind` (most similar first) plus context; None when none answers it."""
        relevant = sorted((x for x in scored if x.relevant), key=lambda x: -x.score)
        hits = [x for x in relevant if answers_kind(x.unit.full, kind)]
        if not hits:
            return None if has_cues(kind) or not relevant else []
        chosen = self._greedy(hits, self.max_sentences, per_source)
        if has_cues(kind):
            room = min(self.context, self.max_sentences - len(chosen))
            chosen += self._greedy([x for x in relevant if x not in hits], room, per_source, chosen)
        return chosen

    def _greedy(self, ranked: list[_Scored], limit: int, per_source: int, taken=()) -> list[_Scored]:
        """Up to `limit` of `ranked` in order, at most `per_source` per source, no repeats."""
        out: list[_Scored] = []
        for x in ranked:
            if len(out) >= limit:
                break
            kept = [*taken, *out]
            if sum(y.unit.source == x.unit.source for y in kept) >= per_source:
                continue
            if any(_norm(y.unit.full) == _norm(x.unit.full) for y in kept):
                continue
            if kept and max(float(x.vector @ y.vector) for y in kept) > self.duplicate_similarity:
                continue
            out.append(x)
        return out

    def _scored(self, question: str, sources: Sequence[Chunk], only: Sequence[int] | None = None) -> list[_Scored]:
        """Each unit (of the sources numbered `only`, else all) with its cosine to the question, embedded
        after its source's topic ("Measles: It spreads easily ..."), so a sentence that says "It" or
        "This condition" is still about its topic."""
        chunks = [getattr(s, "chunk", s) for s in sources]
        keep = range(len(chunks)) if only is None else only
        units = [u for i in keep for u in self._units(i, chunks[i].text)]
        if has_cues(question_kind(question)):  # "researchers are studying ..." answers no visitor's question
            units = [u for u in units if source_section(chunks[u.source].title) != "research"]
        if not units:
            return []
        topics = [_topic_prefix(c.title) for c in chunks]
        embed = getattr(self.embedder, "embed_cached", self.embedder.embed)
        texts = [question, *(topics[u.source] + u.full for u in units)]
        vectors = _normalise(np.asarray(embed(texts), dtype=np.float32))
        floors = [self.min_similarity] * len(chunks)
        if study_id(chunks[0].title):  # retrieval put this study first: its findings answer, however worded
            floors[0] = self.study_similarity
        return [_Scored(u, float(v @ vectors[0]), v, floors[u.source]) for u, v in zip(units, vectors[1:], strict=True)]

    def _units(self, source: int, text: str) -> list[Unit]:
        """The quotable units of one source text, in order."""
        pieces: list[tuple[bool, str, str]] = []  # (is a list item, verbatim text, section: keep/background/skip)
        section = "keep"  # unlabelled text, and a chunk that starts inside a section, is kept
        for a, b in split_sentences(text):
            bullet = _BULLET.match(text, a, b)
            piece = text[bullet.end() if bullet else a : b]
            label = _LABEL.match(piece)
            if label and (kind := _section(label.group(1))):
                section, piece = kind, piece[label.end() :]
            if bullet and (m := _SWALLOWED.search(piece)):
                pieces += [(True, piece[: m.start()], section), (False, piece[m.end() :], section)]
            else:
                pieces.append((bool(bullet), piece, section))
        # a structured abstract's results and conclusions; its background only when the chunk has no findings
        wanted = "keep" if any(sec == "keep" for *_, sec in pieces) else "background"
        pieces = [(it, p) for it, p, sec in pieces if sec == wanted and not (sec == "background" and _INTENT.match(p))]
        units: list[Unit] = []
        i = 0
        while i < len(pieces):
            is_item, piece = pieces[i]
            items = []
            while not is_item and i + 1 < len(pieces) and pieces[i + 1][0]:
                i += 1
                items.append(pieces[i][1])
            i += 1
            if is_item and not piece.rstrip().endswith((".", "!")):
                continue  # a list item alone is a fragment: it only means something under its lead-in
            unit = Unit(source, len(units), piece, tuple(it for it in items if it.strip())[: self.max_items])
            if self._quotable(unit):
                units.append(unit)
        return units

    def _quotable(self, unit: Unit) -> bool:
        text = unit.text.strip()
        if not text or text.endswith("?") or not (text[0].isupper() or text[0].isdigit()):
            return False  # a question the source asks itself, or a fragment of a sentence
        if not unit.items and not text.endswith((".", "!", '."', ".)")):
            return False  # a heading or a credit line ("NIH: National Institute of ..."), not a statement
        if _NAVIGATION.match(text):
            return False  # "Click here to learn more ...": the page's navigation, not medicine
        return len(unit.full.split()) >= self.min_words

    def stream(
        self, question, sources, history=None, *, max_new_tokens=None, temperature=None, info=None
    ) -> Iterator[str]:
        """One delta per quoted unit; history, max_new_tokens and temperature do not apply here."""
        plan = self.plan(question, sources)
        if not plan.units:
            yield CANNOT_ANSWER_PHRASE
            return
        after_list = False
        if plan.missing:
            yield plan.missing
        for k, unit in enumerate(x.unit for x in plan.units):
            n, title = unit.source + 1, getattr(sources[unit.source], "chunk", sources[unit.source]).title
            lead = f"{attribute(unit.text, question, title)} [{n}]"
            items = "".join(f"\n- {item} [{n}]" for item in unit.items)
            sep = "\n\n" if after_list else (" " if k or plan.missing else "")
            yield sep + lead + items
            after_list = bool(items)

    def versions(self) -> dict[str, str]:
        return {"generator": "extractive"}


# The MedQuAD sections (medrag.topics.SECTIONS, in plain words) that answer each kind of question.
_KIND_SECTIONS = {
    "treatment": {"treatment"}, "symptoms": {"symptoms"}, "cause": {"causes", "genetic changes"},
    "risk": {"who is at risk"}, "inheritance": {"inheritance", "genetic changes"}, "diagnosis": {"diagnosis"},
    "prevention": {"prevention"}, "outlook": {"outlook"}, "frequency": {"frequency"},
    "complications": {"complications"},
}  # fmt: skip


def _lead(question: str, sources: Sequence[Chunk], kind: str) -> int:
    """The source whose page is tried first: the best-ranked one on the question's own topic (not a
    narrower one) whose section answers the kind, else the best-ranked on the topic, else the first."""
    titles = [getattr(s, "chunk", s).title for s in sources]
    if study_id(titles[0]):
        return 0  # a question retrieval matched to a study asks about that study
    on_topic = [i for i, t in enumerate(titles) if not narrower_topic(question, t)]
    wanted = _KIND_SECTIONS.get(kind, set())
    return next((i for i in on_topic if source_section(titles[i]) in wanted), on_topic[0] if on_topic else 0)


def _section(label: str) -> str | None:
    """A structured abstract's section label ("Results", "Patients and methods") as keep/background/skip."""
    label = label.strip().lower()
    for name, pattern in (("keep", _KEEP), ("background", _BACKGROUND), ("skip", _SKIP)):
        if pattern.search(label) and not (name == "keep" and "background" in label):
            return name
    return None


def _doc(source) -> str:
    chunk = getattr(source, "chunk", source)
    return chunk.doc_id or chunk.id


def _topic_prefix(title: str) -> str:
    """ "Measles: " for a page on measles; nothing for a study, whose title is only its PubMed id."""
    topic = source_topic(title)
    return f"{topic}: " if topic and not study_id(title) else ""


def _about(scored: list[_Scored], margin: float) -> list[_Scored]:
    """The units of the sources about the question: those whose best unit is within `margin` of the best."""
    best: dict[int, float] = {}
    for x in scored:
        best[x.unit.source] = max(best.get(x.unit.source, -1.0), x.score)
    top = max(best.values(), default=0.0)
    return [x for x in scored if best[x.unit.source] >= top - margin]


def _on_topic(scored: list[_Scored], question: str, sources: Sequence[Chunk]) -> list[_Scored]:
    """The units of sources on the question's own topic: a topic with no word beyond the question's or
    the top source's ("Flu Shot" is not "Flu": its weeks are the vaccine's, not the illness's)."""
    titles = [getattr(s, "chunk", s).title for s in sources]
    allowed = content_words(question) | content_words(source_topic(titles[0]))
    return [x for x in scored if content_words(source_topic(titles[x.unit.source])) <= allowed]


def _covered(sources: Sequence[Chunk]) -> list[str]:
    """What the sources are about, for "The sources describe ...": topics with their sections."""
    topics: dict[str, list[str]] = {}
    for s in sources:
        title = getattr(s, "chunk", s).title
        sid = study_id(title)
        sections = topics.setdefault(f"a study (PMID {sid})" if sid else source_topic(title), [])
        section = source_section(title)
        if section and section != "overview" and section not in sections:
            sections.append(section)
    return [f"{t} ({', '.join(secs)})" if secs else t for t, secs in topics.items()]


def _in_order(chosen: list[_Scored]) -> list[_Scored]:
    return sorted(chosen, key=lambda x: (x.unit.source, x.unit.position))


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)
