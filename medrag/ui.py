"""Pure formatters for the app: answers as chat markdown, sources as HTML, the API's JSON, status.

No gradio here, so every rule is unit-testable on its own. Two rules hold everywhere:
every string a visitor, a document or an index manifest supplies is rendered inert before it is
shown (`inert` for markdown, `code` for a value in a code span, `html.escape` for HTML): no tag, no
link and no image reaches the page that the project did not build itself; and a link is only made
from an http(s) url, itself escaped. The project's own links are the citation markers and the
source titles, made here after the text around them was made inert.

`inert` escapes only what can make a link, an image or a tag: HTML's `<`, `>` and `&`, markdown's
brackets (inline, reference and image links) and backslash, and where GFM autolinks start (the `:`
of `http:`, `https:`, `ftp:`, `mailto:`, the `.` of `www.`, every `@`). Shortcut on purpose: the
rest of markdown still renders, so `*stars*` in a source become emphasis; LaTeX is off in the
app's components.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from urllib.parse import quote, urlsplit

from medrag import citations
from medrag.citations import MARKER
from medrag.prompts import CANNOT_ANSWER_PHRASE, DISCLAIMER
from medrag.types import Answer, Citation, Hit

DECLINED_NOTE = "Declined: not enough evidence in the sources"
URGENT_TITLE = "Possible emergency"
_URL_SAFE = ":/?#@!$&'*+,;=%~-._"  # kept as they are; spaces, quotes, brackets and parentheses get encoded


# --- inert text ---------------------------------------------------------------------------
_LINK_CHARS = re.compile(r"[\\\[\]]")  # brackets make links and images; a backslash could unescape what follows
_AUTOLINK = re.compile(r"(?i)(?:(?<=http)|(?<=https)|(?<=ftp)|(?<=mailto)):|(?<=www)\.|@")  # where GFM autolinks start


def inert(text) -> str:
    """`text` as markdown that renders as the same words and never as a tag, a link or an image.

    Character references, not backslashes: gradio's markdown unescapes a link's text before it reads
    it again, so `\\[` inside a source title's link would still open an image there."""
    text = html.escape(str(text), quote=False)
    text = _LINK_CHARS.sub(lambda m: f"&#{ord(m.group())};", text)
    return _AUTOLINK.sub(lambda m: f"&#{ord(m.group())};", text)


def code(value) -> str:
    """`value` as a markdown code span: literal text whatever backticks or newlines it holds."""
    text = " ".join(str(value).split())  # a blank line would end the span and the paragraph
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# --- links --------------------------------------------------------------------------------
def safe_url(url: str | None) -> str | None:
    """The url when it is a plain http(s) link, else None (javascript:, data:, relative, blank)."""
    url = (url or "").strip()
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(url, safe=_URL_SAFE)


def _md_link(number: int, hit: Hit) -> str:
    """`[[n]](url "title")`, or the bare `[n]` when the source has no safe url."""
    url = safe_url(hit.chunk.url)
    if url is None:
        return inert(f"[{number}]")
    title = " ".join(html.escape(hit.chunk.title or f"Source {number}", quote=True).replace("\\", "\\\\").split())
    return f'[[{number}]]({url} "{title}")'


def link_citations(text: str, sources: Sequence[Hit]) -> str:
    """`text` made inert, each [n] / [n, m] in it a link to the n-th source's url (the only links it gets)."""
    out, pos = [], 0
    for m in MARKER.finditer(text):
        numbers = [int(x) for x in m.group(1).split(",")]
        if all(1 <= n <= len(sources) for n in numbers):
            out += [inert(text[pos : m.start()]), "".join(_md_link(n, sources[n - 1]) for n in numbers)]
            pos = m.end()
    return "".join([*out, inert(text[pos:])])


def cited_numbers(text: str, n_sources: int) -> list[int]:
    """The source numbers `text` cites, in order of first appearance."""
    return [n for n in citations.cited_numbers(text) if 1 <= n <= n_sources]


