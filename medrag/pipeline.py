"""`RAGPipeline`: question -> safety -> retrieval -> evidence gate -> generation -> citation check.

The embedder, index, retriever and generator are properties built on first use, so importing
or constructing a pipeline is cheap and a test can hand in fakes. `stream()` yields growing
`Answer`s (text so far); the last one carries the citation check, versions and timings.
`answer()` returns that last one. The pipeline holds no per-request state, so one instance
serves every visitor of the app concurrently. `swap()` replaces the index or generator for the
next questions (medrag.refresh does this on a Hub push); an answer pins the retriever, generator
and versions it started with. An index from a Hub repo is reported as "repo@<commit sha>".

`answer`/`stream` check their own arguments: a question that is not text or holds a lone
surrogate gets an `Answer(kind="invalid")` saying what to do, like any unusable question; a
top_k, mode, temperature or max_new_tokens out of its range (below) raises InputError naming
the argument, the value and the range. The configured index folder is opened as it is: one that
exists but is no index is an error, never wiped; only the default folder (data/index) is built
from the sample corpus, so a mistyped MEDRAG_INDEX_DIR never serves the sample corpus unnoticed.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from medrag.citations import check_citations
from medrag.config import DEFAULT_INDEX_DIR, PipelineConfig
from medrag.errors import ConfigError, IndexLoadError, InputError
from medrag.language import reads_as_english
from medrag.prompts import CANNOT_ANSWER_PHRASE, DISCLAIMER, NOT_ENGLISH_MESSAGE, URGENT_MESSAGES
from medrag.retriever import MODES, evidence
from medrag.safety import check_input, clean_question, detect_red_flag
from medrag.types import Answer

log = logging.getLogger(__name__)

_FOLLOW_UP = re.compile(
    r"^(and|or|but|also|what about|how about|for|in|with|is it|are they|does it|can it)\b"
    r"|\b(it|its|this|that|these|those|they|them|their|he|she|the same)\b",
    re.IGNORECASE,
)


TOP_K = (1, 20)  # sources per answer: the app offers 1-10; past 20 the generator's 2,048 context tokens drop them
TEMPERATURE = (0.0, 2.0)  # what OpenAI-compatible servers accept; 0 is greedy decoding
MAX_NEW_TOKENS = (1, 4096)  # a thorough answer is under 1,000; Mistral's window holds 4,096 beside a full prompt
OPTIONS = ("top_k", "mode", "temperature", "max_new_tokens")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_options(overrides: Mapping, config: PipelineConfig) -> dict:
    """The top_k and mode an answer uses, and the generator settings overridden: a bad override is an
    InputError naming it, its value and what is allowed; a bad configured default, a ConfigError."""
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise InputError(f"Unknown option {unknown[0]!r}: the options are {', '.join(OPTIONS)}")
    given = {k: v for k, v in overrides.items() if v is not None}  # None: the configured default
    out = {"top_k": given.get("top_k", config.top_k), "mode": given.get("mode", config.retrieval_mode)}
    out.update({k: given[k] for k in ("temperature", "max_new_tokens") if k in given})
    checks = {
        "top_k": (lambda v: _is_int(v) and TOP_K[0] <= v <= TOP_K[1], f"an integer from {TOP_K[0]} to {TOP_K[1]}"),
        "mode": (lambda v: isinstance(v, str) and v in MODES, f"one of {', '.join(MODES)}"),
        "temperature": (
            lambda v: _is_number(v) and TEMPERATURE[0] <= v <= TEMPERATURE[1],
            f"a number from {TEMPERATURE[0]} to {TEMPERATURE[1]}",
        ),
        "max_new_tokens": (
            lambda v: _is_int(v) and MAX_NEW_TOKENS[0] <= v <= MAX_NEW_TOKENS[1],
            f"an integer from {MAX_NEW_TOKENS[0]} to {MAX_NEW_TOKENS[1]}",
        ),
    }
    for name, value in out.items():
        ok, allowed = checks[name]
        if not ok(value):
            if name in given:
                raise InputError(f"{name}={value!r:.60} is not allowed: {name} must be {allowed}")
            setting = "MEDRAG_RETRIEVAL_MODE" if name == "mode" else f"MEDRAG_{name.upper()}"
            raise ConfigError(f"{setting}={value!r:.60} is not allowed: it must be {allowed}; fix or unset it")
    return out


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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


def _check_history(history) -> None:
    if history is None:
        return
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise InputError(f"history must be a list of {{'role', 'content'}} messages, not {type(history).__name__}")
    bad = next((m for m in history if not isinstance(m, Mapping)), None)
    if bad is not None:
        raise InputError(f"history must hold {{'role', 'content'}} messages, not {type(bad).__name__}: {bad!r:.40}")


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
        self.index_source: str | None = None  # "repo@commit" when the index came from a Hub repo
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
                self._index, self.index_source = open_configured_index(self.config, self.embedder)
            return self._index

    @property
    def retriever(self):
        with self._lock:
            if self._retriever is None:
                from medrag.retriever import Retriever

                self._retriever = Retriever(self.index, self.embedder, self.config)
            return self._retriever

    @property
    def generator(self):
        with self._lock:
            if self._generator is None:
                from medrag.generator import make_generator

                self._generator = make_generator(self.config, embedder=self.embedder)
            return self._generator

    def swap(self, *, index=None, generator=None, index_source: str | None = None) -> None:
        """Replace the index (from `index_source`, "repo@commit", if any) or the generator for the next
        questions; answers in flight keep theirs."""
        with self._lock:
            if index is not None:
                self._index, self._retriever, self.index_source = index, None, index_source
            if generator is not None:
                self._generator = generator

    def versions(self) -> dict[str, str]:
        """What answers now: embedding model, index ("repo@commit" from the Hub, else its manifest hash), generator."""
        with self._lock:
            index, source, generator = self._index, self.index_source, self._generator
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
    def answer(self, question: str, history: Sequence[dict] | None = None, **overrides) -> Answer:
        *_, final = self.stream(question, history, **overrides)
        return final

    def stream(self, question: str, history: Sequence[dict] | None = None, **overrides) -> Iterator[Answer]:
        """Yield growing partial answers; overrides: top_k, mode, temperature, max_new_tokens."""
        t0 = time.perf_counter()
        cfg = self.config
        options = check_options(overrides, cfg)
        _check_history(history)
        problem = question_problem(question) or check_input(question or "", cfg.max_question_chars)
        if problem:
            shown = _SURROGATE.sub("\ufffd", question) if isinstance(question, str) else ""
            yield self._finish(Answer(shown, problem, kind="invalid", declined=True, decline_reason="bad_input"), t0)
            return
        question = clean_question(question)
        flag = detect_red_flag(question, self.embedder)  # rules, then the classifier on the question's embedding
        if flag:
            urgent = URGENT_MESSAGES[flag.help]  # crisis line, poison control, or the emergency number
            yield self._finish(Answer(question, urgent, kind="urgent", declined=True, decline_reason="red_flag"), t0)
            return
        if not reads_as_english(question):  # the sources and models are English: say so, with the emergency line
            yield self._finish(
                Answer(question, NOT_ENGLISH_MESSAGE, kind="invalid", declined=True, decline_reason="not_english"), t0
            )
            return

        with self._lock:  # pinned for this answer, even if swapped meanwhile; the versions name what is pinned
            retriever, generator = self.retriever, self.generator
            versions = self.versions()  # names the index and generator just pinned
        query = retrieval_query(question, history, cfg.history_turns)
        hits = retriever.search(query, k=options["top_k"], mode=options["mode"])
        t_retrieved = time.perf_counter()
        timings = {"retrieval": t_retrieved - t0}
        common = getattr(self.embedder, "is_common_word", None)
        unknown = retriever.index.unknown_words(question, common) if cfg.decline_unknown_words else []
        if evidence(hits) < cfg.min_evidence or unknown:
            why = f" The sources never mention: {', '.join(unknown)}." if unknown else ""
            ans = Answer(
                question,
                CANNOT_ANSWER_PHRASE + why,
                sources=hits,
                kind="declined",
                declined=True,
                decline_reason="weak_evidence",
            )
            yield self._finish(ans, t0, timings, versions)
            return

        text, info = "", {}
        gen_kwargs = {k: options[k] for k in ("temperature", "max_new_tokens") if k in options}
        for delta in generator.stream(question, [h.chunk for h in hits], history, info=info, **gen_kwargs):
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
            ans.kind, ans.declined, ans.decline_reason = "declined", True, "model_declined"
        yield self._finish(ans, t0, timings, versions)

    @staticmethod
    def _finish(ans: Answer, t0: float, timings: dict | None = None, versions: dict | None = None) -> Answer:
        ans.disclaimer = DISCLAIMER
        ans.generator = ans.generator or "none"
        ans.versions = versions or {}
        ans.timings = {**(timings or {}), "total": time.perf_counter() - t0}
        ans.timings.setdefault("first_token", ans.timings["total"])
        return ans


def load_configured_index(config: PipelineConfig, embedder=None):
    """The index the configuration names: a Hub repo, a folder, or the built-in sample corpus."""
    return open_configured_index(config, embedder)[0]


def open_configured_index(config: PipelineConfig, embedder=None):
    """The configured index and where it came from: "repo@commit" for a Hub repo, else None."""
    from medrag.indexes import open_index

    if config.index_engine == "milvus":
        return open_index(config.milvus_uri, config), f"milvus:{config.milvus_collection}"
    if config.index_repo:
        return load_hub_index(config.index_repo, config.index_revision, config)
    path = Path(config.index_dir)
    if not (path / "manifest.json").exists():
        build = f"'python index_builder.py --docs YOUR_DOCUMENTS --out {path}'"
        sample = "or unset MEDRAG_INDEX_DIR to serve the built-in sample corpus"
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexLoadError(
                f"The index folder {path} (MEDRAG_INDEX_DIR) exists but holds no MedRAG index (no manifest.json); "
                f"nothing in it was changed. Point MEDRAG_INDEX_DIR at an index folder, build one with {build}, "
                f"{sample}"
            )
        if path.resolve() != DEFAULT_INDEX_DIR.resolve():
            raise IndexLoadError(f"No index at {path} (MEDRAG_INDEX_DIR): build it with {build}, {sample}")
        if Path(config.sample_docs).is_dir():
            from medrag.build import ensure_index

            log.info("no index at %s: building it from the sample corpus %s", path, config.sample_docs)
            ensure_index([config.sample_docs], path, config, embedder=embedder)
    return open_index(path, config), None


def load_hub_index(repo: str, revision: str, config: PipelineConfig):
    """The index in a Hub dataset repo at `revision`, fully loaded and checked, and "repo@commit".

    Errors name the repo and commit and what to do (the cache path inside the HF cache is no use to a reader).
    """
    from medrag.embedder import same_model
    from medrag.hub import download_index
    from medrag.index import VectorIndex
    from medrag.indexes import open_index

    found = download_index(repo, revision)
    source = f"{repo}@{found.commit}"
    try:
        manifest = VectorIndex.read_manifest(found.path)
        model, dim = manifest.get("embedding_model", "?"), manifest.get("dim")
        if same_model(str(model), config.embedding_model) and dim == config.embedding_dim:
            return open_index(found.path, config, verify=True), source  # a download is hashed once
    except IndexLoadError as e:
        raise IndexLoadError(
            f"The index in dataset repo {source} cannot be loaded: {e}; push it again with "
            f"'python index_builder.py --docs ... --push-to-hub {repo}'"
        ) from e
    raise IndexLoadError(
        f"The index in dataset repo {source} was built with {model} (dim {dim}), but this app embeds questions "
        f"with {config.embedding_model} (dim {config.embedding_dim}): push an index built with "
        f"{config.embedding_model} ('python index_builder.py --docs ... --push-to-hub {repo}'), set "
        f"MEDRAG_EMBEDDING_MODEL={model}, or pin MEDRAG_INDEX_REVISION to a commit that matches"
    )
