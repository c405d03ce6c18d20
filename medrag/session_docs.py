"""`SessionDocs`: one visitor's uploaded files, chunked and embedded in memory, searched beside the index.

`add_file(path, name)` reads one upload with medrag.documents' loaders and the same safety (a
regular file only, never a link or a FIFO; a PDF parsed in a child process killed after
PDF_SECONDS), checks the limits below, chunks it like the index and embeds it with the same
encoder. A file that cannot be used raises `InputError` saying why and what to do; the files
already added stay, so the session keeps working after any bad upload.

`merge(query, hits, k, mode)` searches the visitor's passages in the same mode as the index (an
in-memory `VectorIndex`: exact inner product, plus BM25 fused by RRF in hybrid mode) and merges
them into the index's ranked hits by dense cosine, the one score both searches share (same
encoder; BM25 and RRF scores of two corpora are not comparable). Each list keeps its own order;
the merge takes whichever head is closer to the question, so a passage of the visitor's file
that answers the question reaches the top-k, and one that does not stays below the index's.
Its hits carry `origin="upload"` and are cited like any source.

Shortcuts taken on purpose:
- Nothing is written to disk: the chunks and vectors live in this object, held in the visitor's
  `gr.State` (app.py's upload panel), and `clear()` drops them when the session ends.
- The in-memory index is rebuilt at each added file: a few hundred chunks take milliseconds.
- A file already added under the same name is refused, not replaced: "Remove my files" starts over.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrag.chunking import chunk_documents
from medrag.config import PipelineConfig
from medrag.documents import LOADERS, PDF_SECONDS, MiB, SkipFile, file_kind, normalise, read_regular, run_in_child
from medrag.errors import InputError, missing_dependency
from medrag.index import VectorIndex, analyze
from medrag.retriever import Retriever
from medrag.types import Chunk, Document, Hit

MAX_BYTES = 10 * MiB  # per file: a long guideline PDF is a few MB; more is mostly images, and it all sits in memory
MAX_PAGES = 50  # per PDF: ~150 passages, embedded in well under the 15 s an upload may take on a CPU Space
MAX_CHARS = 200_000  # per file, any format: about 50 pages of prose, the text formats' page limit
MAX_FILES = 3  # per session: every passage is scored on every question, and memory is per visitor
TYPES = (".pdf", ".html", ".htm", ".md", ".txt")  # what a visitor has at hand; no .jsonl/.xml collections
ORIGIN = "upload"  # Hit.origin of a passage from the visitor's own file
LIMITS = (
    f"PDF, HTML, Markdown or text; up to {MAX_BYTES // MiB} MB and {MAX_PAGES} pages "
    f"({MAX_CHARS // 1000:,}k characters) per file, {MAX_FILES} files per session. "
    "Your files stay in this browser session only and are dropped when it ends."
)


@dataclass(frozen=True)
class UploadResult:
    name: str  # the file name the visitor gave
    chunks: int
    pages: int | None  # PDFs only
    message: str  # what to show the visitor
    seconds: dict[str, float] = field(default_factory=dict)  # wall: load, chunk, embed, index
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU of this process and its PDF child


class SessionDocs:
    """One visitor's files. Thread-safe: an upload and a question of the same session may overlap."""

    def __init__(self, embedder, config: PipelineConfig | None = None):
        self.embedder, self.config = embedder, config or PipelineConfig()
        self.files: list[UploadResult] = []
        self._chunks: list[Chunk] = []
        self._vectors = None  # (n, dim) float32, the rows of _chunks
        self._retriever: Retriever | None = None  # over the chunks above; replaced whole at each change
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._chunks)

    def __deepcopy__(self, memo) -> SessionDocs:
        return self  # never copied: it holds the shared encoder, and gradio passes state by reference

    # --- adding ------------------------------------------------------------------------------
    def add_file(self, path: str | Path, name: str | None = None) -> UploadResult:
        """Read, chunk and embed one file; InputError (message for the visitor) when it cannot be used."""
        path = Path(path)
        name = Path(name or path.name).name
        ext = Path(name).suffix.lower()
        clock = _Clock()
        if ext not in TYPES:
            raise InputError(
                f"{name}: {ext or 'a file without an extension'} files are not supported; "
                f"upload a {', '.join(TYPES)} file (save or export it as PDF or text first)"
            )
        with self._lock:
            if any(f.name == name for f in self.files):
                raise InputError(f"{name} is already added: ask about it, or remove your files to upload it again")
            if len(self.files) >= MAX_FILES:
                raise InputError(
                    f"{name}: this session already holds {MAX_FILES} files, the limit; "
                    "remove your files to start over with others"
                )
        doc, pages = self._load(path, name, ext)
        clock.lap("load")
        chunks = chunk_documents(
            [doc],
            self.embedder.count_tokens,
            max_tokens=self.config.chunk_tokens,
            overlap=self.config.chunk_overlap,
            count_tokens_batch=getattr(self.embedder, "count_tokens_batch", None),
        )
        if not any(analyze(c.embed_text) for c in chunks):  # symbols only: nothing a keyword could find
            raise InputError(f"{name}: no words to search in this file; upload one with text in it")
        clock.lap("chunk")
        vectors = self.embedder.embed([c.embed_text for c in chunks])
        clock.lap("embed")
        with self._lock:  # checked again: another upload of this session may have landed meanwhile
            if len(self.files) >= MAX_FILES or any(f.name == name for f in self.files):
                raise InputError(f"{name}: not added, the session's files changed meanwhile; try again")
            all_chunks = [*self._chunks, *chunks]
            all_vectors = vectors if self._vectors is None else np.concatenate([self._vectors, vectors])
            retriever = self._make_retriever(all_chunks, all_vectors)
            clock.lap("index")
            what = f"{pages} page{'s' * (pages != 1)}, " if pages is not None else ""
            result = UploadResult(
                name,
                len(chunks),
                pages,
                f"{name}: {what}{len(chunks)} passage{'s' * (len(chunks) != 1)} added. "
                "Ask a question: its passages are searched with the sources and marked 'Your document'.",
                clock.wall,
                clock.cpu,
            )
            self._chunks, self._vectors, self._retriever = all_chunks, all_vectors, retriever
            self.files = [*self.files, result]
        return result

    def clear(self) -> None:
        """Drop every file: the session ended, or the visitor removed them."""
        with self._lock:
            self.files, self._chunks, self._vectors, self._retriever = [], [], None, None

    def _load(self, path: Path, name: str, ext: str) -> tuple[Document, int | None]:
        kind = file_kind(path)
        if kind != "file":
            raise InputError(f"{name}: not a regular file; upload the file itself")
        size = os.lstat(path).st_size
        if size == 0:
            raise InputError(f"{name} is empty (0 bytes): upload a file with text in it")
        if size > MAX_BYTES:
            raise InputError(
                f"{name} is too large: {size / MiB:.1f} MB, the limit is {MAX_BYTES // MiB} MB per file; "
                "upload the part you want to ask about (split it, or print those pages to a PDF)"
            )
        doc_id = f"upload-{len(self.files) + 1}"  # the files are few; the name is only a label
        try:
            data = read_regular(path)
            if ext == ".pdf":
                return self._pdf(data, name, doc_id)
            doc = LOADERS[ext](data, Path(name), doc_id, name, _refuse)[0]
        except SkipFile as e:
            raise InputError(f"{name}: {_plain(str(e))}") from None
        except OSError as e:
            raise InputError(f"{name}: the upload could not be read ({e.strerror or e}); upload it again") from None
        return self._checked(doc, name), None

    def _pdf(self, data: bytes, name: str, doc_id: str) -> tuple[Document, int]:
        try:
            import pypdf  # noqa: F401  (imported before the fork, so the child need not)
        except ImportError:
            raise InputError(str(missing_dependency("pypdf", "Reading PDF files"))) from None
        kind, text, title, pages = run_in_child(_pdf_text, data, PDF_SECONDS)
        if kind != "ok":
            raise InputError(f"{name}: {text}")
        if not text.strip():
            raise InputError(
                f"{name}: this PDF has no text layer (a scan?), so there is nothing to search; "
                "run OCR on it first, or upload the text as a .txt file"
            )
        title = title.strip() if isinstance(title, str) and title.strip() else Path(name).stem
        doc = Document(doc_id, " ".join(title.split()), text, source=name, metadata={"pages": pages})
        return self._checked(doc, name), pages

    @staticmethod
    def _checked(doc: Document, name: str) -> Document:
        if len(doc.text) > MAX_CHARS:
            raise InputError(
                f"{name} holds {len(doc.text):,} characters of text, the limit is {MAX_CHARS:,} (about "
                f"{MAX_PAGES} pages); upload the part you want to ask about"
            )
        meta = {**doc.metadata, "origin": ORIGIN, "file": name}
        return dataclasses.replace(doc, source=name, url="", metadata=meta)

    def _make_retriever(self, chunks: list[Chunk], vectors) -> Retriever:
        index = VectorIndex.build(
            chunks,
            vectors,
            model_id=self.embedder.model_id,
            dim=vectors.shape[1],
            chunker={"max_tokens": self.config.chunk_tokens, "overlap": self.config.chunk_overlap},
            corpus_sha256="",  # never saved: no fingerprint needed
        )
        return Retriever(index, self.embedder, self.config)

    # --- searching ---------------------------------------------------------------------------
    def search(self, query: str, k: int, mode: str | None = None) -> list[Hit]:
        """The visitor's own passages for `query`, best first, marked origin="upload"."""
        retriever = self._retriever
        if retriever is None:
            return []
        return [dataclasses.replace(h, origin=ORIGIN) for h in retriever.search(query, k=k, mode=mode)]

    def merge(self, query: str, hits: list[Hit], k: int, mode: str | None = None) -> list[Hit]:
        """`hits` (from the index) and the visitor's passages as one top-k list, merged by dense cosine."""
        mine = self.search(query, k, mode)
        out, i, j = [], 0, 0
        while len(out) < k and (i < len(hits) or j < len(mine)):
            if j < len(mine) and (i == len(hits) or _cosine(mine[j]) > _cosine(hits[i])):
                out.append(mine[j])
                j += 1
            else:
                out.append(hits[i])
                i += 1
        return [dataclasses.replace(h, rank=n) for n, h in enumerate(out, start=1)]

    def has_term(self, term: str) -> bool:
        """True when one of the visitor's passages holds the BM25 term: the evidence gate asks it, so a name
        only the visitor's file mentions is not declined as unknown."""
        retriever = self._retriever
        return retriever is not None and retriever.index.has_term(term)


