"""Document loaders: files and folders of .txt, .md, .pdf, .html, .jsonl and MedQuAD .xml -> Documents.

`load_documents(paths)` never stops at a bad file: an unreadable, empty, binary, mis-encoded,
corrupt, oversized or too slow file is skipped and listed in `LoadResult.skipped` with its reason,
and so is each bad line of a .jsonl file, alone; `strict=True` raises `DocumentError` at the first
problem instead. `corpus_sha256` fingerprints a loaded corpus.

Only regular files are read: a symbolic link (to a file or a folder, inside the given folders or
out of them), a FIFO, a socket or a device is reported by name and skipped, never followed or
opened (a link to /etc/passwd is not indexed; a FIFO does not block the build). Every loader runs
in time linear in the size of its file, and the limits below bound that size, the nesting of an
HTML page and the time a PDF may take.

Shortcuts taken on purpose:
- Text formats must be UTF-8: a file that is not is reported, never decoded by guessing.
- Markdown front matter is flat `key: value` lines, not YAML; markdown syntax stays in the text.
- HTML is reduced to its visible text by a small tokenizer (tags, comments, script and style
  bodies, character references) with a stack of open elements that closes an open <p>, <li>,
  <dt>/<dd>, <tr>/<td> as the HTML standard implies; no tree, no readability heuristics. (The
  stdlib parser and bs4 on it are quadratic on unclosed comments and tags, and on deep nesting.)
- PDF text is what pypdf extracts, in a child process killed after PDF_SECONDS; a scanned PDF
  (no text layer) is skipped, not OCR'd.
- Only MedQuAD's XML layout is understood; any other XML is skipped with a reason.
"""

from __future__ import annotations

import hashlib
import html
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import stat
import sys
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medrag.errors import DocumentError, missing_dependency
from medrag.progress import Progress
from medrag.types import Document

Report = Callable[[str, str], None]  # report(where, reason): skip it, or raise in strict mode
TITLE_LINE_CHARS = 120  # a .txt first line shorter than this reads as a title, longer as prose

# --- per-file limits: a file past one is skipped with its reason ----------------------------------
MiB = 1 << 20
MAX_FILE_BYTES = 64 * MiB  # one document (txt, md, html, xml): a long guideline is a few MB; more is a dump
MAX_PDF_BYTES = 256 * MiB  # PDFs carry images: a long illustrated report runs to a hundred MB or two
MAX_JSONL_BYTES = 2048 * MiB  # a collection, held in memory while it loads (the 16k-document corpus is 25 MB)
MAX_HTML_DEPTH = 512  # open elements at once: Chromium's HTML parser stops nesting at 512 too
MAX_JSON_DEPTH = 32  # nesting of one .jsonl row: its fields become chunk metadata (deeper ones overflow the
# recursion that copies and saves it); real metadata is two or three levels deep
PDF_SECONDS = 120.0  # pypdf is pure Python: 1.2 MB of page text took 8 s here; a crafted file may never end


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


def load_documents(paths: Sequence[str | Path], strict: bool = False, progress: bool = False) -> LoadResult:
    """Load every supported file in `paths` (files, or folders read recursively in sorted order).

    progress: print how many files are done (a bar on a terminal, else a line at each twentieth)."""
    result, first_seen = LoadResult(), {}

    def report(where: str, reason: str) -> None:
        if strict:
            raise DocumentError(f"{where}: {reason} (fix or remove it, or load without strict mode to skip it)")
        result.skipped.append(SkippedFile(where, reason))

    files = [found for given in paths for found in _files(Path(given), report)]
    bar = Progress(len(files), "Loading", "files", enabled=progress)
    for path, doc_id, source in files:
        bar.update()
        loader = LOADERS.get(path.suffix.lower())
        if loader is None:
            report(str(path), f"unsupported file type {path.suffix or '(no extension)'} (supported: {SUPPORTED})")
            continue
        try:
            docs = loader(_read(path), path, doc_id, source, report)
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
    bar.close()
    return result


