"""medrag.ui: citation links, urgent/declined styling, escaping, highlighting, the API's JSON, status."""

from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrag.config import PipelineConfig
from medrag.prompts import CANNOT_ANSWER_PHRASE, DISCLAIMER, URGENT_CARE_MESSAGE
from medrag.types import Answer, Chunk, Citation, Hit
from medrag.ui import (
    DECLINED_NOTE,
    answer_json,
    answer_markdown,
    cited_numbers,
    code,
    highlight,
    inert,
    link_citations,
    mode_line,
    safe_url,
    sources_html,
    status_markdown,
)

EVIL = "Wheeze <script>alert(1)</script> and <b>bold</b>. Use an inhaler."


def hit(n: int, text: str = "Some text.", url: str = "https://example.org/a", title: str = "Asthma") -> Hit:
    chunk = Chunk(id=f"doc{n}#0", doc_id=f"doc{n}", title=title, text=text, url=url)
    return Hit(chunk, score=0.0325, rank=n, dense_score=0.71234, bm25_score=8.5, retrievers=("dense", "bm25"))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://medlineplus.gov/asthma.html", "https://medlineplus.gov/asthma.html"),
        ("http://example.org/a?b=1&c=2#x", "http://example.org/a?b=1&c=2#x"),
        ("https://example.org/a (b)", None),  # whitespace inside: not a url we trust
        ("https://example.org/a_(b)", "https://example.org/a_%28b%29"),
        ('https://example.org/"onmouseover', "https://example.org/%22onmouseover"),
        ("javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("/relative/path", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_url(url, expected):
    assert safe_url(url) == expected


def test_link_citations_links_each_number_to_its_source():
    sources = [hit(1, url="https://a.example/x", title='Say "hi"'), hit(2, url="https://b.example/y", title="B")]
    out = link_citations("Wheeze is common [1]. Rest helps [1, 2]. Unknown [7].", sources)
    assert out == (
        'Wheeze is common [[1]](https://a.example/x "Say &quot;hi&quot;"). '
        'Rest helps [[1]](https://a.example/x "Say &quot;hi&quot;")[[2]](https://b.example/y "B"). Unknown &#91;7&#93;.'
    )


def test_link_citations_escapes_html_and_skips_unsafe_urls():
    out = link_citations("<script>x</script> a [1]", [hit(1, url="javascript:alert(1)")])
    assert out == "&lt;script&gt;x&lt;/script&gt; a &#91;1&#93;"


def test_cited_numbers_in_order_without_out_of_range():
    assert cited_numbers("a [2]. b [1, 2]. c [5].", 3) == [2, 1]


def test_answer_markdown_answer_has_links_and_source_list():
    ans = Answer("q", "Inhalers help [1].", sources=[hit(1)], unsupported=["x"])
    md = answer_markdown(ans)
    assert '[[1]](https://example.org/a "Asthma")' in md
    assert "Sources: &#91;1&#93; [Asthma](https://example.org/a)" in md
    assert "1 sentence not clearly supported" in md


def test_answer_markdown_lists_each_cited_page_once():
    two_chunks = [hit(1), hit(2, title="Other", url="https://example.org/b"), hit(1)]
    md = answer_markdown(Answer("q", "A [3]. B [2]. C [1].", sources=two_chunks))
    assert (
        "Sources: &#91;3&#93;&#91;1&#93; [Asthma](https://example.org/a) · &#91;2&#93; [Other](https://example.org/b)"
        in md
    )


def test_answer_markdown_urgent_is_a_red_callout():
    md = answer_markdown(Answer("chest pain", URGENT_CARE_MESSAGE, kind="urgent", declined=True))
    assert md.startswith('<div class="urgent">') and "Call your local emergency number" in md


def test_answer_markdown_declined_is_a_note_not_an_error():
    md = answer_markdown(Answer("q", CANNOT_ANSWER_PHRASE, kind="declined", declined=True))
    assert md.startswith('<div class="declined">')
    assert DECLINED_NOTE in md and CANNOT_ANSWER_PHRASE in md


def test_highlight_marks_spans_and_escapes_everything():
    text = "a <b> c. d & e."
    assert highlight(text, [(2, 8)]) == "a <mark>&lt;b&gt; c.</mark> d &amp; e."
    assert (
        highlight(text, [(9, 12), (0, 1), (10, 15), (40, 50)]) == "<mark>a</mark> &lt;b&gt; c. <mark>d &amp; e.</mark>"
    )
    assert highlight(text, []) == "a &lt;b&gt; c. d &amp; e."


def test_sources_html_escapes_document_html_and_marks_the_cited_sentence():
    start = EVIL.index("Use")
    ans = Answer(
        "q",
        "Use an inhaler [1].",
        sources=[hit(1, EVIL, title="<i>T</i>"), hit(2, url="javascript:alert(1)", title="Other")],
        citations=[Citation(1, "Use an inhaler [1].", 1.0, True, (start, len(EVIL)))],
    )
    out = sources_html(ans)
    assert "<script" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;b&gt;bold&lt;/b&gt;" in out and "&lt;i&gt;T&lt;/i&gt;" in out
    assert "<mark>Use an inhaler.</mark>" in out
    assert '<a href="https://example.org/a" target="_blank" rel="noopener noreferrer">' in out
    assert "javascript:" not in out
    assert "dense cosine 0.712 · BM25 8.50 · fused 0.0325 · found by dense + bm25" in out
    assert 'id="source-1"' in out and 'class="source cited"' in out and 'class="source"' in out


def test_sources_html_without_answer_or_sources():
    assert "Ask a question" in sources_html(None)
    assert "No sources" in sources_html(Answer("<q>", URGENT_CARE_MESSAGE, kind="urgent"))
    assert "&lt;q&gt;" in sources_html(Answer("<q>", URGENT_CARE_MESSAGE, kind="urgent"))


def test_answer_json_shape():
    ans = Answer(
        "q",
        "Use an inhaler [1].",
        sources=[hit(1)],
        citations=[Citation(1, "Use an inhaler [1].", 0.9, True, (0, 4))],
        timings={"total": 0.123456},
        versions={"generator": "extractive"},
    )
    d = json.loads(json.dumps(answer_json(ans)))
    assert d["answer"] == "Use an inhaler [1]." and d["kind"] == "answer" and d["declined"] is False
    assert d["sources"] == [
        {
            "rank": 1,
            "title": "Asthma",
            "url": "https://example.org/a",
            "doc_id": "doc1",
            "chunk_id": "doc1#0",
            "text": "Some text.",
            "dense_score": 0.71234,
            "bm25_score": 8.5,
            "score": 0.0325,
            "retrievers": ["dense", "bm25"],
        }
    ]
    assert d["citations"] == [
        {"number": 1, "sentence": "Use an inhaler [1].", "support": 0.9, "supported": True, "span": [0, 4]}
    ]
    assert d["timings"] == {"total": 0.1235} and d["disclaimer"] == DISCLAIMER


class _Gen:
    def __init__(self, name, versions, fallback_reason=None):
        self.name, self._v, self.fallback_reason = name, versions, fallback_reason

    def versions(self):
        return self._v


def test_mode_line():
    assert mode_line(_Gen("extractive", {})).startswith("extractive (CPU)")
    hf = _Gen(
        "hf",
        {"base_model": "mistralai/Mistral-7B-Instruct-v0.2", "quantization": "nf4", "adapter": "me/medrag-lora@abc123"},
    )
    assert mode_line(hf) == "`mistralai/Mistral-7B-Instruct-v0.2` + adapter `me/medrag-lora@abc123` (GPU, nf4)"
    assert "could not load: no GPU" in mode_line(_Gen("extractive", {}, "no GPU"))


def test_status_markdown_reads_the_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"corpus_sha256": "f" * 64, "embedding_model": "m", "index_type": "flat", "counts": {"chunks": 7}})
    )
    pipeline = SimpleNamespace(
        config=PipelineConfig(index_dir=str(tmp_path), sample_docs=str(tmp_path / "none")),
        _index=None,
        _generator=_Gen("extractive", {}),
    )
    md = status_markdown(pipeline)
    assert "**Mode:** extractive (CPU)" in md
    assert "`ffffffffffff`" in md and "- chunks: 7" in md and "- index type: flat" in md
    assert "gradio" in md and "transformers" in md and "How it works" in md and DISCLAIMER in md


