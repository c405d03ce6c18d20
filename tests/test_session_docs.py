"""A visitor's own files: each bad upload gets its message and the session keeps working; a good one is cited.

The main index is a few sample-like passages written here; the visitor's files hold a made-up
medicine ("zorvatide") the index never mentions, so only an uploaded passage can answer about it.
The real encoder (tests/conftest.py) and the extractive generator answer, as on a CPU Space.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pdfs import make_pdf

from medrag import session_docs
from medrag.build import build_index
from medrag.config import PipelineConfig
from medrag.errors import InputError
from medrag.index import VectorIndex
from medrag.pipeline import RAGPipeline
from medrag.request import Request
from medrag.session_docs import MAX_FILES, SessionDocs, UploadResult
from medrag.ui import YOUR_DOCUMENT, sources_html

INDEX_DOCS = {
    "asthma.md": "# Asthma\n\nAsthma is a long-term condition of the airways. It causes wheezing, coughing and "
    "shortness of breath. An inhaler opens the airways during an attack.\n",
    "flu.md": "# Flu\n\nThe flu is an infection caused by influenza viruses. It brings fever, aches and tiredness. "
    "A yearly vaccine lowers the risk of getting it.\n",
    "sleep.md": "# Sleep\n\nAdults need seven or more hours of sleep a night. A regular bedtime helps.\n",
}
LEAFLET = [
    "Zorvatide patient leaflet",
    "Zorvatide is a made-up medicine used only in these tests.",
    "Keep zorvatide tablets in their blister pack below 25 degrees Celsius.",
    "Zorvatide tablets should be kept away from moisture and direct sunlight.",
]
QUESTION = "How should zorvatide tablets be stored?"


def leaflet(ext: str) -> bytes:
    title, *lines = LEAFLET
    if ext == ".pdf":
        return make_pdf([lines], title)
    if ext in (".html", ".htm"):
        body = "".join(f"<p>{line}</p>" for line in lines)
        return f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode()
    if ext == ".md":
        return ("# " + title + "\n\n" + " ".join(lines) + "\n").encode()
    return (title + "\n\n" + " ".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, embedder, cache_dir):
    docs = tmp_path_factory.mktemp("docs")
    for name, text in INDEX_DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    out = tmp_path_factory.mktemp("index") / "index"
    config = PipelineConfig(index_dir=str(out), generator="extractive", cache_dir=str(cache_dir))
    build_index([docs], out, config, embedder=embedder)
    return RAGPipeline(config, embedder=embedder, index=VectorIndex.load(out))


def upload(tmp_path: Path, name: str, content: bytes) -> Path:
    folder = tmp_path / f"upload-{len(list(tmp_path.iterdir()))}"  # gradio keeps each upload in its own folder
    folder.mkdir()
    (folder / name).write_bytes(content)
    return folder / name


@pytest.mark.parametrize("ext", [".pdf", ".html", ".htm", ".md", ".txt"])
def test_an_uploaded_file_is_cited_and_marked_as_yours(pipeline, embedder, tmp_path, ext):
    docs = SessionDocs(embedder, pipeline.config)
    result = docs.add_file(upload(tmp_path, "leaflet" + ext, leaflet(ext)), "leaflet" + ext)
    assert result.chunks >= 1 and result.pages == (1 if ext == ".pdf" else None)
    assert "leaflet" + ext in result.message

    without = pipeline.answer(QUESTION)
    assert without.declined  # the index never mentions zorvatide

    answer = pipeline.answer(QUESTION, user_docs=docs)
    assert not answer.declined, answer.text
    cited = [answer.sources[n - 1] for n in answer.cited_numbers]
    assert cited and all(h.origin == "upload" for h in cited), answer.text
    assert "blister pack" in answer.text or "moisture" in answer.text
    assert cited[0].chunk.source == "leaflet" + ext and cited[0].chunk.title == "Zorvatide patient leaflet"
    assert f'<span class="badge your-doc">{YOUR_DOCUMENT}</span>' in sources_html(answer)


def test_uploaded_passages_merge_with_the_index_by_cosine(pipeline, embedder, tmp_path):
    docs = SessionDocs(embedder, pipeline.config)
    docs.add_file(upload(tmp_path, "leaflet.md", leaflet(".md")), "leaflet.md")
    answer = pipeline.answer("What causes asthma wheezing?", Request(top_k=3), user_docs=docs)
    assert [h.rank for h in answer.sources] == [1, 2, 3]
    assert (
        answer.sources[0].origin == "index" and answer.sources[0].chunk.doc_id == "asthma"
    )  # the leaflet is off topic
    mine = pipeline.answer(QUESTION, Request(top_k=3), user_docs=docs)
    assert mine.sources[0].origin == "upload"


BAD = {
    "empty.txt": (b"", "empty.txt is empty (0 bytes)"),
    "notes.docx": (
        b"PK\x03\x04 word",
        "notes.docx: .docx files are not supported; upload a .pdf, .html, .htm, .md, .txt",
    ),
    "noext": (b"text", "noext: a file without an extension files are not supported"),
    "scan.pdf": (make_pdf([[], []]), "scan.pdf: this PDF has no text layer (a scan?)"),
    "broken.pdf": (b"%PDF-1.4\ngarbage", "broken.pdf: this PDF cannot be read (damaged or not a PDF"),
    "blank.md": (b"   \n\n  ", "blank.md: no text in this file"),
    "latin1.txt": ("Caf\xe9 notes".encode("latin-1"), "latin1.txt: not valid UTF-8 (byte 0xe9 at offset 3)"),
    "image.txt": (b"\x89PNG\r\n\x1a\n\x00\x00", "image.txt: this is not a text file (it holds binary data)"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_upload_gets_its_message_and_the_session_keeps_working(embedder, tmp_path, name):
    docs = SessionDocs(embedder)
    docs.add_file(upload(tmp_path, "leaflet.txt", leaflet(".txt")), "leaflet.txt")
    content, message = BAD[name]
    with pytest.raises(InputError) as e:
        docs.add_file(upload(tmp_path, name, content), name)
    assert str(e.value).startswith(message), str(e.value)
    assert [f.name for f in docs.files] == ["leaflet.txt"]
    assert docs.search(QUESTION, 1)[0].chunk.source == "leaflet.txt"
    docs.add_file(upload(tmp_path, "again.md", leaflet(".md")), "again.md")  # and takes the next good file
    assert len(docs.files) == 2


def test_too_large_too_many_pages_too_much_text_and_too_many_files(embedder, tmp_path, monkeypatch):
    docs = SessionDocs(embedder)
    big = upload(tmp_path, "big.txt", b"a" * (session_docs.MAX_BYTES + 1))
    with pytest.raises(InputError, match=r"^big.txt is too large: 10.0 MB, the limit is 10 MB per file"):
        docs.add_file(big, "big.txt")
    long_pdf = make_pdf([["A page about zorvatide."]] * (session_docs.MAX_PAGES + 1))
    with pytest.raises(InputError, match=r"^long.pdf: 51 pages, the limit is 50"):
        docs.add_file(upload(tmp_path, "long.pdf", long_pdf), "long.pdf")
    wordy = ("Zorvatide is kept dry. " * 10_000).encode()  # 230,000 characters in 230 kB
    with pytest.raises(InputError, match=r"^wordy.txt holds 229,999 characters of text, the limit is 200,000"):
        docs.add_file(upload(tmp_path, "wordy.txt", wordy), "wordy.txt")
    for i in range(MAX_FILES):
        docs.add_file(upload(tmp_path, f"f{i}.txt", leaflet(".txt")), f"f{i}.txt")
        with pytest.raises(InputError, match=rf"^f{i}.txt is already added"):
            docs.add_file(upload(tmp_path, f"f{i}.txt", leaflet(".txt")), f"f{i}.txt")
    with pytest.raises(InputError, match=r"^one-more.txt: this session already holds 3 files, the limit"):
        docs.add_file(upload(tmp_path, "one-more.txt", leaflet(".txt")), "one-more.txt")
    docs.clear()
    assert len(docs) == 0 and docs.files == [] and docs.search(QUESTION, 3) == []


def test_an_encrypted_pdf_and_a_link_are_refused(embedder, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    import io

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf([LEAFLET]))))
    writer.encrypt(user_password="secret", algorithm="RC4-128")  # RC4: pypdf needs no cryptography package for it
    buf = io.BytesIO()
    writer.write(buf)
    docs = SessionDocs(embedder)
    with pytest.raises(InputError, match=r"^locked.pdf: this PDF is encrypted \(password-protected\)"):
        docs.add_file(upload(tmp_path, "locked.pdf", buf.getvalue()), "locked.pdf")
    secret = upload(tmp_path, "secret.txt", b"Not for visitors.")
    link = tmp_path / "link.txt"
    os.symlink(secret, link)
    with pytest.raises(InputError, match=r"^link.txt: not a regular file"):
        docs.add_file(link, "link.txt")


def test_sessions_do_not_see_each_other(embedder, tmp_path):
    mine, theirs = SessionDocs(embedder), SessionDocs(embedder)
    mine.add_file(upload(tmp_path, "leaflet.txt", leaflet(".txt")), "leaflet.txt")
    assert mine.search(QUESTION, 3) and theirs.search(QUESTION, 3) == []
    assert not theirs  # empty: the pipeline skips it


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(content=b"\x01\n\x01", ext=".txt")  # found by this test: text without a word once broke BM25
@given(
    content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))),
    ext=st.sampled_from([".pdf", ".html", ".htm", ".md", ".txt", ".exe", ""]),
)
def test_odd_content_gives_a_result_or_an_input_error(embedder, tmp_path, content, ext):
    docs = SessionDocs(embedder)
    try:
        result = docs.add_file(upload(tmp_path, "odd" + ext, content), "odd" + ext)
    except InputError as e:
        assert str(e).startswith("odd"), str(e)
        assert docs.files == []
    else:
        assert isinstance(result, UploadResult) and result.chunks == len(docs) >= 1
