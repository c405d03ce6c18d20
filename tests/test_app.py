"""The app end to end: a real pipeline (extractive, CPU) served on a free port, once per session.

The corpus is the built-in sample plus one note whose text holds `<script>` and `<b>` markup, and
its index is built into a temporary folder. Clients: gradio_client for `/ask` and for sessions,
Debian chromium through playwright for the page itself (skipped when chromium is missing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

import pytest
from served import CHROMIUM, CHROMIUM_FLAGS, need_chromium, serve

import app
from medrag.build import build_index
from medrag.config import REPO_ROOT, PipelineConfig
from medrag.errors import IndexLoadError
from medrag.prompts import DISCLAIMER
from medrag.request import Request

# the README's picture: refreshed only on request (README_SCREENSHOT=docs/screenshot.png), so a test run
# never modifies tracked files
SCREENSHOT_ENV = "README_SCREENSHOT"
MARKUP_NOTE = """---
title: Hiccups <i>markup test</i> ![t](https://attacker.invalid/title.png)
url: https://example.org/hiccups
source: MedRAG tests
---
Hiccups are sudden, involuntary contractions of the diaphragm, the muscle under the lungs. <script>alert(1)</script>
Most bouts of hiccups stop on their own within a few minutes, and <b>bold</b> sipping cold water may help them stop \
![x](https://attacker.invalid/doc.png) [Official advice](https://attacker.invalid/doc) https://attacker.invalid/bare.
"""
# a share link as an attacker would write it: markdown image and link, autolinks, a reference link, entities, LaTeX
INJECTION = (
    "![x](https://attacker.invalid/p.png) [Official advice](https://attacker.invalid/) "
    "<https://attacker.invalid/a> https://attacker.invalid/b www.attacker.invalid mail@attacker.invalid "
    "[ref][1] &#33;[y](https://attacker.invalid/e.png) $$\\href{https://attacker.invalid/k}{k}$$\n\n"
    "[1]: https://attacker.invalid/r"
)
ASTHMA = "What are the symptoms of asthma?"
BLOOD_PRESSURE = "How can I lower my blood pressure?"
HICCUPS = "What are hiccups and how do they stop?"
CHUNK_ID = re.compile(r"<code>([^<]+)</code>")


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, cache_dir):
    corpus = tmp_path_factory.mktemp("corpus") / "docs"
    shutil.copytree(REPO_ROOT / "data" / "sample", corpus)
    (corpus / "hiccups-markup-test.md").write_text(MARKUP_NOTE, encoding="utf-8")
    config = PipelineConfig(
        index_dir=str(tmp_path_factory.mktemp("index") / "index"),
        sample_docs=str(corpus),
        generator="extractive",
        cache_dir=str(cache_dir),
    )
    build_index([corpus], config.index_dir, config)  # only the default data/index is built unasked
    return app.load_pipeline(config)


@pytest.fixture(scope="session")
def server(pipeline):
    with serve(app.build_demo(pipeline), default_concurrency_limit=4, max_size=64) as url:
        yield url


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def chat(c, question: str):
    """Ask through the Chat tab's event, in `c`'s session; returns (chatbot messages, sources HTML)."""
    out = c.predict(question, [], 5, "hybrid", 0.2, 512, api_name="/chat")
    return out[0], out[1]


def check_citations(result: dict) -> None:
    n = len(result["sources"])
    markers = [int(x) for m in re.finditer(r"\[(\d+(?:,\s*\d+)*)\]", result["answer"]) for x in m.group(1).split(",")]
    assert markers, result["answer"]
    assert all(1 <= x <= n for x in markers)
    assert result["citations"] and all(1 <= c["number"] <= n for c in result["citations"])
    for c in result["citations"]:
        if c["span"]:
            a, b = c["span"]
            assert 0 <= a < b <= len(result["sources"][c["number"] - 1]["text"])


# --- API ------------------------------------------------------------------------------------
def test_only_ask_and_chat_are_callable_and_only_ask_is_documented(server):
    info = client(server).view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/ask"]


def test_ask_returns_json_with_sources_and_valid_citations(server, pipeline):
    result = client(server).predict(ASTHMA, 5, "hybrid", api_name="/ask")
    assert result["kind"] == "answer" and not result["declined"]
    assert len(result["sources"]) == 5 and result["sources"][0]["doc_id"] == "asthma"
    assert result["sources"][0]["url"] == "https://medlineplus.gov/asthma.html"
    assert set(result["sources"][0]) >= {
        "rank",
        "title",
        "url",
        "doc_id",
        "chunk_id",
        "text",
        "dense_score",
        "bm25_score",
        "score",
        "retrievers",
    }
    check_citations(result)
    assert result["disclaimer"] == DISCLAIMER
    assert result["versions"]["generator"] == "extractive" and "total" in result["timings"]
    direct = pipeline.answer(ASTHMA, Request(top_k=5, mode="hybrid"))
    assert [s["chunk_id"] for s in result["sources"]] == [h.chunk.id for h in direct.sources]


def test_ask_honours_top_k_and_mode(server):
    result = client(server).predict(BLOOD_PRESSURE, 2, "bm25", api_name="/ask")
    assert len(result["sources"]) == 2 and all(s["retrievers"] == ["bm25"] for s in result["sources"])


def test_ask_reports_bad_input_and_emergencies_without_errors(server):
    c = client(server)
    empty = c.predict("   ", 5, "hybrid", api_name="/ask")
    assert empty["kind"] == "invalid" and empty["declined"] and empty["answer"]
    urgent = c.predict("I have crushing chest pain and my left arm is numb", 5, "hybrid", api_name="/ask")
    assert urgent["kind"] == "urgent" and "emergency" in urgent["answer"] and urgent["sources"] == []


def raw_call(server: str, body: dict, path: str = "call/ask") -> tuple[str, object]:
    """A raw HTTP call of /ask, as the README's curl example makes it: (last SSE event, its data), or the HTTP
    status and body when the POST itself is refused."""
    import httpx

    posted = httpx.post(
        server + "gradio_api/" + path, content=json.dumps(body), headers={"content-type": "application/json"}
    )
    if posted.status_code != 200:
        return str(posted.status_code), posted.json()
    stream = httpx.get(f"{server}gradio_api/call/ask/{posted.json()['event_id']}", timeout=60).text
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
    return events[-1][0], json.loads(events[-1][1])


@pytest.mark.parametrize(
    "body, path, problem",
    [
        ({"data": []}, "call/ask", "The question is missing"),
        ({"data": [None, 5, "hybrid"]}, "call/ask", "The question is missing"),
        ({"data": [ASTHMA, "abc", "hybrid"]}, "call/ask", "top_k must be a whole number from 1 to 10"),
        ({"data": [ASTHMA, 0, "hybrid"]}, "call/ask", "top_k must be a whole number from 1 to 10"),
        ({"data": [ASTHMA, 5, "fuzzy"]}, "call/ask", "mode must be one of hybrid, dense, bm25"),
        ({"data": [42, 5, "hybrid"]}, "call/ask", "The question must be text, not int"),
        ({"data": [["a"], 5, "hybrid"]}, "call/ask", "The question must be text, not list"),
        ({"data": ["asthma \ud800 wheeze", 5, "hybrid"]}, "call/ask", "lone surrogate (U+D800 at character 7)"),
        ({}, "call/v2/ask", "The question is missing"),
        ({"question": ASTHMA, "nope": 1}, "call/v2/ask", "/ask takes question, top_k, mode, not nope"),
    ],
)
def test_raw_http_ask_names_each_bad_argument(server, body, path, problem):
    event, data = raw_call(server, body, path)
    assert event in ("error", "422") and problem in data["error"], (event, data)
    assert app.GENERIC_ERROR not in data["error"] and "Traceback" not in data["error"]


def test_raw_http_ask_fills_left_out_arguments_with_defaults(server):
    event, data = raw_call(server, {"data": [ASTHMA]})
    assert event == "complete" and len(data[0]["sources"]) == 5 and data[0]["sources"][0]["doc_id"] == "asthma"
    event, data = raw_call(server, {"question": ASTHMA, "top_k": 2}, "call/v2/ask")
    assert event == "complete" and len(data[0]["sources"]) == 2


def test_client_ask_names_bad_arguments(server):
    from gradio_client.exceptions import AppError

    c = client(server)
    for args, problem in [
        ((ASTHMA, "abc", "hybrid"), "top_k must be a whole number"),
        ((3, 5, "hybrid"), "The question must be text, not int"),
        ((ASTHMA, 5, "bm99"), "mode must be one of"),
    ]:
        with pytest.raises(AppError, match=re.escape(problem)):
            c.predict(*args, api_name="/ask")
    assert c.predict(ASTHMA, "3", "BM25", api_name="/ask")["sources"][0]["retrievers"] == ["bm25"]


class Configured:
    """The session's pipeline with other settings (what the sliders start at)."""

    def __init__(self, inner, **changes):
        self.inner, self.config = inner, inner.config.replace(**changes)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_configured_values_outside_the_default_slider_ranges_still_answer(pipeline):
    """MEDRAG_MAX_NEW_TOKENS=8 once made gradio refuse every chat question (the slider started at 32)."""
    with serve(app.build_demo(Configured(pipeline, max_new_tokens=8, top_k=25, temperature=1.5))) as url:
        messages, sources, *_ = client(url).predict(ASTHMA, [], 10, "hybrid", 1.5, 8, api_name="/chat")
    assert len(messages) == 2 and 'id="source-10"' in sources


def test_two_concurrent_sessions_keep_their_own_sources(server, pipeline):
    """Two visitors at once, then the same follow-up each: it leans on that session's own history."""
    follow_up = "and what treatment helps?"
    clients = {ASTHMA: client(server), BLOOD_PRESSURE: client(server)}
    results: dict[str, list] = {}
    barrier = threading.Barrier(2)

    def visit(question: str) -> None:
        c = clients[question]
        barrier.wait()
        first = chat(c, question)[1]
        barrier.wait()
        second = chat(c, follow_up)[1]
        results[question] = [CHUNK_ID.findall(first), CHUNK_ID.findall(second)]

    threads = [threading.Thread(target=visit, args=(q,)) for q in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results[ASTHMA][0][0].startswith("asthma#")
    assert results[BLOOD_PRESSURE][0][0].startswith("high-blood-pressure#")
    for question, (first, second) in results.items():
        assert first == [h.chunk.id for h in pipeline.answer(question).sources]
        history = [{"role": "user", "content": question}]
        assert second == [h.chunk.id for h in pipeline.answer(follow_up, Request(history=history)).sources]
    assert results[ASTHMA][1] != results[BLOOD_PRESSURE][1]


def test_sources_html_escapes_document_markup(server):
    messages, sources = chat(client(server), HICCUPS)
    assert 'id="source-1"' in sources and "hiccups-markup-test#0" in sources
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sources and "<script" not in sources
    assert "&lt;b&gt;bold&lt;/b&gt;" in sources and "&lt;i&gt;markup test&lt;/i&gt;" in sources
    assert "<script" not in str(messages)


# --- the page, in a real browser ------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


def open_page(browser, url: str):
    """A page at `url` that starts with no conversation kept from an earlier test (the chat survives reloads)."""
    page = browser.new_page()
    page.goto(url.split("?")[0])
    page.evaluate("localStorage.clear()")
    page.goto(url)
    return page


def until(done, seconds: float) -> None:
    """Until `done()` is true or `seconds` have passed; the caller asserts what it waited for."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_loaded(page) -> None:
    """Until the page's load events have run: one of them fills the About tab's status."""
    page.get_by_role("tab", name="About").click()
    page.locator("#status", has_text="How it works").wait_for(timeout=30_000)


def ask_urgent_then_unanswerable(page):
    """From the Chat tab: an emergency (answered with the urgent message), then a question the sources cannot answer."""
    page.get_by_role("tab", name="Chat").click()
    for question, shown in (
        ("I have crushing chest pain and my left arm is numb", "urgent"),
        ("What is the airspeed velocity of an unladen swallow?", "declined"),
    ):
        page.locator("#question textarea").fill(question)
        page.locator("#ask").click()
        page.locator(f"#chatbot .{shown}").wait_for(timeout=30_000)
        wait_answered(page, question)  # Ask is ignored while an answer is still ending (gradio's trigger_mode "once")


def wait_answered(page, question: str) -> None:
    """Until the answer event for `question` has ended: its share link is set then."""
    from playwright.sync_api import expect

    share = page.locator("#share-link textarea, #share-link input").first
    link = "?q=" + quote(question, safe="!*'()")  # as the page's encodeURIComponent writes it
    expect(share).to_have_value(re.compile(re.escape(link) + "$"), timeout=30_000)


def ask_in_page(page, question: str) -> None:
    """Ask, and wait for this question's answer to cite (not an earlier answer's citations) and to end."""
    asked = page.locator('#chatbot [data-testid="user"]').count()
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    page.locator('#chatbot [data-testid="user"]').nth(asked).wait_for(timeout=30_000)
    bot = page.locator('#chatbot [data-testid="bot"]').nth(asked)
    bot.locator("a", has_text="[1]").first.wait_for(timeout=30_000)
    wait_answered(page, question)  # and its event has ended: the page takes the next question


@pytest.mark.browser
def test_browser_chat_citations_sources_and_screenshot(server, browser, tmp_path_factory):
    from playwright.sync_api import expect

    page = open_page(browser, server)
    ask_in_page(page, BLOOD_PRESSURE)
    link = page.locator('#chatbot [data-testid="bot"] a', has_text="[1]").first
    assert link.get_attribute("href") == "https://medlineplus.gov/highbloodpressure.html"
    assert DISCLAIMER in page.locator("#disclaimer").inner_text()
    share = page.locator("#share-link textarea, #share-link input").first
    expect(share).to_have_value(
        server + "?q=How%20can%20I%20lower%20my%20blood%20pressure%3F"
    )  # set when the answer ends
    target = os.environ.get(SCREENSHOT_ENV) or str(tmp_path_factory.mktemp("shot") / "screenshot.png")
    page.screenshot(path=target)
    assert Path(target).stat().st_size > 10_000

    page.get_by_role("tab", name="Sources").click()
    first = page.locator("#sources li#source-1")
    first.wait_for()
    assert first.locator("a").first.get_attribute("href") == "https://medlineplus.gov/highbloodpressure.html"
    assert first.locator("mark").count() >= 1
    page.close()


@pytest.mark.browser
def test_browser_share_link_asks_on_load(server, browser):
    page = open_page(browser, server + "?q=" + "What%20are%20the%20symptoms%20of%20asthma%3F")
    page.locator('#chatbot [data-testid="bot"] a', has_text="[1]").first.wait_for(timeout=30_000)
    assert ASTHMA in page.locator('#chatbot [data-testid="user"]').first.inner_text()
    page.get_by_role("tab", name="Sources").click()
    assert page.locator("#sources li#source-1 a").first.get_attribute("href") == "https://medlineplus.gov/asthma.html"
    page.close()


@pytest.mark.browser
def test_browser_shows_markup_as_text_urgent_and_declined_apart_and_clears(server, browser):
    page = open_page(browser, server)
    ask_in_page(page, HICCUPS)
    page.get_by_role("tab", name="Sources").click()
    sources = page.locator("#sources")
    sources.locator("li#source-1").wait_for()
    assert "<script>alert(1)</script>" in sources.inner_text()
    assert sources.locator("script, b").count() == 0
    ask_urgent_then_unanswerable(page)
    assert "Declined" in page.locator("#chatbot .declined").inner_text()
    page.locator("#clear").click()
    page.locator('#chatbot [data-testid="bot"]').first.wait_for(state="detached")
    page.get_by_role("tab", name="Sources").click()
    page.locator("#sources", has_text="Ask a question").wait_for()
    page.close()


def assert_inert(page, requests: list[str]) -> None:
    """Nothing on the page links to, shows or fetched anything from the attacker's host."""
    hrefs = [urlsplit(h).hostname or "" for h in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")]
    sources = page.eval_on_selector_all("img[src], image, source, iframe", "els => els.map(e => e.outerHTML)")
    assert not [h for h in hrefs if "attacker" in h], hrefs
    assert not [s for s in sources if "attacker" in s], sources
    assert not [u for u in requests if "attacker" in (urlsplit(u).hostname or "")], requests


@pytest.mark.browser
def test_browser_share_link_and_document_markdown_stay_inert(server, browser):
    page = open_page(browser, server)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "?q=" + quote(INJECTION))
    page.locator('#chatbot [data-testid="bot"]').first.wait_for(timeout=30_000)
    page.locator("#chatbot .thinking").wait_for(state="detached", timeout=30_000)
    share = page.locator("#share-link textarea, #share-link input").first
    expect_value(share, re.compile(r"\?q=."))  # the linked question's event has ended: Ask is taken again
    user = page.locator('#chatbot [data-testid="user"]').first.inner_text()
    assert "![x](https://attacker.invalid/p.png) [Official advice](https://attacker.invalid/)" in user
    assert "mail@attacker.invalid" in user and "&#33;" in user
    assert_inert(page, requests)

    ask_in_page(page, HICCUPS)  # document text and title quoted into the answer
    bot = page.locator('#chatbot [data-testid="bot"]').last
    assert "![x](https://attacker.invalid/doc.png) [Official advice](https://attacker.invalid/doc)" in bot.inner_text()
    assert "![t](https://attacker.invalid/title.png)" in bot.inner_text()
    assert bot.locator("a", has_text="[1]").first.get_attribute("href") == "https://example.org/hiccups"
    assert_inert(page, requests)
    page.close()


@pytest.mark.browser
def test_browser_share_link_on_a_space_points_at_the_space_page(pipeline, browser):
    with serve(app.build_demo(pipeline, space_id="someone/medrag-demo")) as url:
        page = open_page(browser, url)
        ask_in_page(page, ASTHMA)
        share = page.locator("#share-link textarea, #share-link input").first
        expected = "https://huggingface.co/spaces/someone/medrag-demo?q=What%20are%20the%20symptoms%20of%20asthma%3F"
        expect_value(share, expected)
        page.locator("#copy-link").click()
        expect_value(share, expected)
        page.close()


def expect_value(locator, value: str | re.Pattern) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_value(value)


class Gated:
    """The real pipeline, each answer held until `go` is set: a busy answer slot, on demand."""

    def __init__(self, inner):
        self.inner, self.go, self.entered = inner, threading.Event(), threading.Event()

    def stream(self, *args, **kwargs):
        self.entered.set()
        self.go.wait(60)
        yield from self.inner.stream(*args, **kwargs)

    def answer(self, *args, **kwargs):
        return list(self.stream(*args, **kwargs))[-1]

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.browser
def test_browser_page_view_without_question_takes_no_answer_slot(pipeline, browser):
    """One answer slot, room for one waiting request: a page view must not be that waiting request."""
    gated = Gated(pipeline)
    with serve(app.build_demo(gated), default_concurrency_limit=1, max_size=1) as url:
        try:
            busy = client(url).submit(ASTHMA, [], 5, "hybrid", 0.2, 512, api_name="/chat")  # holds the slot
            assert gated.entered.wait(30)
            page = open_page(browser, url)
            wait_loaded(page)
            waiting = client(url).submit(BLOOD_PRESSURE, 5, "hybrid", api_name="/ask")  # the one that may wait
            gated.go.set()
            assert waiting.result(timeout=60)["sources"][0]["doc_id"] == "high-blood-pressure"
            busy.result(timeout=60)
            assert page.locator('#chatbot [data-testid="bot"]').count() == 0  # and the page asked nothing
            page.close()
        finally:
            gated.go.set()  # the held answer ends, so the server can close


def luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = map(channel, rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


COLOURS_JS = """el => {
  const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const mix = (top, under) => { const a = top.length > 3 ? top[3] : 1;
    return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)); };
  const layers = [];
  for (let e = el; e; e = e.parentElement) layers.push(parse(getComputedStyle(e).backgroundColor));
  let bg = [255, 255, 255];
  for (const layer of layers.reverse()) if (layer.length) bg = mix(layer, bg);
  return {text: parse(getComputedStyle(el).color).slice(0, 3), background: bg};
}"""


@pytest.mark.browser
def test_browser_dark_theme_keeps_callouts_and_highlights_readable(server, browser):
    page = open_page(browser, server + "?__theme=dark")
    page.locator("body.dark, .dark").first.wait_for(timeout=30_000)
    deadline = time.monotonic() + 30  # the class comes first, the theme's stylesheet a moment later
    while luminance((body := page.locator("gradio-app").evaluate(COLOURS_JS))["background"]) >= 0.1:
        assert time.monotonic() < deadline, body  # the dark theme never came on
        time.sleep(0.2)
    ask_in_page(page, HICCUPS)
    page.get_by_role("tab", name="Sources").click()
    page.locator("#sources mark").first.wait_for()
    seen = {"mark": page.locator("#sources mark").first.evaluate(COLOURS_JS)}
    ask_urgent_then_unanswerable(page)
    seen |= {name: page.locator(f"#chatbot .{name}").last.evaluate(COLOURS_JS) for name in ("urgent", "declined")}
    for name, c in seen.items():
        assert contrast(c["text"], c["background"]) >= 4.5, (name, c)  # WCAG AA for body text
        assert luminance(c["background"]) < 0.2, (name, c)  # a dark box in the dark theme, not a light one
    page.close()


# --- the GPU wrapper ------------------------------------------------------------------------
class FakeHF:
    """Stands in for HFGenerator: streams the question back word by word."""

    name = "hf"

    def __init__(self):
        self.loaded = False

    def load(self):
        self.loaded = True
        return self

    def stream(self, question, sources, history=None, info=None, **kw):
        if info is not None:
            info.update(warnings=["trimmed"], versions={"base_model": "tiny", "adapter": "me/lora@abc"})
        yield from (f"{w} " for w in question.split())
        yield f"{len(sources)} {len(history or [])} {sorted(kw.items())}"

    def versions(self):
        return {"base_model": "tiny"}

    def load_adapter(self, adapter, revision="main"):
        return f"{adapter}@{revision}"


def test_warm_up_loads_and_wraps_only_the_hf_generator():
    from medrag.pipeline import RAGPipeline

    hf = FakeHF()
    pipeline = app.warm_up(RAGPipeline(PipelineConfig(), retriever=object(), generator=hf))
    wrapped = pipeline.generator
    assert isinstance(wrapped, app.GPUGenerator) and wrapped.inner is hf and hf.loaded
    assert wrapped.name == "hf" and wrapped.versions() == {"base_model": "tiny"}
    info = {}
    assert list(wrapped.stream("a b", ["s1"], [{"role": "user", "content": "x"}], max_new_tokens=8, info=info)) == [
        "a ",
        "b ",
        "1 1 [('max_new_tokens', 8)]",
    ]
    assert info == {"warnings": ["trimmed"], "versions": {"base_model": "tiny", "adapter": "me/lora@abc"}}
    assert wrapped.load_adapter("me/lora", "abc") == "me/lora@abc"  # the Hub refresh reaches the inner generator
    assert app.warm_up(pipeline).generator is wrapped  # never wrapped twice

    extractive = SimpleNamespace(name="extractive")
    assert app.warm_up(RAGPipeline(PipelineConfig(), retriever=object(), generator=extractive)).generator is extractive


# --- errors ---------------------------------------------------------------------------------
class BrokenPipeline:
    """Fails every question: with a user-facing MedRAGError, or with an internal error."""

    def __init__(self, error: Exception):
        self.config, self.error = PipelineConfig(), error

    def stream(self, question, history=None, **overrides):
        raise self.error
        yield  # a generator, like the real one

    def answer(self, question, history=None, **overrides):
        raise self.error


@pytest.mark.parametrize(
    "error, shown",
    [
        (RuntimeError("CUDA error at /secret/path.py line 12"), app.GENERIC_ERROR),
        (IndexLoadError("No index at data/index: run 'python index_builder.py'"), "No index at data/index"),
    ],
)
def test_errors_reach_visitors_as_short_messages_without_tracebacks(error, shown):
    from gradio_client.exceptions import AppError

    with serve(app.build_demo(BrokenPipeline(error))) as url:
        c = client(url)
        for call in (lambda: c.predict(ASTHMA, 5, "hybrid", api_name="/ask"), lambda: chat(c, ASTHMA)):
            with pytest.raises(AppError) as info:
                call()
            assert shown in str(info.value) and "secret" not in str(info.value) and "Traceback" not in str(info.value)


# --- retry, edit, stop (a paced model stand-in; the UI path is the real one) -----------------
class Paced:
    """The model stand-in: the extractive answer one word every `pace` seconds; counts words and closed streams."""

    name = "paced"

    def __init__(self, inner, pace: float = 0.03):
        self.inner, self.pace, self.made, self.closed = inner, pace, 0, 0

    def stream(self, question, sources, history=None, *, info=None, **kw):
        try:
            for delta in self.inner.stream(question, sources, history, info=info, **kw):
                for word in re.findall(r"\s*\S+", delta):
                    time.sleep(self.pace)
                    self.made += 1
                    yield word
        except GeneratorExit:
            self.closed += 1
            raise

    def versions(self):
        return {"generator": "paced"}


@pytest.fixture(scope="module")
def paced(pipeline):
    from medrag.pipeline import RAGPipeline

    return RAGPipeline(
        pipeline.config, embedder=pipeline.embedder, retriever=pipeline.retriever, generator=Paced(pipeline.generator)
    )


@pytest.fixture(scope="module")
def paced_server(paced):
    """One server for the chat-control browser tests."""
    with serve(app.build_demo(paced), default_concurrency_limit=4) as url:
        yield url


def messages(page, role: str) -> list[str]:
    return page.locator(f'#chatbot [data-testid="{role}"]').all_inner_texts()


@pytest.mark.browser
def test_browser_retry_and_edit_replace_the_last_answer(paced_server, paced, browser):
    page = open_page(browser, paced_server)
    ask_in_page(page, ASTHMA)
    before, words = paced.generator.made, len(messages(page, "bot")[0].split())
    page.locator('#chatbot [data-testid="bot"]').last.hover()
    page.locator('#chatbot button[aria-label="Retry"]').click()
    until(lambda: paced.generator.made >= before + words // 2, 30)  # the answer is made again
    assert paced.generator.made >= before + words // 2
    page.locator('#chatbot [data-testid="bot"] a', has_text="[1]").first.wait_for(timeout=30_000)
    assert messages(page, "user") == [ASTHMA] and len(messages(page, "bot")) == 1  # asked again, in place

    page.locator('#chatbot [data-testid="user"]').last.hover()
    page.locator('#chatbot button[aria-label="Edit"]').click()
    page.locator("#chatbot textarea").first.fill(BLOOD_PRESSURE)
    page.locator('#chatbot button[aria-label="Submit"]').click()
    link = page.locator('#chatbot [data-testid="bot"] a[href="https://medlineplus.gov/highbloodpressure.html"]')
    link.first.wait_for(timeout=30_000)
    wait_answered(page, BLOOD_PRESSURE)  # the Sources tab is set when the answer is complete
    assert messages(page, "user") == [BLOOD_PRESSURE] and len(messages(page, "bot")) == 1
    page.get_by_role("tab", name="Sources").click()
    assert "high-blood-pressure#" in page.locator("#sources").inner_text()
    page.close()


@pytest.mark.browser
def test_browser_stop_ends_the_answer_and_the_generation(paced_server, paced, browser):
    model = paced.generator
    model.pace = 0.3  # slow enough to press Stop mid-answer
    page = open_page(browser, paced_server)
    try:
        page.locator("#question textarea").fill(ASTHMA)
        page.locator("#ask").click()
        page.locator('#chatbot [data-testid="bot"]', has_text="Asthma").wait_for(timeout=30_000)  # words arrive
        closed = model.closed
        page.locator("#stop").click()
        page.locator("#chatbot", has_text="Stopped before the answer was complete").wait_for(timeout=10_000)
        until(lambda: model.closed > closed, 10)
        assert model.closed == closed + 1  # the model's stream was closed, not left running
        made = model.made
        time.sleep(1.0)
        assert model.made == made  # and no word is made after it
        model.pace = 0.03
        ask_in_page(page, BLOOD_PRESSURE)  # the chat goes on, the stopped turn kept above
        assert messages(page, "user") == [ASTHMA, BLOOD_PRESSURE]
    finally:
        model.pace = 0.03
        page.close()


@pytest.mark.browser
def test_browser_new_chat_mid_answer_ends_it_and_the_chat_stays_empty(paced_server, paced, browser):
    model = paced.generator
    model.pace = 0.3
    page = open_page(browser, paced_server)
    try:
        ask_in_page(page, BLOOD_PRESSURE)  # an earlier turn, which New chat forgets too
        page.locator("#question textarea").fill(ASTHMA)
        page.locator("#ask").click()
        page.locator('#chatbot [data-testid="bot"]', has_text="Asthma").wait_for(timeout=30_000)
        closed = model.closed
        page.locator("#clear").click()
        until(lambda: model.closed > closed, 10)
        assert model.closed == closed + 1  # the answer's stream was closed
        time.sleep(1.5)  # what the answer had streamed, and its failure listener, have arrived by now
        assert messages(page, "user") == [] and messages(page, "bot") == []
        page.reload()  # and the browser's copy was forgotten too
        wait_loaded(page)
        assert messages(page, "user") == []
        model.pace = 0.03
        page.get_by_role("tab", name="Chat").click()
        ask_in_page(page, BLOOD_PRESSURE)
        assert messages(page, "user") == [BLOOD_PRESSURE]
    finally:
        model.pace = 0.03
        page.close()


def test_exports_older_than_a_day_are_dropped_when_a_new_one_is_made_an_hour_on(monkeypatch, tmp_path):
    from medrag.conversation import Turn

    turns = [Turn("What is asthma?", "Asthma is a lung disease [1].")]
    monkeypatch.setattr(app, "EXPORTS", tmp_path / "exports")
    monkeypatch.setattr(app, "_exports_checked", 0.0)
    first = Path(app.export_file(turns))
    old = time.time() - app.CACHE_AGE - 60
    os.utime(first.parent, (old, old))
    Path(app.export_file(turns))
    assert first.parent.exists()  # looked for once an hour, not on every answer
    monkeypatch.setattr(app, "_exports_checked", time.time() - 3601)
    second = Path(app.export_file(turns))
    assert not first.parent.exists() and second.read_text(encoding="utf-8").startswith("#")
    assert app.export_file([]) is None


def test_an_upload_far_over_the_limit_is_refused_before_it_is_stored(server):
    import httpx

    from medrag.session_docs import MAX_BYTES

    big = {"files": ("big.txt", b"a" * (2 * MAX_BYTES + 1), "text/plain")}
    assert httpx.post(server + "gradio_api/upload", files=big, timeout=60).status_code == 413
    small = {"files": ("small.txt", b"a" * (MAX_BYTES + 1), "text/plain")}  # stored: the panel names the limit
    assert httpx.post(server + "gradio_api/upload", files=small, timeout=60).status_code == 200


def test_a_stopped_answer_is_kept_once_and_drawn_again_the_same(pipeline):
    """Stop cancels the answer event and the browser runs `settle`, its failure listener: what had arrived is
    kept, marked as stopped; a second call adds nothing and draws the same chat. After New chat it stays empty."""
    import gradio as gr

    from medrag.conversation import Turn

    with gr.Blocks():
        ui = app.chat_tab(pipeline)
    *_, settle, _ = app.turn_events(lambda *a: iter(()), ui)
    done, streaming = Turn("What is asthma?", "Asthma is a lung disease [1]."), Turn("And its causes?", "The causes")
    first = settle([done], streaming, "stop")
    kept = first[ui.turns]
    assert [t.question for t in kept] == [done.question, streaming.question] and kept[-1].stopped
    assert first[ui.pending] is None and "Stopped before the answer was complete" in first[ui.chatbot][-1]["content"]
    again = settle(kept, None, "stop")
    assert set(again) == {ui.chatbot} and again[ui.chatbot] == first[ui.chatbot]
    assert settle([done], None, "") == gr.skip()  # failed: the answer's own last message stands
    assert settle([], None, "") == gr.skip()
    cleared = settle([done], Turn("And its causes?", "The causes"), "clear")  # New chat pressed mid-answer
    assert cleared[ui.chatbot] == [] and cleared[ui.turns] == [] and cleared[ui.pending] is None
    assert cleared[ui.interrupted] == "" and cleared[ui.share] == ""


@pytest.mark.browser
def test_browser_reload_keeps_the_conversation_and_export_carries_its_sources(paced_server, browser):
    page = open_page(browser, paced_server)
    ask_in_page(page, ASTHMA)
    page.reload()  # the conversation comes back from the visitor's own browser
    page.locator('#chatbot [data-testid="bot"] a', has_text="[1]").first.wait_for(timeout=30_000)
    assert messages(page, "user") == [ASTHMA]
    bot = page.locator('#chatbot [data-testid="bot"] a', has_text="[1]").first
    assert bot.get_attribute("href") == "https://medlineplus.gov/asthma.html"

    with page.expect_download() as download:
        page.locator("#export").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert f"## 1. {ASTHMA}" in text and DISCLAIMER in text
    assert "[[1]](https://medlineplus.gov/asthma.html" in text  # the answer, its citations linked
    assert re.search(r"^1\. \[Asthma[^\]]*\]\(https://medlineplus\.gov/asthma\.html\) `asthma#\d+`$", text, re.M)

    page.locator("#clear").click()  # New chat: forgotten here and in the browser
    page.locator('#chatbot [data-testid="bot"]').first.wait_for(state="detached")
    page.reload()
    page.locator("#question textarea").wait_for()
    wait_loaded(page)
    assert messages(page, "user") == []
    page.close()


@pytest.mark.browser
def test_browser_a_vote_and_its_reason_reach_the_hub_dataset(paced, browser, monkeypatch, tmp_path):
    from feedback_hub import REPO, TOKEN, pushed_votes
    from hub_server import HubServer, use_hub

    from medrag.feedback import FeedbackStore

    with HubServer(token=TOKEN) as hub:
        use_hub(monkeypatch, hub, tmp_path / "hf-home", token=TOKEN)
        store = FeedbackStore(REPO, tmp_path / "votes", every=60)
        try:
            with serve(app.build_demo(paced, feedback=store)) as url:
                page = open_page(browser, url)
                ask_in_page(page, ASTHMA)
                page.locator('#chatbot [data-testid="bot"]').last.hover()
                page.locator('#chatbot button[aria-label="Dislike"]').click()
                page.locator("#reason textarea").fill("It did not say when to see a doctor")
                page.locator("#send-reason").click()
                page.locator("#reason-row").wait_for(state="hidden")
                page.get_by_role("tab", name="About").click()
                assert REPO in page.locator("#feedback-note").inner_text()
                page.close()
                store.push()
        finally:
            store.stop()
        vote, with_reason = pushed_votes(hub)
    assert vote["liked"] is False and vote["question"] == ASTHMA and vote["source_ids"][0].startswith("asthma#")
    assert "[1]" in vote["answer"] and vote["versions"]["generator"] == "paced"
    assert with_reason["vote_id"] == vote["vote_id"] and with_reason["reason"] == "It did not say when to see a doctor"


PHONE = {"width": 390, "height": 844}  # an iPhone 12-15 in CSS pixels


def inside(box: dict, width: int, height: int | None = None) -> bool:
    fits = box["x"] >= 0 and box["x"] + box["width"] <= width
    return fits and (height is None or box["y"] + box["height"] <= height)


@pytest.mark.browser
def test_browser_at_390_px_the_chat_fits_and_sources_read(paced_server, browser, tmp_path):
    page = open_page(browser, paced_server)
    page.set_viewport_size(PHONE)
    ask_in_page(page, ASTHMA)
    page.screenshot(path=str(tmp_path / "phone.png"))
    assert (tmp_path / "phone.png").stat().st_size > 10_000
    assert inside(page.locator("#question textarea").bounding_box(), **PHONE)  # the question box is on screen
    buttons = [page.locator(f"#{name}").bounding_box() for name in ("ask", "stop", "clear")]
    assert all(inside(b, PHONE["width"]) for b in buttons) and len({round(b["y"]) for b in buttons}) == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    user = page.locator('#chatbot [data-testid="user"]').first
    deadline = time.monotonic() + 10
    while True:  # the chatbot may still scroll itself to its end (autoscroll) after the answer: measure again
        user.evaluate("el => el.scrollIntoView({block: 'center', behavior: 'instant'})")
        page.wait_for_timeout(300)
        box = user.bounding_box()
        on_top = page.evaluate(
            "([x, y, el]) => { const top = document.elementFromPoint(x, y); "
            "return top && el.contains(top) ? '' : top ? top.outerHTML : `nothing at ${x},${y}: off screen`; }",
            [box["x"] + 12, box["y"] + 12, user.element_handle()],
        )
        if not on_top or time.monotonic() > deadline:
            break
    assert not on_top, f"drawn over the first question: {on_top[:200]}"  # something stays on top of it

    page.get_by_role("tab", name="Sources").click()
    first = page.locator("#sources li#source-1")
    first.wait_for()
    assert inside(first.bounding_box(), PHONE["width"])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.close()