def _reason(error: Exception) -> str:
    if isinstance(error, _Skip):
        return str(error)
    if isinstance(error, OSError):
        return f"cannot read file: {error.strerror or error}"
    return f"could not be loaded ({type(error).__name__}: {error})"


def _files(given: Path, report: Report) -> list[tuple[Path, str, str]]:
    """(path, document id, source) per regular file: ids are folder-relative posix paths without
    extension. Anything else met on the way (links, FIFOs, sockets, devices) is reported, in order."""
    kind = _kind(given)
    if kind == "file":
        return [(given, given.stem, given.name)]
    if kind is None:
        report(str(given), "no such file or folder")
        return []
    if kind != "folder":
        report(str(given), _not_regular(given, kind))
        return []
    found: list[tuple[Path, str | None]] = []  # (path, None) for a file, (path, kind) for a thing to report
    for root, dirs, files in os.walk(
        given, onerror=lambda e: report(str(e.filename), f"cannot read folder: {e.strerror}")
    ):
        for name in [*dirs, *files]:
            path = Path(root, name)
            k = _kind(path) if not name.startswith(".") else "hidden"
            if k not in ("folder", "hidden"):
                found.append((path, None if k == "file" else k))
        dirs[:] = [d for d in dirs if not d.startswith(".") and _kind(Path(root, d)) == "folder"]
    out = []
    for path, k in sorted(found, key=lambda f: f[0].relative_to(given).as_posix()):
        rel = path.relative_to(given)
        if k is None:
            out.append((path, rel.with_suffix("").as_posix(), rel.as_posix()))
        else:
            report(str(path), _not_regular(path, k))
    return out


def _kind(path: Path) -> str | None:
    """What `path` itself is, links not followed: file, folder, symlink, fifo, socket, device; None if absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return "file"  # cannot even stat it: reading it will report why
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


def _not_regular(path: Path, kind: str) -> str:
    if kind == "symlink":
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return (
            f"symbolic link to {target}: links are not followed (only regular files inside the given "
            "folders are read); copy the file in, or pass the target itself, if it belongs in the corpus"
        )
    what = {"fifo": "a FIFO (named pipe)", "socket": "a socket", "device": "a device"}[kind]
    return f"{what}, not a regular file: only regular files are read"


def _read(path: Path) -> bytes:
    """The bytes of a regular file, opened without following a link or blocking on a FIFO
    (either could have replaced the file since it was listed), within its size limit."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if (kind := _kind(path)) not in ("file", None):
            raise _Skip(_not_regular(path, kind)) from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Skip(_not_regular(path, _kind(path) or "device"))
        limit = {".pdf": MAX_PDF_BYTES, ".jsonl": MAX_JSONL_BYTES}.get(path.suffix.lower(), MAX_FILE_BYTES)
        if info.st_size > limit:
            raise _Skip(
                f"too large: {info.st_size / MiB:,.1f} MiB, the limit for a {path.suffix or 'text'} file is "
                f"{limit // MiB:,} MiB; split it into smaller files"
            )
        data = f.read(limit + 1)  # never more than the limit: the file may be growing
    if len(data) > limit:
        raise _Skip(f"too large: over the {limit // MiB:,} MiB limit for a {path.suffix or 'text'} file; split it")
    return data


