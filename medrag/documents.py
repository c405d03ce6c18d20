"""Document loaders: files and folders of .txt, .md, .pdf, .html, .jsonl and MedQuAD .xml -> Documents.

`load_documents(paths)` never stops at a bad file: an unreadable, empty, binary, mis-encoded or
corrupt file is skipped and listed in `LoadResult.skipped` with its reason; `strict=True` raises
`DocumentError` at the first problem instead. `corpus_sha256` fingerprints a loaded corpus.

Shortcuts taken on purpose:
- Text formats must be UTF-8: a file that is not is reported, never decoded by guessing.
- Markdown front matter is flat `key: value` lines, not YAML; markdown syntax stays in the text.
- HTML is reduced to its visible text with the stdlib parser; no readability heuristics.
- PDF text is what pypdf extracts; a scanned PDF (no text layer) is skipped, not OCR'd.
- Only MedQuAD's XML layout is understood; any other XML is skipped with a reason.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medrag.errors import DocumentError, missing_dependency
from medrag.types import Document

Report = Callable[[str, str], None]  # report(where, reason): skip it, or raise in strict mode
TITLE_LINE_CHARS = 120  # a .txt first line shorter than this reads as a title, longer as prose


@dataclass
class SkippedFile:
    path: str  # the file as given (plus ":line" for one bad line of a .jsonl file)
    reason: str


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


class _Skip(Exception):
    """The whole file cannot be used; the message is the reason."""


def load_documents(paths: Sequence[str | Path], strict: bool = False) -> LoadResult:
    """Load every supported file in `paths` (files, or folders read recursively in sorted order)."""
    result, first_seen = LoadResult(), {}

    def report(where: str, reason: str) -> None:
        if strict:
            raise DocumentError(f"{where}: {reason} (fix or remove it, or load without strict mode to skip it)")
        result.skipped.append(SkippedFile(where, reason))

    for given in paths:
        for path, doc_id, source in _files(Path(given), report):
            loader = LOADERS.get(path.suffix.lower())
            if loader is None:
                report(str(path), f"unsupported file type {path.suffix or '(no extension)'} (supported: {SUPPORTED})")
                continue
            try:
                docs = loader(path.read_bytes(), path, doc_id, source, report)
            except DocumentError:
                raise
            except Exception as e:  # a bad file must never crash a load
                report(str(path), _reason(e))
                continue
            for doc in docs:
                if doc.id in first_seen:
                    report(str(path), f"duplicate document id {doc.id!r} (first loaded from {first_seen[doc.id]})")
                else:
                    first_seen[doc.id] = str(path)
                    result.documents.append(doc)
    return result


def _reason(error: Exception) -> str:
    if isinstance(error, _Skip):
        return str(error)
    if isinstance(error, OSError):
        return f"cannot read file: {error.strerror or error}"
    return f"could not be loaded ({type(error).__name__}: {error})"


def _files(given: Path, report: Report) -> Iterator[tuple[Path, str, str]]:
    """(path, document id, source) per file: ids are folder-relative posix paths without extension."""
    if given.is_file():
        yield given, given.stem, given.name
        return
    if not given.is_dir():
        report(str(given), "no such file or folder")
        return
    found = []
    for root, dirs, files in os.walk(
        given, onerror=lambda e: report(str(e.filename), f"cannot read folder: {e.strerror}")
    ):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, f) for f in files if not f.startswith(".")]
    for path in sorted(found, key=lambda p: p.relative_to(given).as_posix()):
        rel = path.relative_to(given)
        yield path, rel.with_suffix("").as_posix(), rel.as_posix()


def normalise(text: str) -> str:
    """\\r\\n -> \\n, NFC, no trailing spaces, at most one blank line in a row, stripped."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r"[ \t\f\v]+$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _Skip("UTF-16 text: re-save the file as UTF-8")
    if b"\x00" in data:
        raise _Skip("binary file (NUL bytes in a text format)")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise _Skip(_utf8_reason(data, e)) from None


def _utf8_reason(data: bytes, e: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}): re-save the file as UTF-8"


def _humanise(stem: str) -> str:
    words = " ".join(re.sub(r"[_\-]+", " ", stem).split())
    return words[:1].upper() + words[1:]


def _doc(doc_id: str, title: str, text: str, url: str = "", source: str = "", metadata: dict | None = None) -> Document:
    text = normalise(text)
    if not text:
        raise _Skip("empty: no text left after extraction")
    return Document(doc_id, " ".join(title.split()), text, url, source, metadata or {})


def _load_txt(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    text = normalise(_decode(data))
    first, _, rest = text.partition("\n")
    if len(first) < TITLE_LINE_CHARS and rest.strip():
        return [_doc(doc_id, first, rest, source=source)]
    return [_doc(doc_id, _humanise(path.stem), text, source=source)]  # one line only: it is the text


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
_H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)


