"""Sentence-aware chunking, bounded by the embedding model's token window. Pure functions.

`chunk_document(doc, count_tokens)` splits `doc.text` into sentences, packs whole sentences
greedily into chunks, and starts every chunk after the first with the previous chunk's last
whole sentences (at most `overlap` tokens). Each chunk keeps the document's title, and
  count_tokens(chunk.embed_text) + 2 <= max_tokens     (2: [CLS] and [SEP])
  doc.text[chunk.start:chunk.end] == chunk.text        (the UI highlights by offsets)

Shortcuts taken on purpose:
- Sentences come from a regex (., !, ?, line breaks; known abbreviations and decimals kept
  whole), not a trained model: a missed boundary only makes a longer sentence, no text is lost.
- Tokens are counted once per sentence and the counts added up. That is exact for WordPiece
  (all-MiniLM's tokenizer splits on whitespace first) and for word counts; the pieces of one
  word cut by characters do not add up, so two of them never share a chunk.
- A title longer than half the window is cut at a word in the chunks' `title` (the invariant
  above needs it); the full title stays in the chunk's `metadata["full_title"]`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from medrag.types import Chunk, Document

CountTokens = Callable[[str], int]  # word pieces in a text, without [CLS]/[SEP]
CountTokensBatch = Callable[[list[str]], list[int]]
SPECIAL_TOKENS = 2  # [CLS] and [SEP], added by the embedder to every input

# A word followed by "." never ends a sentence when it is one of these (compared lower-case).
ABBREVIATIONS = {"e.g", "i.e", "dr", "mr", "mrs", "ms", "vs", "prof", "st", "fig", "figs", "al", "approx", "cf",
                 "jr", "sr", "inc", "ltd", "ca", "vol", "u.s", "a.m", "p.m", "ph.d", "m.d"}  # fmt: skip
_MARKS = ".!?"  # end a sentence when a space and a new sentence follow
_CLOSERS = "\"'”’)]"  # may follow the end marks: 'He said "stop."' ends after the quote
_LINE = re.compile(r"[^\n]+")
_WORD = re.compile(r"\S+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`, whitespace trimmed. Every line break ends
    a sentence (bullets, headings); so do . ! ? before a space, except after an abbreviation,
    before a lower-case word, or after a list marker ("1.", "a.") opening a sentence. Decimals
    ("2.5") have no space after the point, so they never end one.

    Linear time: each word is looked at once, with its successor (a regex that searched for the
    end marks from every position took minutes on one long word, such as an inline base64 image)."""
    spans = []
    for line in _LINE.finditer(text):
        start, end = line.start(), len(line.group().rstrip()) + line.start()
        start += len(line.group()) - len(line.group().lstrip())
        words = _WORD.finditer(text, start, end)
        word = next(words, None)
        for following in words:  # `word`, then spaces, then `following`
            (a, b), word = word.span(), following
            if text[b - 1] not in _MARKS and text[b - 1] not in _CLOSERS:
                continue
            core = text[a:b].rstrip(_CLOSERS)
            stem = core.rstrip(_MARKS)
            marks = core[len(stem) :]
            if not marks or text[following.start()].islower():
                continue
            if marks == "." and stem.lower().lstrip("([\"'") in ABBREVIATIONS:
                continue
            if marks == "." and a == start and (stem.isdigit() or (len(stem) == 1 and stem.isalpha())):
                continue  # "1. Take ..." is a numbered item, not a one-word sentence
            spans.append((start, b))
            start = following.start()
        if start < end:
            spans.append((start, end))
    return spans


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    sentence: bool  # a whole sentence: may be repeated at the start of the next chunk


def chunk_document(
    doc: Document,
    count_tokens: CountTokens,
    max_tokens: int = 256,  # all-MiniLM-L6-v2 truncates at 256 word pieces: longer chunks lose text
    overlap: int = 32,  # a sentence cut at a boundary stays retrievable from both sides
    count_tokens_batch: CountTokensBatch | None = None,
) -> list[Chunk]:
    """The chunks of one document; none when its text is empty."""
    return chunk_documents([doc], count_tokens, max_tokens, overlap, count_tokens_batch)


def chunk_documents(
    docs: Iterable[Document],
    count_tokens: CountTokens,
    max_tokens: int = 256,
    overlap: int = 32,
    count_tokens_batch: CountTokensBatch | None = None,  # counts many texts in one call (a fast tokenizer's batch)
    docs_per_batch: int = 256,  # sentences of this many documents go to one batch call: ~3k texts
) -> list[Chunk]:
    """The chunks of every document, in order."""
    if max_tokens < SPECIAL_TOKENS + 2 or overlap < 0:
        raise ValueError(f"need max_tokens >= {SPECIAL_TOKENS + 2} and overlap >= 0, got {max_tokens}, {overlap}")
    batch = count_tokens_batch or (lambda texts: [count_tokens(t) for t in texts])
    chunks: list[Chunk] = []
    docs = iter(docs)
    while group := list(itertools.islice(docs, docs_per_batch)):
        spans = [split_sentences(doc.text) for doc in group]
        texts = [doc.title for doc in group] + [
            doc.text[s:e] for doc, sp in zip(group, spans, strict=True) for s, e in sp
        ]
        counts = list(batch(texts))
        if len(counts) != len(texts):
            raise ValueError(f"count_tokens_batch returned {len(counts)} counts for {len(texts)} texts")
        at = len(group)
        for i, (doc, sp) in enumerate(zip(group, spans, strict=True)):
            chunks += _chunk(doc, sp, counts[at : at + len(sp)], counts[i], count_tokens, batch, max_tokens, overlap)
            at += len(sp)
    return chunks