def normalise(text: str) -> str:
    """\\r\\n -> \\n, NFC, no trailing spaces, at most one blank line in a row, stripped.
    Lone surrogates (from a PDF's text or an escape) become U+FFFD: they cannot be written as UTF-8."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.rstrip(" \t\f\v") for line in text.split("\n"))  # a regex here was quadratic
    return _SURROGATE.sub("\ufffd", re.sub(r"\n{3,}", "\n\n", text).strip())


_SURROGATE = re.compile("[\ud800-\udfff]")


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
_H1 = re.compile(r"^#[ \t]+(.*)$", re.M)  # the closing #s are stripped after: in the regex they were quadratic


def _h1(text: str) -> tuple[str, int, int] | None:
    """(title, start, end) of the first "# Title" line with a title, else None."""
    for m in _H1.finditer(text):
        if title := m.group(1).rstrip(" \t#"):
            return title, m.start(), m.end()
    return None


def _load_md(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    text, meta = normalise(_decode(data)), {}
    m = _FRONT_MATTER.match(text)
    lines = [line.partition(":") for line in m.group(1).splitlines() if line.strip()] if m else []
    if m and all(sep and key.strip() for key, sep, _ in lines):  # else "---" was a rule, not front matter
        text, meta = text[m.end() :], {key.strip().lower(): value.strip().strip("\"'") for key, _, value in lines}
    title = meta.pop("title", "")
    if not title and (h1 := _h1(text)):
        title, text = h1[0], text[: h1[1]] + text[h1[2] :]
    url, source = meta.pop("url", ""), meta.pop("source", "") or source
    return [_doc(doc_id, title or _humanise(path.stem), text, url, source, meta)]


def _load_pdf(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    try:
        import pypdf  # noqa: F401  (imported here, before the fork, so the child need not)
    except ImportError:
        raise _Skip(str(missing_dependency("pypdf", "Reading PDF files"))) from None
    kind, text, title, pages = _in_child(_pdf_text, data, PDF_SECONDS)
    if kind == "skip":
        raise _Skip(text)
    if not text:
        raise _Skip("no extractable text in this PDF (a scan? run OCR on it first)")
    title = title if isinstance(title, str) and title.strip() else _humanise(path.stem)
    return [_doc(doc_id, title, text, source=source, metadata={"pages": pages})]


def _pdf_text(data: bytes) -> tuple[str, str, str | None, int]:
    """("ok", text, title, pages) or ("skip", reason, None, 0): plain values, so they cross a pipe."""
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return "skip", "encrypted PDF: save an unencrypted copy", None, 0
        text = normalise("\n\n".join(page.extract_text() or "" for page in reader.pages))
        title = getattr(reader.metadata, "title", None)
        return "ok", text, str(title) if isinstance(title, str) else None, len(reader.pages)  # str: not pypdf's type
    except Exception as e:  # pypdf raises many types on damaged files
        return "skip", f"corrupt or unreadable PDF ({type(e).__name__}: {e})", None, 0


def _in_child(fn: Callable, data: bytes, seconds: float):
    """fn(data) in a child process, killed after `seconds`: pure-Python parsing of a crafted file
    can loop for hours, and a thread cannot be stopped. Fork where it is safe (Linux), else spawn.
    fn returns plain values (str, int, None): only they cross the pipe."""
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(fn, data, send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(seconds):
            return "skip", f"took longer than {seconds:g} s to read (PDF_SECONDS): a damaged or crafted file?", None, 0
        try:
            return receive.recv()
        except EOFError:  # it died without an answer: out of memory, a crash in C
            child.join(5)
            return "skip", f"the PDF reader died on this file (exit code {child.exitcode})", None, 0
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join()


def _child_main(fn: Callable, data: bytes, send) -> None:
    try:
        send.send(fn(data))
    finally:
        send.close()


_HIDDEN = frozenset("script style nav noscript template head title".split())  # never visible text
_BLOCK_TAGS = frozenset(
    "p div br li tr h1 h2 h3 h4 h5 h6 section article header footer ul ol table blockquote pre dt dd".split()
)  # each ends a line
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())  # no end tag
_RAW = frozenset("script style title textarea".split())  # their text runs to their end tag, tags and all
_P_CLOSERS = frozenset(
    "address article aside blockquote details div dl fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 "
    "header hgroup hr main menu nav ol p pre section table ul".split()
)
_IMPLIED_END = {"p": _P_CLOSERS, "li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "option": {"option"},
                "tr": {"tr"}, "td": {"td", "th", "tr"}, "th": {"td", "th", "tr"}}  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][^\t\n\r\f />\x00]*)((?:[\t\n\r\f /\x00](?:[^>\"']|\"[^\"]*\"|'[^']*')*)?)>")
# name, then attributes that start at a separator: no two ways to read a tag, so no backtracking blow-up
_TAG_START = re.compile(r"</?[a-zA-Z]")
_HUGE_CHARREF = re.compile(r"&#(?:[xX]0*[0-9a-fA-F]{7,}|0*[0-9]{8,});?")  # > U+10FFFF, and int() limits digits


def _load_html(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    page = _Page()
    page.feed(_decode(data))
    title, text = page.result()
    lines = (" ".join(line.split()) for line in text.splitlines())
    return [_doc(doc_id, title or _humanise(path.stem), "\n".join(line for line in lines if line), source=source)]


class _Page:
    """An HTML page's title and visible text, in one linear pass. The title is the first <title>'s
    text, else the first <h1>'s, which then leaves the text (said twice otherwise)."""

    def __init__(self):
        self.out: list[str] = []  # visible text, and "\n" where a block element ends
        self.stack: list[str] = []  # open elements
        self.open: dict[str, int] = {}  # how many of each are open: an end tag with none is ignored at once
        self.hidden = 0  # open elements whose text is never shown
        self.title: list[str] | None = None  # the first <title>'s strings, once it opened
        self.h1: list[str] | None = None
        self.title_depth = self.h1_depth = 0  # their place on the stack while open, else 0
        self.h1_span = [0, 0]  # where the first <h1> (with its line end) sits in `out`

    def feed(self, page: str) -> None:
        pos, n = 0, len(page)
        while pos < n:
            lt = page.find("<", pos)
            lt = n if lt < 0 else lt
            if lt > pos:
                self.data(page[pos:lt])
            if lt == n:
                break
            m = _TAG.match(page, lt)
            if m:
                pos = self.tag(page, m)
            elif page.startswith("<!--", lt):
                end = page.find("-->", lt + 4)
                pos = n if end < 0 else end + 3
            elif _TAG_START.match(page, lt):  # a tag that never closes: the rest of the page is inside it
                break
            elif page.startswith(("<!", "<?", "</"), lt):  # a declaration, or a bogus comment
                end = page.find(">", lt)
                pos = n if end < 0 else end + 1
            else:
                self.data("<")
                pos = lt + 1
        while self.stack:
            self.pop()

    def tag(self, page: str, m: re.Match) -> int:
        name, pos = m.group(2).lower(), m.end()
        if m.group(1):
            if self.open.get(name):
                while self.pop() != name:
                    pass
            return pos
        while self.stack and name in _IMPLIED_END.get(self.stack[-1], ()):
            self.pop()
        if name in _VOID:
            if name in _BLOCK_TAGS and not self.hidden:
                self.out.append("\n")
            return pos
        self.push(name)
        if m.group(3).endswith("/"):  # <div/>: empty, as the stdlib parser reads it
            self.pop()
        elif name in _RAW:
            end = re.compile(rf"</{name}(?=[\s/>])", re.I).search(page, pos)
            self.data(page[pos : end.start() if end else len(page)], raw=name in ("script", "style"))
            self.pop()
            close = page.find(">", end.end()) if end else -1
            return len(page) if close < 0 else close + 1
        return pos

    def push(self, name: str) -> None:
        self.stack.append(name)
        self.open[name] = self.open.get(name, 0) + 1
        self.hidden += name in _HIDDEN
        if len(self.stack) > MAX_HTML_DEPTH:
            raise _Skip(
                f"HTML nested deeper than {MAX_HTML_DEPTH} elements (MAX_HTML_DEPTH): not a page a browser "
                "shows as written; save the page from a browser, or as text"
            )
        if name == "title" and self.title is None:
            self.title, self.title_depth = [], len(self.stack)
        elif name == "h1" and self.h1 is None:
            self.h1, self.h1_depth, self.h1_span[0] = [], len(self.stack), len(self.out)

    def pop(self) -> str:
        name = self.stack.pop()
        self.open[name] -= 1
        self.hidden -= name in _HIDDEN
        if name in _BLOCK_TAGS and not self.hidden:
            self.out.append("\n")
        if len(self.stack) < self.title_depth:
            self.title_depth = 0
        if len(self.stack) < self.h1_depth:
            self.h1_depth, self.h1_span[1] = 0, len(self.out)
        return name

    def data(self, text: str, raw: bool = False) -> None:
        if not raw:
            text = html.unescape(_HUGE_CHARREF.sub("\ufffd", text)) if "&" in text else text
        if not self.hidden:
            self.out.append(text)
        if self.title_depth:
            self.title.append(text)
        if self.h1_depth:
            self.h1.append(text)

    def result(self) -> tuple[str, str]:
        title = " ".join(s.strip() for s in self.title or [] if s.strip())
        if not title and self.h1 is not None:
            title = " ".join(s.strip() for s in self.h1 if s.strip())
            del self.out[self.h1_span[0] : self.h1_span[1]]
        return title, "".join(self.out)