def _load_md(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    text, meta = normalise(_decode(data)), {}
    m = _FRONT_MATTER.match(text)
    lines = [line.partition(":") for line in m.group(1).splitlines() if line.strip()] if m else []
    if m and all(sep and key.strip() for key, sep, _ in lines):  # else "---" was a rule, not front matter
        text, meta = text[m.end() :], {key.strip().lower(): value.strip().strip("\"'") for key, _, value in lines}
    title = meta.pop("title", "")
    if not title and (h1 := _H1.search(text)):
        title, text = h1.group(1), text[: h1.start()] + text[h1.end() :]
    url, source = meta.pop("url", ""), meta.pop("source", "") or source
    return [_doc(doc_id, title or _humanise(path.stem), text, url, source, meta)]


def _load_pdf(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    try:
        import pypdf
    except ImportError:
        raise _Skip(str(missing_dependency("pypdf", "Reading PDF files"))) from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Skip("encrypted PDF: save an unencrypted copy")
        text = normalise("\n\n".join(page.extract_text() or "" for page in reader.pages))
        title, pages = getattr(reader.metadata, "title", None), len(reader.pages)
    except _Skip:
        raise
    except Exception as e:  # pypdf raises many types on damaged files
        raise _Skip(f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from None
    if not text:
        raise _Skip("no extractable text in this PDF (a scan? run OCR on it first)")
    title = title if isinstance(title, str) and title.strip() else _humanise(path.stem)
    return [_doc(doc_id, title, text, source=source, metadata={"pages": pages})]


_HIDDEN_TAGS = ["script", "style", "nav", "noscript", "template", "head"]
_BLOCK_TAGS = "p div br li tr h1 h2 h3 h4 h5 h6 section article header footer ul ol table blockquote pre dt dd".split()


def _load_html(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise _Skip(str(missing_dependency("bs4", "Reading HTML files", "beautifulsoup4"))) from None
    soup = BeautifulSoup(_decode(data), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(" ", strip=True)
        h1.decompose()  # it is the title now; kept in the text it would be said twice
    for tag in soup(_HIDDEN_TAGS):
        tag.decompose()
    for tag in soup(_BLOCK_TAGS):
        tag.insert_after("\n")  # block elements end a line; inline ones (<b>, <a>) do not
    lines = (" ".join(line.split()) for line in soup.get_text().splitlines())
    return [_doc(doc_id, title or _humanise(path.stem), "\n".join(line for line in lines if line), source=source)]


_JSONL_FIELDS = {"id", "title", "text", "url", "source"}


def _load_jsonl(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    if b"\x00" in data:
        raise _Skip("binary file (NUL bytes in a text format)")
    docs, bad = [], 0
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            row, reason = None, _utf8_reason(raw, e)
        except json.JSONDecodeError as e:
            row, reason = None, f"invalid JSON ({e.msg} at column {e.colno})"
        else:
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                row, reason = None, "missing or empty 'text' field"
        if row is None:
            report(f"{path}:{n}", reason)
            bad += 1
            continue
        ident = row.get("id")
        docs.append(Document(
            id=str(ident) if ident not in (None, "") else f"{path.stem}:{n}",
            title=" ".join(str(row.get("title") or "").split()),
            text=normalise(text),
            url=str(row.get("url") or ""),
            source=str(row.get("source") or path.name),
            metadata={k: v for k, v in row.items() if k not in _JSONL_FIELDS},
        ))  # fmt: skip
    if not docs and not bad:
        raise _Skip("empty: no documents in this file")
    return docs


def _load_medquad(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    declared = re.match(rb"<\?xml[^>]*encoding=[\"']([\w.-]+)", data)
    if not declared or declared.group(1).lower() in (b"utf-8", b"utf8"):
        _decode(data)  # the same binary / UTF-8 checks as the other text formats
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise _Skip(f"invalid XML ({e})") from None
    pairs = root.find("QAPairs")
    if root.tag != "Document" or pairs is None:
        raise _Skip("not a MedQuAD XML file (expected <Document> holding <QAPairs>; no other XML is read)")
    base, focus, docs = root.get("id") or doc_id, _inline(root.find("Focus")), []
    for i, pair in enumerate(pairs.findall("QAPair"), start=1):
        answer, question = pair.find("Answer"), pair.find("Question")
        text = normalise("".join(answer.itertext())) if answer is not None else ""
        if not text:
            continue  # MedQuAD removed many answers for copyright: nothing to index, nothing to report
        qtype = question.get("qtype", "") if question is not None else ""
        qid = question.get("qid", "") if question is not None else ""
        metadata = {"focus": focus, "qtype": qtype, "question": _inline(question), "qid": qid}
        title = f"{focus} ({qtype})" if qtype else focus
        docs.append(Document(f"{base}:{pair.get('pid', i)}", title, text, root.get("url", ""),
                             "MedQuAD/" + root.get("source", ""), metadata))  # fmt: skip
    if not docs:
        raise _Skip("empty: no QAPair with a non-empty answer")
    return docs


def _inline(element: ET.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


LOADERS: dict[str, Callable[[bytes, Path, str, str, Report], list[Document]]] = {
    ".txt": _load_txt,
    ".md": _load_md,
    ".pdf": _load_pdf,
    ".html": _load_html,
    ".htm": _load_html,
    ".jsonl": _load_jsonl,
    ".xml": _load_medquad,
}
SUPPORTED = ", ".join(sorted(LOADERS))


def jsonl_lines(path: str | Path, what: str, hint: str, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines of a jsonl file, at most `limit` of them.

    The shared reader of training, evaluation and PubMedQA files; a missing file raises
    DocumentError naming `what` the file is and `hint` (what to pass instead).
    """
    path = Path(path)
    if not path.is_file():
        raise DocumentError(f"No {what} at {path}: {hint}")
    with open(path, encoding="utf-8") as f:
        numbered = ((n, line) for n, line in enumerate(f, 1) if line.strip())
        yield from itertools.islice(numbered, limit)


def corpus_sha256(documents: Iterable[Document]) -> str:
    """The sha256 hex digest of one line per document, in order: the UTF-8 JSON array
    `[id, title, text, url]` (json.dumps defaults, `ensure_ascii=False`) followed by "\\n".
    Same documents in the same order: same hash on any machine. Source and metadata do not count."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps([doc.id, doc.title, doc.text, doc.url], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()
