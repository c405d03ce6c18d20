"""Training data that teaches the app's behaviour (RAFT-style): a question, the sources the app's own
retriever finds for it, and the answer the app should give from them: cited sentences, or the
cannot-answer phrase when the passage that answers is not among the sources.

    python -m medrag.sft_data --index DIR --questions ../shared/data/sft_train.jsonl \\
        --exclude ../shared/data/eval_dev.jsonl ../shared/data/eval_pubmedqa_dev.jsonl data/eval/*.jsonl \\
        [--include-eval ../shared/data/eval_dev.jsonl ../shared/data/eval_pubmedqa_dev.jsonl] \\
        [--tokenizer mistralai/Mistral-7B-Instruct-v0.2] [--out outputs/sft-data] [--push-to-hub USER/medrag-sft]

Each question (`id, question, gold_doc_ids, source`; PubMedQA lines add `answer` and `final_decision`)
becomes at most one example:

1. Sources: `Retriever.search(question, k=depth)` over a medrag index, hybrid as the app ranks. The
   context is the top `top_k` hits in retrieval order; a gold chunk ranked lower takes the last
   place, so the gold is there among hard distractors. None within `depth`: dropped.
2. Budget: `medrag.prompts.fit_sources` within `context_tokens`, counted with the base model's
   tokenizer, as the generator fits them; lowest-ranked distractors go first so the gold stays.
3. Target, "cited": the gold-passage sentences the app's extractive generator selects for the
   question (`ExtractiveGenerator.select`), each followed by the [n] of its passage; for a question
   with `final_decision` (PubMedQA), its conclusion led by "Yes:", "No:" or "Maybe:", each sentence
   cited to the gold passage closest to it (embedding cosine).
4. Target, "declined" (a seeded `decline_share` of the questions): every chunk of the gold
   documents leaves the context, and so do documents with the same `focus` and `qtype` (MedQuAD
   has one topic from several NIH sites); the next hits fill it; the target is CANNOT_ANSWER_PHRASE.
5. Exclusion: a question whose text (case and punctuation aside) or any of whose gold documents is
   in an evaluation file (`--exclude`) is dropped, and so is a repeated question.

The output folder (written whole or not at all) holds `train.jsonl`, `manifest.json` (settings,
counts, what was dropped and why), the dataset card `README.md`, and under `eval/` the evaluation
files named by `--include-eval`, so the notebook needs nothing but the Hub repo.

Shortcuts on purpose: targets are extractive (quotes, like the CPU generator's answers), so the
adapter learns the format and the grounding, not paraphrase; a declined example can still be
answerable from another page that says the same under another topic name.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medrag.chunking import split_sentences
from medrag.config import BASE_MODEL_ID, PipelineConfig
from medrag.documents import jsonl_lines
from medrag.errors import DocumentError, MedRAGError
from medrag.prompts import CANNOT_ANSWER_PHRASE, fit_sources
from medrag.types import Chunk

FORMAT = "medrag-sft/1"
TRAIN_FILE = "train.jsonl"
_DECISION_LEAD = re.compile(r"^\s*(yes|no|maybe)\b[\s.,:;!-]*", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script


@dataclass
class Settings:
    top_k: int = PipelineConfig.top_k  # the sources the app shows and the generator reads
    depth: int = PipelineConfig.candidate_k  # how deep a gold chunk may rank and still be brought in
    context_tokens: int = PipelineConfig.context_tokens  # the generator's source budget
    decline_share: float = 0.18  # ~1 in 5 examples teaches the decline; more makes the adapter shy
    max_sentences: int = 4  # the extractive generator's answer length: short answers a reader can check
    mode: str = "hybrid"  # the app's default retrieval mode
    seed: int = 42  # which questions become declines, reproducibly


@dataclass(frozen=True)
class SourceQuestion:
    id: str
    question: str
    gold_doc_ids: tuple[str, ...]
    source: str = ""
    answer: str | None = None  # PubMedQA: the conclusion ("Yes. ..."), cited to its abstract
    final_decision: str | None = None  # yes | no | maybe, for PubMedQA lines


@dataclass
class Exclusions:
    questions: set[str] = field(default_factory=set)  # normalised question texts
    doc_ids: set[str] = field(default_factory=set)
    files: list[dict[str, Any]] = field(default_factory=list)  # path, sha256, counts: for the manifest


def normalise_question(text: str) -> str:
    """Case-folded words only: "What is (are) Asthma ?" and "what is are asthma" are one question."""
    return " ".join(_WORD.findall(text.casefold()))


def load_source_questions(path: str | Path, limit: int | None = None) -> list[SourceQuestion]:
    out = []
    hint = "pass a jsonl of id, question, gold_doc_ids (sft_train.jsonl, eval-style question files)"
    for n, line in jsonl_lines(path, "questions file", hint, limit):
        try:
            d = json.loads(line)
            q = SourceQuestion(
                id=str(d.get("id", f"{Path(path).stem}:{n}")),
                question=str(d["question"]),
                gold_doc_ids=tuple(str(g) for g in d.get("gold_doc_ids") or ()),
                source=str(d.get("source", "")),
                answer=d.get("answer") if d.get("final_decision") else None,
                final_decision=(d.get("final_decision") or None) and str(d["final_decision"]).lower(),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise DocumentError(f"{path}:{n}: not a question line ({e}): expected id, question, gold_doc_ids") from None
        out.append(q)
    return out


def questions_from_index(chunks: Iterable[Chunk]) -> list[SourceQuestion]:
    """The questions a corpus carries itself (MedQuAD XML: each answer's question in its metadata)."""
    seen: dict[str, SourceQuestion] = {}
    for c in chunks:
        q = c.metadata.get("question")
        if q and c.doc_id not in seen:
            seen[c.doc_id] = SourceQuestion(f"q:{c.doc_id}", str(q), (c.doc_id,), c.source)
    return list(seen.values())


def load_exclusions(paths: Sequence[str | Path]) -> Exclusions:
    """Questions and gold documents of evaluation files (eval_dev, PubMedQA-style, data/eval/*.jsonl)."""
    ex = Exclusions()
    for path in paths:
        n_questions = n_docs = 0
        for n, line in jsonl_lines(path, "evaluation file", "pass evaluation jsonl files to --exclude"):
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise DocumentError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if d.get("question"):
                ex.questions.add(normalise_question(str(d["question"])))
                n_questions += 1
            docs = list(d.get("gold_doc_ids") or [])
            if not docs and "contexts" in d and d.get("id"):  # a PubMedQA line: its id names its abstract
                docs = [str(d["id"])]
            ex.doc_ids.update(map(str, docs))
            n_docs += len(docs)
        ex.files.append(
            {"path": Path(path).name, "sha256": _sha256(path), "questions": n_questions, "gold_docs": n_docs}
        )
    return ex


# --- one example ---------------------------------------------------------------------------------


def build_examples(
    questions: Sequence[SourceQuestion],
    retriever,
    embedder,
    count_tokens: Callable[[str], int],
    settings: Settings | None = None,
    exclusions: Exclusions | None = None,
    batch_size: int = 256,  # queries per retrieval call: one embedding and one FAISS call each
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The examples (train.jsonl rows) and the counts: kinds and kinds by source group, dropped by reason."""
    from medrag.extractive import ExtractiveGenerator

    s = settings or Settings()
    ex = exclusions or Exclusions()
    extractive = ExtractiveGenerator(embedder, max_sentences=s.max_sentences)
    dropped: Counter[str] = Counter()
    kept_questions, seen = [], set()
    for q in questions:
        key = normalise_question(q.question)
        reason = (
            "no_gold_doc_ids"
            if not q.gold_doc_ids
            else "in_eval_question"
            if key in ex.questions
            else "in_eval_gold_doc"
            if ex.doc_ids.intersection(q.gold_doc_ids)
            else "duplicate"
            if (key, q.gold_doc_ids) in seen
            else None
        )
        if reason:
            dropped[reason] += 1
            continue
        seen.add((key, q.gold_doc_ids))
        kept_questions.append(q)
    rows: list[dict[str, Any]] = []
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for start in range(0, len(kept_questions), batch_size):
        batch = kept_questions[start : start + batch_size]
        results = retriever.search_batch([q.question for q in batch], k=s.depth, mode=s.mode)
        for q, hits in zip(batch, results, strict=True):
            declined = random.Random(f"{s.seed}:{q.id}").random() < s.decline_share
            chunks = [h.chunk for h in hits]
            row, reason = (_declined if declined else _cited)(q, chunks, extractive, embedder, count_tokens, s)
            if row is None:
                dropped[reason] += 1
                continue
            rows.append(row)
            by_source[_group(q.source)][row["kind"]] += 1
        if progress:
            progress(min(start + batch_size, len(kept_questions)), len(kept_questions))
    kinds = Counter(r["kind"] for r in rows)
    counts = {
        "questions": len(questions),
        "examples": len(rows),
        "kinds": dict(sorted(kinds.items())),
        "by_source": {g: dict(sorted(c.items())) for g, c in sorted(by_source.items())},
        "dropped": dict(sorted(dropped.items())),
    }
    return rows, counts


def _cited(q, chunks, extractive, embedder, count_tokens, s: Settings):
    gold = set(q.gold_doc_ids)
    first_gold = next((c for c in chunks if c.doc_id in gold), None)
    if first_gold is None:
        return None, "gold_not_retrieved"
    context = chunks[: s.top_k]
    if not any(c.doc_id in gold for c in context):
        context = [*context[: s.top_k - 1], first_gold]  # ranked lower: it takes the last place
    sources = _fit_keeping_gold(context, gold, count_tokens, s.context_tokens)
    if sources is None:
        return None, "gold_over_budget"
    numbered = [(n, c) for n, c in enumerate(sources, 1) if c.doc_id in gold]
    if q.final_decision and q.answer:
        target = _conclusion_target(q, numbered, embedder)
    else:
        picked = extractive.select(q.question, [c for _, c in numbered])
        target = " ".join(f"{sentence} [{numbered[k - 1][0]}]" for k, sentence, _ in picked)
    if not target:
        return None, "no_answer_sentence"
    return _row(q, sources, target, "cited", numbered[0][0]), None


def _declined(q, chunks, extractive, embedder, count_tokens, s: Settings):
    gold = set(q.gold_doc_ids)
    same = {_topic(c) for c in chunks if c.doc_id in gold} - {None}
    rest = [c for c in chunks if c.doc_id not in gold and _topic(c) not in same]
    sources = fit_sources(rest[: s.top_k], count_tokens, s.context_tokens)
    if not sources:
        return None, "no_distractors"
    return _row(q, sources, CANNOT_ANSWER_PHRASE, "declined", None), None


def _topic(c: Chunk) -> tuple[str, str] | None:
    focus, qtype = c.metadata.get("focus"), c.metadata.get("qtype")
    return (str(focus).lower(), str(qtype).lower()) if focus and qtype else None


def _fit_keeping_gold(context: list[Chunk], gold: set[str], count_tokens, budget: int) -> list[Chunk] | None:
    """`fit_sources`, dropping the lowest-ranked distractor first until a gold chunk survives whole."""
    context = list(context)
    while True:
        kept = fit_sources(context, count_tokens, budget)
        if any(c.doc_id in gold and c in context for c in kept):
            return kept
        distractors = [i for i, c in enumerate(context) if c.doc_id not in gold]
        if not distractors:
            return None
        del context[distractors[-1]]


def _conclusion_target(q: SourceQuestion, numbered: list[tuple[int, Chunk]], embedder) -> str:
    """ "Yes: sentence [n] sentence [n]": the conclusion, each sentence cited to its closest gold passage."""
    text = _DECISION_LEAD.sub("", q.answer or "").strip()
    sentences = [text[a:b].strip() for a, b in split_sentences(text) if text[a:b].strip()]
    if not sentences:
        return ""
    if len(numbered) == 1:
        cite = [numbered[0][0]] * len(sentences)
    else:
        vecs = np.asarray(embedder.embed([*sentences, *(c.text for _, c in numbered)]), dtype=np.float32)
        sims = vecs[: len(sentences)] @ vecs[len(sentences) :].T
        cite = [numbered[int(j)][0] for j in sims.argmax(axis=1)]
    body = " ".join(f"{s} [{n}]" for s, n in zip(sentences, cite, strict=True))
    return f"{q.final_decision.capitalize()}: {body}"


def _row(q: SourceQuestion, sources: list[Chunk], answer: str, kind: str, gold_passage: int | None) -> dict:
    return {
        "id": q.id,
        "question": q.question,
        "sources": [{"title": c.title, "text": c.text, "doc_id": c.doc_id, "chunk_id": c.id} for c in sources],
        "answer": answer,
        "kind": kind,
        "gold_passage": gold_passage,
        "gold_doc_ids": list(q.gold_doc_ids),
        "source": q.source,
    }


def _group(source: str) -> str:
    return re.split(r"[/-]", source or "unknown", maxsplit=1)[0] or "unknown"


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- tokenizer -----------------------------------------------------------------------------------


def load_count_tokenizer(name: str):
    """The base model's tokenizer, to count source tokens as the generator does.

    `name`: a Hub id or folder (AutoTokenizer), or a SentencePiece `tokenizer.model` file, turned into
    a fast tokenizer with the protobuf reader transformers ships. Offline, the latter is the way
    to the real Mistral-7B tokenizer: the same file (sha256 dadfd56d766715c6...) is inside the
    mistral-common wheel on PyPI as `mistral_common/data/tokenizer.model.v1`.
    """
    if Path(name).is_file():
        from transformers import LlamaTokenizer
        from transformers.tokenization_utils_base import generate_merges
        from transformers.utils import sentencepiece_model_pb2_new as pb

        proto = pb.ModelProto()
        proto.ParseFromString(Path(name).read_bytes())
        vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
        return LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab), legacy=False, add_prefix_space=True)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise MedRAGError(
            f"Could not load the tokenizer {name!r} ({e}): give a Hub id you can reach, a local model folder, "
            "or the base model's tokenizer.model file"
        ) from e


def token_counter(tokenizer) -> Callable[[str], int]:
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # as build_prompt counts


# --- the folder ----------------------------------------------------------------------------------


def write_folder(out: str | Path, rows: list[dict], manifest: dict, card: str, include: Sequence[str | Path] = ()):
    """train.jsonl, manifest.json, README.md and eval/ copies, written beside `out` and renamed into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with open(work / TRAIN_FILE, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (work / "README.md").write_text(card, encoding="utf-8")
        for path in include:
            (work / "eval").mkdir(exist_ok=True)
            shutil.copyfile(path, work / "eval" / Path(path).name)
        old = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
        if old:
            out.rename(old)
        work.rename(out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def make_manifest(counts: dict, settings: Settings, index, tokenizer_name: str, questions_files, exclusions, include):
    from medrag import __version__

    return {
        "format": FORMAT,
        **counts,
        "settings": dataclasses.asdict(settings),
        "tokenizer": tokenizer_name,
        "index": {
            "manifest_hash": index.manifest_hash,
            "corpus_sha256": index.manifest.get("corpus_sha256"),
            "embedding_model": index.manifest.get("embedding_model"),
            "chunks": len(index),
            "documents": index.manifest.get("counts", {}).get("documents") or index.manifest.get("documents"),
        },
        "sources": sorted({g for g in counts["by_source"]}),
        "questions_files": [{"path": Path(p).name, "sha256": _sha256(p)} for p in questions_files],
        "excluded": exclusions.files,
        "eval_files": [f"eval/{Path(p).name}" for p in include],
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "medrag": __version__,
    }


# --- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medrag.sft_data", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="index folder (built from --corpus when given) or Hub dataset repo")
    p.add_argument("--corpus", nargs="+", help="documents to index into --index first (skipped when up to date)")
    p.add_argument("--questions", nargs="+", default=[], help="question files with gold_doc_ids")
    p.add_argument("--questions-from-index", action="store_true", help="also the questions the documents carry")
    p.add_argument("--exclude", nargs="+", default=[], help="evaluation files: their questions and gold docs stay out")
    p.add_argument("--include-eval", nargs="+", default=[], help="files copied to eval/ for the notebook")
    p.add_argument("--tokenizer", default=BASE_MODEL_ID, help="base model id or folder, or its tokenizer.model file")
    p.add_argument("--out", default="outputs/sft-data", help="output folder (default: %(default)s)")
    p.add_argument("--limit", type=int, help="the first N questions of each file only")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the folder as a Hub dataset repo")
    p.add_argument("--private", action="store_true")
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)), default=None)
    args = p.parse_args(argv)
    try:
        return _run(args)
    except MedRAGError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from medrag import cards, hub
    from medrag.embedder import TextEmbedder
    from medrag.index import VectorIndex
    from medrag.retriever import Retriever

    cfg = PipelineConfig.from_env()
    settings = Settings(**{f.name: v for f in dataclasses.fields(Settings) if (v := getattr(args, f.name)) is not None})
    if not args.questions and not args.questions_from_index:
        raise MedRAGError("No questions: pass --questions FILE... or --questions-from-index")
    embedder = TextEmbedder.from_config(cfg)
    index_dir = Path(args.index)
    if args.corpus:
        from medrag.build import ensure_index

        ensure_index(args.corpus, index_dir, cfg, embedder=embedder)
    elif not index_dir.is_dir():
        index_dir = hub.download_index(args.index).path
    index = VectorIndex.load(index_dir, expect_model=cfg.embedding_model, expect_dim=cfg.embedding_dim)
    questions = [q for path in args.questions for q in load_source_questions(path, args.limit)]
    if args.questions_from_index:
        questions += questions_from_index(index.chunks)[: args.limit]
    exclusions = load_exclusions(args.exclude)
    count = token_counter(load_count_tokenizer(args.tokenizer))

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} questions", end="", file=sys.stderr, flush=True)

    rows, counts = build_examples(
        questions, Retriever(index, embedder, cfg), embedder, count, settings, exclusions, progress=progress
    )
    print(file=sys.stderr)
    manifest = make_manifest(counts, settings, index, args.tokenizer, args.questions, exclusions, args.include_eval)
    card = cards.sft_card(manifest)
    out = write_folder(args.out, rows, manifest, card, args.include_eval)
    summary = {"out": str(out), **counts}
    if args.push_to_hub:
        summary["pushed"] = hub.push_dataset(out, args.push_to_hub, card=card, private=args.private)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