# --- the chat message -----------------------------------------------------------------------
def answer_markdown(answer: Answer) -> str:
    """The assistant message for the chat: urgent and declined answers are styled apart."""
    if answer.kind == "urgent":
        return f'<div class="urgent"><strong>{URGENT_TITLE}.</strong> {inert(answer.text)}</div>'
    if answer.kind == "declined":
        return (
            f'<div class="declined"><strong>{DECLINED_NOTE}.</strong> {inert(CANNOT_ANSWER_PHRASE)} '
            "The closest passages are listed in the Sources tab.</div>"
        )
    if answer.kind == "invalid":
        return f'<div class="declined">{inert(answer.text)}</div>'
    parts = [link_citations(answer.text, answer.sources)]
    by_doc: dict[str, list[int]] = {}  # two chunks of one page are listed once: "[1][2] Title"
    for n in cited_numbers(answer.text, len(answer.sources)):
        by_doc.setdefault(answer.sources[n - 1].chunk.doc_id, []).append(n)
    if by_doc:
        items = " · ".join(_source_ref(ns, answer.sources[ns[0] - 1]) for ns in by_doc.values())
        parts.append(f"<small>Sources: {items}</small>")
    if answer.unsupported:
        n = len(answer.unsupported)
        parts.append(
            f"<small><em>{n} sentence{'s' if n > 1 else ''} not clearly supported by the cited source; "
            "check the Sources tab.</em></small>"
        )
    return "\n\n".join(parts)


def _source_ref(numbers: list[int], hit: Hit) -> str:
    marks = inert("".join(f"[{n}]" for n in numbers))
    title = inert(hit.chunk.title or f"Source {numbers[0]}")  # inside the link text: no image, no nested link
    url = safe_url(hit.chunk.url)
    return f"{marks} [{title}]({url})" if url else f"{marks} {title}"