_JSONL_FIELDS = {"id", "title", "text", "url", "source"}


def _load_jsonl(data: bytes, path: Path, doc_id: str, source: str, report: Report) -> list[Document]:
    if b"\x00" in data:
        raise _Skip("binary file (NUL bytes in a text format)")
    docs, bad = [], 0
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if not raw.strip():
            continue
        row = _jsonl_row(raw)
        if isinstance(row, str):
            report(f"{path}:{n}", row)
            bad += 1
            continue
        ident = row.get("id")
        docs.append(Document(
            id=str(ident) if ident not in (None, "") else f"{path.stem}:{n}",
            title=" ".join((row.get("title") or "").split()),
            text=normalise(row["text"]),
            url=row.get("url") or "",
            source=row.get("source") or path.name,
            metadata={k: v for k, v in row.items() if k not in _JSONL_FIELDS},
        ))  # fmt: skip
    if not docs and not bad:
        raise _Skip("empty: no documents in this file")
    return docs


def _jsonl_row(raw: bytes) -> dict | str:
    """One .jsonl line as a checked row, or the reason it cannot be one (each bad line is skipped alone)."""
    try:
        row = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except UnicodeDecodeError as e:
        return _utf8_reason(raw, e)
    except json.JSONDecodeError as e:
        return f"invalid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return f"invalid JSON (nested too deeply; at most {MAX_JSON_DEPTH} levels are read)"
    except ValueError as e:  # an integer of more than 4300 digits, NaN, Infinity, 1e999
        return f"invalid JSON ({e})"
    if not isinstance(row, dict):
        return f"not a JSON object but {_json_type(row)}: each line must be one object with a 'text' field"
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        return "missing or empty 'text' field"
    for key in ("title", "url", "source"):
        if row.get(key) is not None and not isinstance(row[key], str):
            return f"'{key}' must be a string, not {_json_type(row[key])}"
    ident = row.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        return f"'id' must be a string or an integer, not {_json_type(ident)}"
    if _depth(row) > MAX_JSON_DEPTH:
        return f"nested deeper than {MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH): flatten its metadata"
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        bad = f"\\u{ord(e.object[e.start]):04x}"
        return f"a lone surrogate ({bad}) is not text: fix the escape (a character outside the BMP needs two)"
    return row


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON can carry")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit a 64-bit float")
    return value


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value, without recursion (a scalar is 0, {} is 1)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        value, depth = todo.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            todo += [(child, depth + 1) for child in children]
    return deepest


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
    with open(path, "rb") as f:
        numbered = ((n, line) for n, line in enumerate(f, 1) if line.strip())
        for n, line in itertools.islice(numbered, limit):
            try:
                yield n, line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DocumentError(f"{path}:{n}: {_utf8_reason(line, e)}") from None


def corpus_sha256(documents: Iterable[Document]) -> str:
    """The sha256 hex digest of one line per document, in order: the UTF-8 JSON array
    `[id, title, text, url]` (json.dumps defaults, `ensure_ascii=False`) followed by "\\n".
    Same documents in the same order: same hash on any machine. Source and metadata do not count."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps([doc.id, doc.title, doc.text, doc.url], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()
