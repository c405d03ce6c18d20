"""Minimal PDFs written by hand for tests and the upload bench: pages of Helvetica text lines, or none.

Shortcut on purpose: text is Latin-1 (other characters become "?"), one line per `Tj`; pypdf
reads it back as written, which is all the loaders need.
"""

from __future__ import annotations

import textwrap


def pdf_string(line: str) -> str:
    line = line.encode("latin-1", "replace").decode("latin-1")
    return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A PDF with one page per list of lines (an empty list: a page with no text, as a scan has)."""
    n = len(pages)
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        content = "BT /F1 11 Tf 56 760 Td " + " 0 -14 Td ".join(f"{pdf_string(x)} Tj" for x in lines) + " ET"
        page_no, content_no = len(objects) + 1, len(objects) + 2
        kids.append(f"{page_no} 0 R")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_no} 0 R"
            " /Resources << /Font << /F1 3 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}\nendstream")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {n} >>"
    objects.append(f"<< /Title {pdf_string(title)} >>" if title else "<< >>")
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>"
    out += f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def paginate(paragraphs: list[str], pages: int, lines_per_page: int = 48, width: int = 95) -> list[list[str]]:
    """`paragraphs` wrapped at `width` and laid out on `pages` pages (cycled until they are full)."""
    lines: list[str] = []
    i = 0
    while len(lines) < pages * lines_per_page and paragraphs:
        lines += [*textwrap.wrap(paragraphs[i % len(paragraphs)], width), ""]
        i += 1
    return [lines[p * lines_per_page : (p + 1) * lines_per_page] for p in range(pages)]