# --- the Sources tab ------------------------------------------------------------------------
def highlight(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """Escape `text`, wrapping each character span (merged where they overlap) in <mark>."""
    merged: list[list[int]] = []
    for a, b in sorted((max(0, a), min(len(text), b)) for a, b in spans):
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, pos = [], 0
    for a, b in merged:
        out += [html.escape(text[pos:a]), "<mark>", html.escape(text[a:b]), "</mark>"]
        pos = b
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _score(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def source_html(number: int, hit: Hit, citations: Sequence[Citation]) -> str:
    """One passage: rank, linked title, scores, retrievers and the text with its support marked."""
    chunk = hit.chunk
    mine = [c for c in citations if c.number == number]
    title = html.escape(chunk.title or chunk.doc_id or f"Source {number}")
    url = safe_url(chunk.url)
    head = f'<a href="{html.escape(url)}" target="_blank" rel="noopener noreferrer">{title}</a>' if url else title
    badge = f' <span class="badge">cited ×{len(mine)}</span>' if mine else ""
    found_by = " + ".join(html.escape(r) for r in hit.retrievers) or "–"
    meta = (
        f"dense cosine {_score(hit.dense_score, 3)} · BM25 {_score(hit.bm25_score, 2)} · "
        f"fused {_score(hit.score, 4)} · found by {found_by}"
    )
    link_line = f'<div class="source-url">{html.escape(url)}</div>' if url else ""
    body = highlight(chunk.text, [c.span for c in mine if c.span])
    return (
        f'<li class="source{" cited" if mine else ""}" id="source-{number}">'
        f'<div class="source-head"><span class="rank">[{number}]</span> {head}{badge}</div>'
        f"{link_line}"
        f'<div class="source-meta">{meta} · <code>{html.escape(chunk.id)}</code></div>'
        f'<p class="source-text">{body}</p></li>'
    )


def sources_html(answer: Answer | None) -> str:
    """The Sources tab for the latest answer of a session."""
    if answer is None:
        return '<div class="sources empty">Ask a question: the passages behind the answer appear here.</div>'
    question = html.escape(answer.question)
    if not answer.sources:
        return f'<div class="sources empty">No sources were retrieved for <q>{question}</q>.</div>'
    intro = "Closest passages (too weak to answer from)" if answer.kind == "declined" else "Passages for"
    items = "".join(source_html(i, h, answer.citations) for i, h in enumerate(answer.sources, 1))
    return f'<div class="sources"><p class="sources-q">{intro} <q>{question}</q></p><ol class="source-list">{items}</ol></div>'


# --- the API --------------------------------------------------------------------------------
def answer_json(answer: Answer) -> dict:
    """The `/ask` endpoint's JSON: the answer, its sources and citations, versions and timings."""
    return {
        "question": answer.question,
        "answer": answer.text,
        "kind": answer.kind,
        "declined": answer.declined,
        "decline_reason": answer.decline_reason,
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
            for i, h in enumerate(answer.sources, 1)
        ],
        "citations": [
            {
                "number": c.number,
                "sentence": c.sentence,
                "support": c.support,
                "supported": c.supported,
                "span": list(c.span) if c.span else None,
            }
            for c in answer.citations
        ],
        "unsupported": list(answer.unsupported),
        "support_rate": answer.support_rate,
        "generator": answer.generator,
        "versions": dict(answer.versions),
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
        "warnings": list(answer.warnings),
        "disclaimer": answer.disclaimer or DISCLAIMER,
    }


# --- the About tab --------------------------------------------------------------------------
HOW_IT_WORKS = """\
1. **Safety check**: questions that describe an emergency get a fixed urgent-care message, no generated text.
2. **Retrieval**: dense search (all-MiniLM-L6-v2 embeddings) and BM25 keyword search, fused by reciprocal rank.
3. **Evidence gate**: when no passage is close enough, the app declines rather than guess.
4. **Answer**: the generator writes from the numbered passages only, citing each sentence as [n].
5. **Citation check**: every [n] must exist, and each sentence is matched against the passage it cites;
   the matching sentence is highlighted in the Sources tab."""


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def mode_line(generator) -> str:
    """What answers: the base model and adapter on GPU, an endpoint, or the extractive fallback."""
    name = getattr(generator, "name", "?")
    versions = dict(generator.versions()) if hasattr(generator, "versions") else {}
    fallback = getattr(generator, "fallback_reason", None)
    note = f" (the model could not load: {inert(fallback)})" if fallback else ""
    if name == "extractive":
        return "extractive (CPU): answers are sentences quoted from the retrieved passages" + note
    if name == "hf":
        quant = f", {inert(versions['quantization'])}" if versions.get("quantization") else ""
        adapter = f" + adapter {code(versions['adapter'])}" if versions.get("adapter") else " (no adapter)"
        if not versions.get("adapter") and getattr(generator, "adapter_error", None):
            adapter = f" alone: the base model answers without its adapter ({inert(generator.adapter_error)})"
        return f"{code(versions.get('base_model', '?'))}{adapter} (GPU{quant})"
    details = ", ".join(f"{inert(k)} {code(v)}" for k, v in versions.items())
    return f"{inert(name)}{f' ({details})' if details else ''}"


def read_manifest(pipeline) -> dict:
    """The loaded index's manifest: the index object's own, else manifest.json in the index folder."""
    index = getattr(pipeline, "_index", None)
    manifest = getattr(index, "manifest", None)
    if isinstance(manifest, dict):
        return manifest
    path = Path(getattr(index, "path", None) or pipeline.config.index_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def manifest_lines(manifest: dict) -> list[str]:
    if not manifest:
        return ["- no index loaded yet"]
    counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
    sha = str(manifest.get("corpus_sha256") or "?")
    fields = [
        ("corpus sha256", code(sha[:12])),
        ("documents", inert(counts.get("documents", "?"))),
        ("chunks", inert(counts.get("chunks", "?"))),
        ("model", code(manifest.get("embedding_model", "?"))),
        ("index type", inert(manifest.get("index_type", "?"))),
        ("built", inert(manifest.get("built_at", "?"))),
    ]  # a manifest comes from whoever pushed the index: every value is shown inert
    return [f"- {k}: {v}" for k, v in fields]


@lru_cache(maxsize=4)
def _sample_sha(sample_docs: str, stamp: float) -> str:
    from medrag.documents import corpus_sha256, load_documents

    return corpus_sha256(load_documents([sample_docs]).documents)


def attribution(pipeline, manifest: dict) -> str:
    """Where the loaded corpus comes from, in a sentence or two."""
    cfg = pipeline.config
    if cfg.index_repo:
        source = getattr(pipeline, "index_source", None) or f"{cfg.index_repo}@{cfg.index_revision}"
        return (
            f"Index from the Hub dataset repo {code(source)}; see its dataset card for the sources and their licences."
        )
    sample = Path(cfg.sample_docs)
    try:
        is_sample = sample.is_dir() and manifest.get("corpus_sha256") == _sample_sha(
            str(sample), sample.stat().st_mtime
        )
    except Exception:  # an unreadable sample folder only costs the attribution line
        is_sample = False
    if is_sample:
        names = inert(
            ", ".join(map(str, (manifest.get("extra") or {}).get("sources") or [])) or "MedlinePlus, NHS, CDC"
        )
        note = sample.parent / "SAMPLE_CORPUS.md"
        more = f" See `data/{note.name}`." if note.exists() else ""
        return (
            "The built-in sample corpus: short consumer-health summaries written by the MedRAG project in its own "
            f"words (CC BY 4.0), each restating facts from one public page ({names}) and linking to it as its source."
            + more
        )
    return f"A local corpus indexed into {code(cfg.index_dir)}; see that collection's own licence and attribution."


def refresh_lines(refresher) -> list[str]:
    """How the app hears of new Hub commits, what the last checks found, and the last error with its time."""
    if refresher is None:
        return []
    targets = {kind: refresher.target(kind) for kind in ("adapter", "index")}
    if not any(targets.values()):
        return ["**Updates from the Hub:** off (neither MEDRAG_ADAPTER nor MEDRAG_INDEX_REPO names a Hub repo)", ""]
    webhook = f"webhook `POST {refresher.webhook_path}`" if refresher.webhook_path else "no webhook (no secret set)"
    poll = f"polling every {refresher.poll_interval:g} s" if refresher.poll_interval else "no polling"
    lines = [f"**Updates from the Hub:** {webhook} · {poll}"]
    for kind, target in targets.items():
        if target is None:
            continue
        found = refresher.last_results.get(kind)
        seen = f": {found.status} at {found.at:%H:%M:%S} UTC" if found else ": not checked yet"
        lines.append(f"- {kind} {code(f'{target[0]}@{target[1]}')}{seen}")
    if refresher.last_error is not None:
        lines.append(f"- **last refresh error** ({inert(refresher.last_error)}); what was in use stays in use")
    return [*lines, ""]


def status_markdown(pipeline, refresher=None) -> str:
    """Mode, index manifest, versions, Hub updates, how it works and data attribution, as markdown."""
    manifest = read_manifest(pipeline)
    generator = getattr(pipeline, "_generator", None)
    mode = mode_line(generator) if generator is not None else "not loaded yet"
    versions = {
        "medrag": _medrag_version(),
        "gradio": package_version("gradio"),
        "transformers": package_version("transformers"),
    }
    lines = [
        "### Status",
        f"**Mode:** {mode}",
        "",
        "**Index**",
        *([f"- source: {code(pipeline.index_source)}"] if getattr(pipeline, "index_source", None) else []),
        *manifest_lines(manifest),
        "",
        *refresh_lines(refresher),
        "**Versions:** " + " · ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "### How it works",
        HOW_IT_WORKS,
        "",
        "### Data",
        attribution(pipeline, manifest),
        "",
        f"*{DISCLAIMER}*",
    ]
    return "\n".join(lines)


def _medrag_version() -> str:
    from medrag import __version__

    return __version__