# --- inert: what a visitor, a document or a manifest supplies never becomes a tag, link or image -----
LINK_MAKERS = re.compile(r"[<>\[\]\\]|(?i:https?:|ftp:|mailto:|www\.)|@")


@pytest.mark.parametrize(
    "text",
    [
        "![x](https://attacker.invalid/p.png) [Official advice](https://attacker.invalid/)",
        "<https://attacker.invalid/a> www.attacker.invalid mail@attacker.invalid HTTP://X",
        "[ref][1]\n\n[1]: https://attacker.invalid/r",
        "&#33;[y](https://attacker.invalid/e.png) \\[not a link\\]",
        "<img src=https://attacker.invalid/i.png>",
    ],
)
def test_inert_leaves_nothing_that_links(text):
    out = inert(text)
    assert not LINK_MAKERS.search(out) and html.unescape(out) == text


@given(st.text())
def test_inert_property(text):
    out = inert(text)
    assert not LINK_MAKERS.search(out) and html.unescape(out) == text


@given(st.text())
def test_code_spans_hold_any_value(value):
    span = code(value)
    fence = re.match(r"`+", span).group()
    inner = span[len(fence) : -len(fence)]
    assert span.endswith(fence) and "\n" not in span and fence not in inner
    assert inner.strip() == " ".join(str(value).split())


def test_status_markdown_shows_hostile_manifest_and_names_inert(tmp_path):
    evil = "x ![i](https://attacker.invalid/i.png) [l](https://attacker.invalid/)"
    manifest = {
        "corpus_sha256": "`" + evil,
        "embedding_model": "m`` " + evil + "\n\n" + evil,
        "index_type": evil,
        "built_at": evil,
        "counts": {"documents": evil, "chunks": 3},
        "extra": {"sources": [evil]},
    }
    pipeline = SimpleNamespace(
        config=PipelineConfig(index_dir=str(tmp_path), sample_docs=str(tmp_path / "none")),
        _index=SimpleNamespace(manifest=manifest),
        _generator=_Gen("hf", {"base_model": evil, "adapter": evil}),
        index_source=evil,
    )
    from markdown_it import MarkdownIt  # CommonMark, as gradio's marked reads links and images

    page = MarkdownIt("commonmark").render(status_markdown(pipeline))
    assert page.count("attacker") >= 10 and "<img" not in page and "<a " not in page  # autolinks: see inert's tests