def _chunk(
    doc: Document,
    spans: list[tuple[int, int]],
    counts: list[int],
    title_tokens: int,
    count_tokens: CountTokens,
    batch: CountTokensBatch,
    max_tokens: int,
    overlap: int,
) -> list[Chunk]:
    """One document's chunks, given its sentences and their token counts."""
    text, title, metadata, window = doc.text, doc.title, dict(doc.metadata), max_tokens - SPECIAL_TOKENS
    if title_tokens > window // 2:  # keep at least half the window for the text
        fits = lambda k: count_tokens(title[:k]) <= window // 2  # noqa: E731
        cut = _longest([m.end() for m in _WORD.finditer(title)], fits) or _longest(range(1, len(title) + 1), fits)
        title = title[: cut or 1]
        title_tokens, metadata["full_title"] = count_tokens(title), doc.title
    budget = window - title_tokens
    units: list[_Unit] = []
    for (s, e), n in zip(spans, counts, strict=True):
        units += [_Unit(s, e, n, True)] if n <= budget else _split_long(text, s, e, budget, count_tokens, batch)
    return [
        Chunk(id=f"{doc.id}#{i}", doc_id=doc.id, title=title, text=text[g[0].start : g[-1].end], url=doc.url,
              source=doc.source, position=i, start=g[0].start, end=g[-1].end, metadata=dict(metadata))
        for i, g in enumerate(_pack(units, budget, overlap))
    ]  # fmt: skip


def _split_long(
    text: str, start: int, end: int, budget: int, count_tokens: CountTokens, batch: CountTokensBatch
) -> list[_Unit]:
    """A sentence over the budget, as pieces of whole words within it (a word over it: by characters)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    pieces: list[_Unit] = []
    first, last, total = None, start, 0  # the piece being filled: its first word's start, end, tokens
    for (a, b), n in zip(words, batch([text[a:b] for a, b in words]), strict=True):
        if first is not None and total + n > budget:
            pieces.append(_Unit(first, last, total, False))
            first, total = None, 0
        if n <= budget:
            first, last, total = a if first is None else first, b, total + n
            continue
        while a < b:  # cut the word at the longest prefix that fits; at least one character
            cut = _longest_prefix(a, b, lambda k, a=a: count_tokens(text[a:k]) <= budget) or a + 1
            pieces.append(_Unit(a, cut, count_tokens(text[a:cut]), False))
            a = cut
    if first is not None:
        pieces.append(_Unit(first, last, total, False))
    return pieces


def _longest(cuts: Sequence[int], fits: Callable[[int], bool]) -> int | None:
    """The last of the ascending `cuts` that fits, found by bisection; None when none does."""
    lo, hi = -1, len(cuts)  # cuts[lo] fits (or lo == -1); cuts[hi] does not (or hi == len)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(cuts[mid]) else (lo, mid)
    return cuts[lo] if lo >= 0 else None


def _longest_prefix(a: int, b: int, fits: Callable[[int], bool]) -> int | None:
    """The largest cut k in a+1..b with fits(k): galloping (a+1, a+2, a+4, ...) then bisection, so
    a cut costs time in the length of the piece it keeps, not of the word (a megabyte-long word is
    cut in linear time). None when not even one character fits."""
    known, size = None, 1  # known: the largest cut seen to fit
    while True:
        k = min(a + size, b)
        if not fits(k):
            return _longest(range((known or a) + 1, k), fits) or known
        if k == b:
            return b
        known, size = k, size * 2


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[list[_Unit]]:
    """Greedy packing; each new chunk opens with the last whole sentences of the one before."""
    chunks: list[list[_Unit]] = []
    current: list[_Unit] = []
    total = 0
    for unit in units:
        touching = bool(current) and current[-1].end == unit.start  # two pieces of one word
        if current and (total + unit.tokens > budget or touching):
            chunks.append(current)
            tail: list[_Unit] = []
            total, room = 0, min(overlap, budget - unit.tokens)  # the overlap leaves room for the new unit
            for prev in reversed(current[1:]):  # never the whole previous chunk: each chunk brings new text
                if not prev.sentence or total + prev.tokens > room:
                    break
                tail.insert(0, prev)
                total += prev.tokens
            current = tail
        current.append(unit)
        total += unit.tokens
    if current:
        chunks.append(current)
    return chunks
