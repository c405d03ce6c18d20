"""`RAGPipeline`: question -> safety -> retrieval -> evidence gate -> generation -> citation check.

The embedder, index, retriever and generator are properties built on first use, so importing
or constructing a pipeline is cheap and a test can hand in fakes. `stream()` yields growing
`Answer`s (text so far); the last one carries the citation check, versions and timings.
`answer()` returns that last one. The pipeline holds no per-request state, so one instance
serves every visitor of the app concurrently. `swap()` replaces the index or generator for the
next questions (medrag.refresh does this on a Hub push); an answer pins the retriever, generator
and versions it started with. An index from a Hub repo is reported as "repo@<commit sha>".

`answer`/`stream` take the question and a `medrag.request.Request` (top_k, mode, temperature,
max_new_tokens, history; checked where it is made). A question that is not text or holds a lone
surrogate gets an `Answer(kind=AnswerKind.INVALID)` saying what to do, like any unusable question. The index is opened by medrag.index_source, which also
says where it came from (`index_status`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence

from medrag.citations import check_citations
from medrag.config import PipelineConfig
from medrag.index_source import IndexStatus, open_configured
from medrag.language import reads_as_english
from medrag.prompts import CANNOT_ANSWER_PHRASE, DISCLAIMER, NOT_ENGLISH_MESSAGE, URGENT_MESSAGES
from medrag.request import Request
from medrag.safety import check_input, clean_question, detect_red_flag
from medrag.types import Answer, AnswerKind

log = logging.getLogger(__name__)

_FOLLOW_UP = re.compile(
    r"^(and|or|but|also|what about|how about|for|in|with|is it|are they|does it|can it)\b"
    r"|\b(it|its|this|that|these|those|they|them|their|he|she|the same)\b",
    re.IGNORECASE,
)


_SURROGATE = re.compile("[\ud800-\udfff]")


def question_problem(question) -> str | None:
    """What makes `question` unreadable before its content is looked at (check_input does that), else None."""
    if question is not None and not isinstance(question, str):
        return f"The question must be text, not {type(question).__name__}: send it as a string (UTF-8)."
    if isinstance(question, str) and (bad := _SURROGATE.search(question)):
        return (
            f"Your question contains a broken character (a lone surrogate, U+{ord(bad.group()):04X}) that "
            "cannot be read. Please retype it or paste it as plain text."
        )
    return None


def retrieval_query(question: str, history: Sequence[dict] | None, turns: int = 1) -> str:
    """Fold the previous user turn(s) into the query when the question leans on them.

    "and for children?" alone retrieves nothing useful; "what is asthma? and for children?"
    does. A self-contained question (long, no follow-up cue) is searched as it is.
    """
    if not history or turns <= 0:
        return question
    previous = [str(m.get("content", "")) for m in history if m.get("role") == "user"][-turns:]
    if not previous or (len(question.split()) > 8 and not _FOLLOW_UP.search(question)):
        return question
    return " ".join([*previous, question])


class RAGPipeline:
    def __init__(
        self, config: PipelineConfig | None = None, *, embedder=None, index=None, retriever=None, generator=None
    ):
        self.config = config or PipelineConfig.from_env()
        self._embedder, self._index, self._retriever, self._generator = embedder, index, retriever, generator
        self._gate = None  # built with the retriever, for the same index
        self.index_status: IndexStatus | None = None  # where the index came from, once it is opened
        self._lock = threading.RLock()  # first use from several sessions at once builds each part once

    # --- components, loaded on first use --------------------------------------------------
    @property
    def embedder(self):
        with self._lock:
            if self._embedder is None:
                from medrag.embedder import TextEmbedder

                self._embedder = TextEmbedder.from_config(self.config)
            return self._embedder

    @property
    def index(self):
        with self._lock:
            if self._index is None:
                opened = open_configured(self.config, self.embedder)
                self._index, self.index_status = opened.index, opened.status
            return self._index

    @property
    def retriever(self):
        with self._lock:
            if self._retriever is None:
                from medrag.retriever import Retriever

                self._retriever = Retriever(self.index, self.embedder, self.config)
            return self._retriever

    @property
    def gate(self):
        with self._lock:
            if self._gate is None or self._gate.index is not self.retriever.index:
                from medrag.evidence import EvidenceGate

                self._gate = EvidenceGate(self.retriever.index, self.embedder, self.config)
            return self._gate

    @property
    def generator(self):
        with self._lock:
            if self._generator is None:
                from medrag.generator_factory import make_generator

                self._generator = make_generator(self.config, embedder=self.embedder)
            return self._generator

    @property
    def loaded_generator(self):
        """The generator if one was loaded, else None (the status page must not load one)."""
        with self._lock:
            return self._generator

    def swap(self, *, index=None, generator=None, index_status: IndexStatus | None = None) -> None:
        """Replace the index (with its `index_status`, if known) or the generator for the next
        questions; answers in flight keep theirs."""
        with self._lock:
            if index is not None:
                self._index, self._retriever, self._gate, self.index_status = index, None, None, index_status
            if generator is not None:
                self._generator = generator

    def versions(self) -> dict[str, str]:
        """What answers now: embedding model, index ("repo@commit" from the Hub, else its manifest hash), generator."""
        with self._lock:
            index, status, generator = self._index, self.index_status, self._generator
        source = status.source if status else None
        v = {"embedding_model": self.config.embedding_model}
        if index is not None:
            v["embedding_model"] = index.manifest.get("embedding_model", v["embedding_model"])
            v["index"] = source or index.manifest_hash
            if source:
                v["index_manifest"] = index.manifest_hash
        if generator is not None:
            v.update(generator.versions())
        return v

    # --- answering ------------------------------------------------------------------------
    def answer(self, question: str, request: Request | None = None, *, user_docs=None) -> Answer:
        *_, final = self.stream(question, request, user_docs=user_docs)
        return final

    def stream(self, question: str, request: Request | None = None, *, user_docs=None) -> Iterator[Answer]:
        """Yield growing partial answers to `question`, answered as `request` asks (None: the defaults).

        user_docs: the visitor's own files (medrag.session_docs.SessionDocs), searched beside the index."""
        t0 = time.perf_counter()
        cfg = self.config
        request = (request or Request()).with_defaults(cfg)
        history = request.history
        problem = question_problem(question) or check_input(question or "", cfg.max_question_chars)
        if problem:
            shown = _SURROGATE.sub("\ufffd", question) if isinstance(question, str) else ""
            yield self._finish(
                Answer(shown, problem, kind=AnswerKind.INVALID, declined=True, decline_reason="bad_input"), t0
            )
            return
        question = clean_question(question)
        flag = detect_red_flag(question, self.embedder)  # rules, then the classifier on the question's embedding
        if flag:
            urgent = URGENT_MESSAGES[flag.help]  # crisis line, poison control, or the emergency number
            yield self._finish(
                Answer(question, urgent, kind=AnswerKind.URGENT, declined=True, decline_reason="red_flag"), t0
            )
            return
        if not reads_as_english(question):  # the sources and models are English: say so, with the emergency line
            yield self._finish(
                Answer(
                    question, NOT_ENGLISH_MESSAGE, kind=AnswerKind.INVALID, declined=True, decline_reason="not_english"
                ),
                t0,
            )
            return

        with self._lock:  # pinned for this answer, even if swapped meanwhile; the versions name what is pinned
            retriever, gate, generator = self.retriever, self.gate, self.generator
            versions = self.versions()  # names the index and generator just pinned
        query = retrieval_query(question, history, cfg.history_turns)
        hits = retriever.search(query, k=request.top_k, mode=request.mode)
        if user_docs:  # merged by cosine, marked origin="upload"
            hits = user_docs.merge(query, hits, request.top_k, request.mode)
        t_retrieved = time.perf_counter()
        timings = {"retrieval": t_retrieved - t0}
        verdict = gate.check(question, hits, also=user_docs or None)
        if not verdict.ok:
            ans = Answer(
                question,
                CANNOT_ANSWER_PHRASE + verdict.explanation,
                sources=hits,
                kind=AnswerKind.DECLINED,
                declined=True,
                decline_reason=verdict.reason,
            )
            yield self._finish(ans, t0, timings, versions)
            return

        text, info = "", {}
        for delta in generator.stream(
            question, [h.chunk for h in hits], list(history) or None, info=info, **request.generation()
        ):
            if not delta:
                continue
            if not text:
                timings["first_token"] = time.perf_counter() - t0
            text += delta
            yield Answer(
                question, text, sources=hits, generator=generator.name, disclaimer=DISCLAIMER, versions=versions
            )

        versions.update(info.get("versions", {}))  # the adapter this answer was pinned to
        report = check_citations(text, hits, self.embedder)
        ans = Answer(
            question,
            report.text.strip() or CANNOT_ANSWER_PHRASE,
            sources=hits,
            citations=report.citations,
            unsupported=report.unsupported,
            support_rate=report.support_rate,
            removed_citations=report.removed,
            generator=generator.name,
            warnings=list(info.get("warnings", [])),
        )
        if CANNOT_ANSWER_PHRASE.rstrip(".") in ans.text:
            ans.kind, ans.declined, ans.decline_reason = AnswerKind.DECLINED, True, "model_declined"
        yield self._finish(ans, t0, timings, versions)

    @staticmethod
    def _finish(ans: Answer, t0: float, timings: dict | None = None, versions: dict | None = None) -> Answer:
        ans.disclaimer = DISCLAIMER
        ans.generator = ans.generator or "none"
        ans.versions = versions or {}
        ans.timings = {**(timings or {}), "total": time.perf_counter() - t0}
        ans.timings.setdefault("first_token", ans.timings["total"])
        return ans
