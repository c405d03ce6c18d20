"""Loaders, one small file each, written in the test; bad files are reported, never fatal."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
from deadline import within

from medrag import documents
from medrag.documents import LOADERS, SUPPORTED, SkippedFile, corpus_sha256, jsonl_lines, load_documents, normalise
from medrag.errors import DocumentError
from medrag.types import Document


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A minimal one-page PDF with a Helvetica text stream, offsets computed so the xref is exact."""
    content = "BT /F1 12 Tf 72 720 Td " + " 0 -16 Td ".join(f"({line}) Tj" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        " /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({title}) >>" if title else "<< >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def load_one(path: Path) -> Document:
    result = load_documents([path])
    assert result.skipped == []
    assert len(result.documents) == 1
    return result.documents[0]


# --- each format ----------------------------------------------------------------------------


def test_txt_first_short_line_is_the_title(tmp_path):
    doc = load_one(write(tmp_path / "flu.txt", "Influenza basics\r\n\r\nFlu is a viral infection.   \r\nRest helps.\n"))
    assert doc == Document("flu", "Influenza basics", "Flu is a viral infection.\nRest helps.", source="flu.txt")


def test_txt_long_first_line_is_text_and_title_comes_from_the_file_name(tmp_path):
    line = "word " * 30
    doc = load_one(write(tmp_path / "heart_attack-signs.txt", line + "\nSecond line."))
    assert doc.title == "Heart attack signs"
    assert doc.text == line.strip() + "\nSecond line."


def test_txt_single_line_is_the_text(tmp_path):
    doc = load_one(write(tmp_path / "note.txt", "Drink water.\n"))
    assert (doc.title, doc.text) == ("Note", "Drink water.")


def test_md_front_matter(tmp_path):
    text = '---\ntitle: "Asthma"\nurl: https://example.org/asthma\nsource: Example Health\nreviewed: 2024-01-01\n---\n# Ignored heading\n\nAsthma narrows the airways.\n'
    doc = load_one(write(tmp_path / "asthma.md", text))
    assert doc.title == "Asthma"
    assert doc.url == "https://example.org/asthma"
    assert doc.source == "Example Health"
    assert doc.metadata == {"reviewed": "2024-01-01"}
    assert doc.text == "# Ignored heading\n\nAsthma narrows the airways."  # only a heading used as title goes


def test_md_title_from_first_heading_which_leaves_the_text(tmp_path):
    doc = load_one(write(tmp_path / "a.md", "Intro line.\n\n# Gout\n\nGout is **painful**.\n\n## Causes\nUric acid."))
    assert doc.title == "Gout"
    assert doc.text == "Intro line.\n\nGout is **painful**.\n\n## Causes\nUric acid."
    assert doc.source == "a.md" and doc.metadata == {}


def test_md_leading_rule_is_not_front_matter(tmp_path):
    doc = load_one(write(tmp_path / "rule.md", "---\nKeep this line.\n---\n# Title\nBody."))
    assert (doc.title, doc.text, doc.metadata) == ("Title", "---\nKeep this line.\n---\n\nBody.", {})


def test_pdf_text_and_title_from_metadata(tmp_path):
    doc = load_one(
        write(tmp_path / "leaflet.pdf", make_pdf(["Aspirin relieves pain.", "Take it with water."], "Aspirin"))
    )
    assert doc.title == "Aspirin"
    assert doc.text == "Aspirin relieves pain.\nTake it with water."
    assert doc.metadata == {"pages": 1}


def test_pdf_without_title_uses_the_file_name(tmp_path):
    assert load_one(write(tmp_path / "dose_guide.pdf", make_pdf(["Some text."]))).title == "Dose guide"


def test_html_visible_text_only(tmp_path):
    html = """<!doctype html><html><head><title>Malaria | Health</title><style>p {color: red}</style>
    <script>var secret = "hidden";</script></head><body><nav><a href="/">Home</a> | Menu</nav>
    <h1>Malaria</h1><p>Malaria is spread by <b>mosquitoes</b>.</p><!-- a comment -->
    <ul><li>Fever</li><li>Chills</li></ul><noscript>Enable JS</noscript></body></html>"""
    doc = load_one(write(tmp_path / "malaria.html", html))
    assert doc.title == "Malaria | Health"
    assert doc.text == "Malaria\nMalaria is spread by mosquitoes.\nFever\nChills"  # no script, style, nav, comment


def test_html_title_from_h1_when_no_title_tag(tmp_path):
    doc = load_one(write(tmp_path / "page.htm", "<body><h1>Measles</h1><div>Measles is contagious.</div></body>"))
    assert (doc.title, doc.text) == ("Measles", "Measles is contagious.")


def test_jsonl_fields_metadata_and_bad_lines(tmp_path):
    rows = [
        json.dumps({"id": "d1", "title": "One", "text": "First text.", "url": "http://a", "source": "S", "lang": "en"}),
        "{not json",
        json.dumps({"title": "No id", "text": "Second text.", "extra": [1, 2]}),
        json.dumps({"id": "d3", "title": "No text"}),
        "",
        json.dumps({"id": "d4", "text": "   "}),
    ]
    path = write(tmp_path / "docs.jsonl", "\n".join(rows) + "\n")
    result = load_documents([path])
    assert result.documents == [
        Document("d1", "One", "First text.", "http://a", "S", {"lang": "en"}),
        Document("docs:3", "No id", "Second text.", "", "docs.jsonl", {"extra": [1, 2]}),
    ]
    assert [s.path for s in result.skipped] == [f"{path}:2", f"{path}:4", f"{path}:6"]
    assert result.skipped[0].reason.startswith("invalid JSON")
    assert result.skipped[1].reason == "missing or empty 'text' field"


def test_jsonl_mis_encoded_line_is_reported_with_its_line(tmp_path):
    good = json.dumps({"id": "a", "text": "Fine."}).encode()
    path = write(tmp_path / "x.jsonl", good + b'\n{"id": "b", "text": "caf\xe9"}\n')
    result = load_documents([path])
    assert [d.id for d in result.documents] == ["a"]
    offset = len(b'{"id": "b", "text": "caf')  # offsets count from the start of the line
    reason = f"not valid UTF-8 (byte 0xe9 at offset {offset}): re-save the file as UTF-8"
    assert result.skipped == [SkippedFile(f"{path}:2", reason)]


MEDQUAD = """<?xml version="1.0" encoding="UTF-8"?>
<Document id="0000042" source="GHR" url="https://ghr.example/condition/xyz">
<Focus>Xyz syndrome</Focus>
<QAPairs>
<QAPair pid="1"><Question qid="0000042-1" qtype="information">What is (are) Xyz syndrome ?</Question>
<Answer>Xyz syndrome is a rare disorder.
It affects the skin.</Answer></QAPair>
<QAPair pid="2"><Question qid="0000042-2" qtype="treatment">What are the treatments for Xyz syndrome ?</Question>
<Answer></Answer></QAPair>
</QAPairs>
</Document>
"""


def test_medquad_xml_one_document_per_answered_pair(tmp_path):
    result = load_documents([write(tmp_path / "0000042.xml", MEDQUAD)])
    assert result.skipped == []
    assert result.documents == [
        Document(
            id="0000042:1",
            title="Xyz syndrome (information)",
            text="Xyz syndrome is a rare disorder.\nIt affects the skin.",
            url="https://ghr.example/condition/xyz",
            source="MedQuAD/GHR",
            metadata={
                "focus": "Xyz syndrome",
                "qtype": "information",
                "question": "What is (are) Xyz syndrome ?",
                "qid": "0000042-1",
            },
        )
    ]


def test_other_xml_is_skipped_with_a_reason(tmp_path):
    result = load_documents([write(tmp_path / "feed.xml", "<rss><channel><title>x</title></channel></rss>")])
    assert result.documents == []
    assert "not a MedQuAD XML file" in result.skipped[0].reason


# --- folders, ids, order ------------------------------------------------------------------------


def test_folders_load_recursively_in_sorted_order_with_relative_ids(tmp_path):
    root = tmp_path / "corpus"
    write(root / "b.txt", "B title\nB text.")
    write(root / "a" / "z.md", "# Z\nZ text.")
    write(root / "a" / "y.txt", "Y title\nY text.")
    write(root / "c.jsonl", json.dumps({"id": "c1", "text": "C text."}))
    write(root / ".hidden.txt", "Hidden\nNo.")
    write(root / ".git" / "notes.txt", "Hidden\nNo.")
    write(root / "image.png", b"\x89PNG")
    result = load_documents([root])
    assert [d.id for d in result.documents] == ["a/y", "a/z", "b", "c1"]
    assert result.documents[0].source == "a/y.txt"
    assert result.skipped == [
        SkippedFile(str(root / "image.png"), f"unsupported file type .png (supported: {SUPPORTED})")
    ]
    assert SUPPORTED == ".htm, .html, .jsonl, .md, .pdf, .txt, .xml"
    assert load_documents([root]) == result  # deterministic


def test_single_file_id_is_its_stem(tmp_path):
    assert load_one(write(tmp_path / "sub" / "gout.txt", "Gout\nText.")).id == "gout"


def test_duplicate_ids_keep_the_first(tmp_path):
    write(tmp_path / "a.md", "# First\nOne.")
    write(tmp_path / "a.txt", "Second\nTwo.")
    result = load_documents([tmp_path])
    assert [d.title for d in result.documents] == ["First"]
    assert result.skipped == [
        SkippedFile(str(tmp_path / "a.txt"), f"duplicate document id 'a' (first loaded from {tmp_path / 'a.md'})")
    ]


def test_missing_path_is_reported(tmp_path):
    result = load_documents([tmp_path / "nope"])
    assert result.skipped == [SkippedFile(str(tmp_path / "nope"), "no such file or folder")]


# --- bad files --------------------------------------------------------------------------------


BAD_FILES = {
    "empty.txt": (b"", "empty: no text left after extraction"),
    "blank.md": (b"  \n\n\t\n", "empty: no text left after extraction"),
    "blank.jsonl": (b"\n\n", "empty: no documents in this file"),
    "binary.txt": (b"abc\x00\x01\x02", "binary file (NUL bytes in a text format)"),
    "latin1.txt": ("Café au lait\nNaïve".encode("latin-1"), "not valid UTF-8 (byte 0xe9 at offset 3): re-save the file as UTF-8"),
    "latin1.html": ("<p>Fièvre</p>".encode("latin-1"), "not valid UTF-8 (byte 0xe8 at offset 5): re-save the file as UTF-8"),
    "utf16.txt": ("Hello".encode("utf-16"), "UTF-16 text: re-save the file as UTF-8"),
    "broken.xml": (b"<Document><QAPairs>", "invalid XML (no element found: line 1, column 19)"),
    "noanswers.xml": (MEDQUAD.replace("Xyz syndrome is a rare disorder.\nIt affects the skin.", "").encode(), "empty: no QAPair with a non-empty answer"),
    "scan.pdf": (make_pdf([]), "no extractable text in this PDF (a scan? run OCR on it first)"),
    "style.css": (b"p {}", f"unsupported file type .css (supported: {SUPPORTED})"),
    "README": (b"x", f"unsupported file type (no extension) (supported: {SUPPORTED})"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_reported_and_skipped(tmp_path, name):
    content, reason = BAD_FILES[name]
    path = write(tmp_path / name, content)
    write(tmp_path / "good.txt", "Good\nStill loads.")
    result = load_documents([tmp_path])
    assert [d.id for d in result.documents] == ["good"]
    assert result.skipped == [SkippedFile(str(path), reason)]


@pytest.mark.parametrize("content", [b"%PDF-1.4\ngarbage", make_pdf(["Cut short."])[:150], b"not a pdf"])
def test_corrupt_pdf_is_reported(tmp_path, content):
    path = write(tmp_path / "bad.pdf", content)
    result = load_documents([path])
    assert result.documents == []
    assert [s.path for s in result.skipped] == [str(path)]
    assert result.skipped[0].reason.startswith("corrupt or unreadable PDF (")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_chmod(tmp_path):
    path = write(tmp_path / "secret.txt", "Secret\nText.")
    path.chmod(0)
    try:
        result = load_documents([path])
    finally:
        path.chmod(0o644)
    assert result.skipped == [SkippedFile(str(path), "cannot read file: Permission denied")]


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.txt", "Secret\nText.")
    write(tmp_path / "ok.txt", "Ok\nText.")
    real_open = os.open

    def os_open(file, flags, *args, **kwargs):
        if Path(file).name == "secret.txt":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    result = load_documents([tmp_path])
    assert [d.id for d in result.documents] == ["ok"]
    assert result.skipped == [SkippedFile(str(path), "cannot read file: Permission denied")]


def test_a_loader_crash_is_reported_not_raised(tmp_path, monkeypatch):
    def boom(*args):
        raise RuntimeError("boom")

    monkeypatch.setitem(LOADERS, ".txt", boom)
    path = write(tmp_path / "a.txt", "A\nB.")
    assert load_documents([path]).skipped == [SkippedFile(str(path), "could not be loaded (RuntimeError: boom)")]


def test_strict_mode_raises_naming_the_file(tmp_path):
    write(tmp_path / "a.txt", "Fine\nText.")
    bad = write(tmp_path / "b.txt", b"\xff\xfeH\x00i\x00")
    with pytest.raises(DocumentError, match=f"^{bad}: UTF-16 text: re-save the file as UTF-8"):
        load_documents([tmp_path], strict=True)


def test_strict_mode_raises_on_a_bad_jsonl_line(tmp_path):
    path = write(tmp_path / "x.jsonl", '{"text": "ok"}\n{broken\n')
    with pytest.raises(DocumentError, match=f"{path}:2: invalid JSON"):
        load_documents([path], strict=True)


def test_strict_mode_loads_good_files(tmp_path):
    write(tmp_path / "a.txt", "Fine\nText.")
    assert [d.id for d in load_documents([tmp_path], strict=True).documents] == ["a"]


# --- normalisation and hashing ------------------------------------------------------------------


def test_normalise():
    assert normalise("  a  \r\nb\t\r\n\r\n\r\n\r\nc\u0065\u0301 \n") == "a\nb\n\ncé"
    assert normalise("a\n\nb") == "a\n\nb"


def test_corpus_sha256_is_stable_and_documented():
    docs = [Document("a", "T", "x", "u", source="ignored", metadata={"k": 1}), Document("b", "é", "y")]
    expected = hashlib.sha256('["a", "T", "x", "u"]\n["b", "é", "y", ""]\n'.encode()).hexdigest()
    assert corpus_sha256(docs) == expected
    assert corpus_sha256([Document("a", "T", "x", "u")] + docs[1:]) == expected  # source, metadata do not count
    assert corpus_sha256(docs[::-1]) != expected
    assert corpus_sha256([]) == hashlib.sha256(b"").hexdigest()


# --- only regular files inside the given folders -------------------------------------------------


def test_links_are_reported_and_never_followed(tmp_path):
    outside = write(tmp_path / "outside" / "passwd.txt", "Secret\nroot:x:0:0")
    write(tmp_path / "outside" / "more" / "other.txt", "Secret\nOther.")
    root = tmp_path / "corpus"
    write(root / "good.txt", "Good\nKept.")
    write(root / "inside.txt", "Inside\nKept once.")
    (root / "to-passwd.txt").symlink_to(outside)
    (root / "to-inside.txt").symlink_to(root / "inside.txt")
    (root / "to-folder").symlink_to(tmp_path / "outside" / "more", target_is_directory=True)
    (root / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (tmp_path / "given-link.txt").symlink_to(outside)
    result = load_documents([root, tmp_path / "given-link.txt"])
    assert [d.id for d in result.documents] == ["good", "inside"]
    assert "root:x" not in "".join(d.text for d in result.documents)
    assert [s.path for s in result.skipped] == [
        str(root / "dangling.md"),
        str(root / "to-folder"),
        str(root / "to-inside.txt"),
        str(root / "to-passwd.txt"),
        str(tmp_path / "given-link.txt"),
    ]
    assert result.skipped[3].reason.startswith(f"symbolic link to {outside}: links are not followed")
    assert all("copy the file in" in s.reason for s in result.skipped)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_reported_and_does_not_block(tmp_path):
    write(tmp_path / "a.txt", "A\nText.")
    os.mkfifo(tmp_path / "pipe.txt")  # nobody writes to it: opening it to read would wait forever
    with within(20):
        result = load_documents([tmp_path])
        alone = load_documents([tmp_path / "pipe.txt"])
    assert [d.id for d in result.documents] == ["a"]
    reason = "a FIFO (named pipe), not a regular file: only regular files are read"
    assert result.skipped == alone.skipped == [SkippedFile(str(tmp_path / "pipe.txt"), reason)]


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets on this platform")
def test_sockets_and_devices_are_reported(tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.txt"))
    try:
        result = load_documents([tmp_path, "/dev/null"])
    finally:
        server.close()
    assert result.skipped == [
        SkippedFile(str(tmp_path / "sock.txt"), "a socket, not a regular file: only regular files are read"),
        SkippedFile("/dev/null", "a device, not a regular file: only regular files are read"),
    ]


def test_a_file_over_its_size_limit_is_skipped_before_it_is_read(tmp_path):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as f:
        f.truncate(documents.MAX_FILE_BYTES + 1)  # sparse: no disk used, and never read
    write(tmp_path / "ok.txt", "Ok\nText.")
    result = load_documents([tmp_path])
    assert [d.id for d in result.documents] == ["ok"]
    assert result.skipped == [
        SkippedFile(str(big), "too large: 64.0 MiB, the limit for a .txt file is 64 MiB; split it into smaller files")
    ]


# --- linear time, bounded work -------------------------------------------------------------------


def test_html_nested_100k_deep_is_skipped_at_once(tmp_path):
    path = write(tmp_path / "deep.html", "<html><body>" + "<div>" * 100_000 + "x" + "</div>" * 100_000)
    with within(10):  # it never finished before (bs4's tree: quadratic), or died of RecursionError
        result = load_documents([path])
    assert result.skipped == [
        SkippedFile(
            str(path),
            "HTML nested deeper than 512 elements (MAX_HTML_DEPTH): not a page a browser shows as written; "
            "save the page from a browser, or as text",
        )
    ]


@pytest.mark.parametrize("unit", ["<!--", "<a", "<![CDATA[", "<?", "</", "<a '", "< a", "&#99999999999"])
def test_html_malformed_runs_are_read_in_linear_time(tmp_path, unit):
    path = write(tmp_path / "bad.html", "<p>Before.</p>" + unit * 100_000)
    with within(10):  # the stdlib parser took ~40 s on 40,000 unclosed "<!--"
        doc = load_one(path)
    assert doc.text.startswith("Before.")


def test_html_end_tags_a_page_may_omit(tmp_path):
    page = "<title>Lists</title><p>One<p>Two<div>Three</div><ul><li>Four<li>Five</ul>" + "<p>More" * 2000
    doc = load_one(write(tmp_path / "omitted.html", page))  # 2,000 unclosed <p>: shallow, as a browser reads it
    assert doc.text.startswith("One\nTwo\nThree\nFour\nFive\nMore\nMore")


def test_text_and_markdown_are_linear_on_long_runs(tmp_path):
    write(tmp_path / "spaces.txt", "Spaces\na" + " " * 200_000 + "b")
    write(tmp_path / "hashes.md", "# " + "#" * 200_000 + "x\n\nBody.")
    with within(10):  # each regex took minutes on this
        docs = load_documents([tmp_path]).documents
    assert [(d.title[-3:], len(d.text)) for d in docs] == [("##x", 5), ("ces", 200_002)]


def test_a_pdf_that_takes_too_long_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "PDF_SECONDS", 0.5)
    slow = write(tmp_path / "slow.pdf", make_pdf([f"Line {i} about asthma." for i in range(20_000)]))  # ~8 s
    write(tmp_path / "quick.pdf", make_pdf(["Quick."]))
    with within(20):
        result = load_documents([tmp_path])
    assert [d.text for d in result.documents] == ["Quick."]
    assert result.skipped == [
        SkippedFile(str(slow), "took longer than 0.5 s to read (PDF_SECONDS): a damaged or crafted file?")
    ]


# --- one bad .jsonl line never drops the file ------------------------------------------------------


JSONL_BAD_LINES = {
    '["a list", "not an object"]': "not a JSON object but an array: each line must be one object with a 'text' field",
    '"just a string"': "not a JSON object but a string: each line must be one object with a 'text' field",
    "42": "not a JSON object but a number: each line must be one object with a 'text' field",
    "null": "not a JSON object but null: each line must be one object with a 'text' field",
    '{"id": {"an": "object"}, "text": "T."}': "'id' must be a string or an integer, not an object",
    '{"id": [1], "text": "T."}': "'id' must be a string or an integer, not an array",
    '{"id": true, "text": "T."}': "'id' must be a string or an integer, not a boolean",
    '{"text": "T.", "title": {"x": 1}}': "'title' must be a string, not an object",
    '{"text": "T.", "url": 3}': "'url' must be a string, not a number",
    '{"text": "T.", "source": ["a"]}': "'source' must be a string, not an array",
    '{"text": ["not", "text"]}': "missing or empty 'text' field",
    '{"text": "T.", "n": ' + "9" * 5000 + "}": "invalid JSON (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit)",
    '{"id": ' + "1" * 5000 + ', "text": "T."}': "invalid JSON (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit)",
    '{"text": "T.", "score": NaN}': "invalid JSON (NaN is not a number JSON can carry)",
    '{"text": "T.", "score": 1e999}': "invalid JSON (1e999 does not fit a 64-bit float)",
    '{"text": "T.", "m": ' + "[" * 40 + "]" * 40 + "}": "nested deeper than 32 levels (MAX_JSON_DEPTH): flatten its metadata",
    '{"text": "T.", "m": ' + "[" * 100_000 + "]" * 100_000 + "}": "invalid JSON (nested too deeply; at most 32 levels are read)",
    '{"text": "Bad \\ud800 escape."}': "a lone surrogate (\\ud800) is not text: fix the escape (a character outside the BMP needs two)",
}  # fmt: skip


def test_each_bad_jsonl_line_is_skipped_alone(tmp_path):
    lines = []
    for i, bad in enumerate(JSONL_BAD_LINES):
        lines += [json.dumps({"id": f"good{i}", "text": f"Good text {i}."}), bad]
    path = write(tmp_path / "mixed.jsonl", "\n".join(lines) + "\n")
    result = load_documents([path])
    assert [d.id for d in result.documents] == [f"good{i}" for i in range(len(JSONL_BAD_LINES))]
    assert result.skipped == [
        SkippedFile(f"{path}:{2 * i + 2}", reason) for i, reason in enumerate(JSONL_BAD_LINES.values())
    ]


def test_odd_but_valid_jsonl_rows(tmp_path):
    rows = [{"id": 7, "text": "Integer id.", "score": 1e308, "tags": {"a": [1, {"b": None}]}},
            {"text": "Astral \U0001f600 is fine.", "title": None, "url": None}]  # fmt: skip
    docs = load_documents([write(tmp_path / "ok.jsonl", "\n".join(json.dumps(r) for r in rows))]).documents
    assert [(d.id, d.title, d.url) for d in docs] == [("7", "", ""), ("ok:2", "", "")]
    assert docs[0].metadata == {"score": 1e308, "tags": {"a": [1, {"b": None}]}}
    assert docs[1].text == "Astral \U0001f600 is fine."


def test_jsonl_lines_names_a_mis_encoded_line(tmp_path):
    path = write(tmp_path / "q.jsonl", b'{"a": 1}\n{"b": "caf\xe9"}\n')
    lines = jsonl_lines(path, "questions file", "pass another")
    assert next(lines) == (1, '{"a": 1}\n')
    with pytest.raises(DocumentError, match=f"^{path}:2: not valid UTF-8 \\(byte 0xe9 at offset 10\\)"):
        next(lines)
