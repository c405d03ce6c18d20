"""A visitor's conversation as plain values: turns kept per session and in the visitor's browser, and its export.

A `Turn` is one question and its answer, with what is needed to show the answer again (its text, kind,
unsupported sentences and the sources' ids, titles and urls), to vote on it (the versions stamp) and to
export it. Turns are JSON (`to_dict`/`from_dict`) because the app keeps them in the visitor's browser
(`gr.BrowserState`); what comes back from there is read defensively and shown through the same
escaping as a fresh answer (medrag.ui), never as stored HTML.

Shortcut on purpose: a turn keeps the sources' titles and urls, not their text, so a restored
conversation shows its answers and citation links but the Sources tab starts empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from medrag.prompts import DISCLAIMER
from medrag.types import Answer, Chunk, Hit
from medrag.ui import answer_markdown, code, inert, link_citations, safe_url

STOPPED_NOTE = "<small><em>Stopped before the answer was complete.</em></small>"
MAX_TURNS = 50  # kept per conversation: a long chat, and still a small entry in the browser's storage


@dataclass
class Source:
    id: str  # the chunk id, as the Sources tab and /ask name it
    doc_id: str = ""
    title: str = ""
    url: str = ""


@dataclass
class Turn:
    question: str
    answer: str  # the raw answer text, citations as [n]
    kind: str = "answer"  # answer | urgent | declined (invalid questions never become turns)
    sources: list[Source] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # index and generator/adapter commits it answered with
    stopped: bool = False  # the visitor pressed Stop: `answer` is what had arrived

    @classmethod
    def from_answer(cls, answer: Answer, stopped: bool = False) -> Turn:
        sources = [Source(h.chunk.id, h.chunk.doc_id, h.chunk.title, h.chunk.url) for h in answer.sources]
        kind = answer.kind if answer.kind in ("answer", "urgent", "declined") else "answer"
        return cls(
            answer.question, answer.text, kind, sources, list(answer.unsupported), dict(answer.versions), stopped
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Turn:
        values = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        values["sources"] = [
            Source(**{k: str(s.get(k) or "") for k in ("id", "doc_id", "title", "url")}) for s in d.get("sources") or []
        ]
        return cls(**values)

    def hits(self) -> list[Hit]:
        return [Hit(Chunk(s.id, s.doc_id, s.title, "", s.url), 0.0, rank=i) for i, s in enumerate(self.sources, 1)]

    def markdown(self) -> str:
        """The assistant message, rendered as a fresh answer is (medrag.ui.answer_markdown)."""
        shown = answer_markdown(
            Answer(self.question, self.answer, sources=self.hits(), kind=self.kind, unsupported=list(self.unsupported))
        )
        return f"{shown}\n\n{STOPPED_NOTE}" if self.stopped else shown


def load_turns(saved) -> list[Turn]:
    """Turns from what a browser sent back; anything malformed is dropped, not trusted."""
    turns = []
    for d in saved if isinstance(saved, list) else []:
        try:
            turn = Turn.from_dict(d)
        except (TypeError, AttributeError, ValueError):
            continue
        if isinstance(turn.question, str) and isinstance(turn.answer, str):
            turns.append(turn)
    return turns[-MAX_TURNS:]


def save_turns(turns: list[Turn]) -> list[dict]:
    return [t.to_dict() for t in turns[-MAX_TURNS:]]


def chat_messages(turns: list[Turn]) -> list[dict]:
    """The chatbot's messages: each question (inert) and its answer."""
    out = []
    for t in turns:
        out += [{"role": "user", "content": inert(t.question)}, {"role": "assistant", "content": t.markdown()}]
    return out


def history(turns: list[Turn], n_turns: int) -> list[dict]:
    """The last `n_turns` complete questions and answers, as the pipeline takes them (config.history_turns)."""
    done = [t for t in turns if not t.stopped][-n_turns:] if n_turns > 0 else []
    return [
        m for t in done for m in ({"role": "user", "content": t.question}, {"role": "assistant", "content": t.answer})
    ]


def export_markdown(turns: list[Turn]) -> str:
    """The conversation as a Markdown file: each question, its answer with linked citations, its numbered sources.

    Every string goes through the chat's escaping: the only links are the sources' own http(s) urls."""
    parts = ["# MedRAG conversation", "", inert(DISCLAIMER), ""]
    for i, t in enumerate(turns, 1):
        answer = link_citations(t.answer, t.hits()) if t.kind == "answer" else inert(t.answer)
        parts += [f"## {i}. {inert(t.question)}", "", answer, ""]
        if t.stopped:
            parts += ["*Stopped before the answer was complete.*", ""]
        if t.sources:
            parts += ["**Sources**", ""]
            for n, s in enumerate(t.sources, 1):
                title, url = inert(s.title or s.doc_id or f"Source {n}"), safe_url(s.url)
                parts.append(f"{n}. [{title}]({url}) {code(s.id)}" if url else f"{n}. {title} {code(s.id)}")
            parts.append("")
    return "\n".join(parts)