def _pdf_text(data: bytes) -> tuple[str, str, str | None, int]:
    """("ok", text, title, pages), or ("bad", message for the visitor, None, 0). Runs in a child process;
    the page count is checked before any text is extracted."""
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return (
                "bad",
                "this PDF is encrypted (password-protected); save an unprotected copy and upload that",
                None,
                0,
            )
        pages = len(reader.pages)
        if pages > MAX_PAGES:
            return (
                "bad",
                f"{pages} pages, the limit is {MAX_PAGES}; upload the pages you want to ask about "
                "(print them to a new PDF)",
                None,
                0,
            )
        text = normalise("\n\n".join(page.extract_text() or "" for page in reader.pages))
        title = getattr(reader.metadata, "title", None)
        return "ok", text, str(title) if isinstance(title, str) else None, pages
    except Exception as e:  # pypdf raises many types on damaged files
        return (
            "bad",
            f"this PDF cannot be read (damaged or not a PDF: {type(e).__name__}); re-save it and upload again",
            None,
            0,
        )


def _refuse(where: str, reason: str) -> None:
    raise SkipFile(reason)


def _plain(reason: str) -> str:
    """A loader's reason in the visitor's words (the loaders speak to someone building an index)."""
    if reason.startswith("empty"):
        return "no text in this file; upload one with text in it"
    if reason.startswith("binary file"):
        return "this is not a text file (it holds binary data); upload a PDF, HTML, Markdown or text file"
    return reason


def _cosine(hit: Hit) -> float:
    return hit.dense_score if hit.dense_score is not None else float("-inf")


class _Clock:
    """Wall and CPU seconds per phase; CPU counts this process's threads and its finished children (the PDF reader)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t, self._c = time.perf_counter(), _cpu()

    def lap(self, phase: str) -> None:
        t, c = time.perf_counter(), _cpu()
        self.wall[phase], self.cpu[phase] = t - self._t, c - self._c
        self._t, self._c = t, c


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
