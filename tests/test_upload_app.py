"""Upload in the app, in a real browser: a visitor's document is cited in their answer and nowhere else.

A small index (tests/test_session_docs.py's three passages) served by app.build_demo; two pages
are two gradio sessions, open at the same time. Debian chromium through playwright, as in
tests/test_app.py (skipped when chromium is missing).
"""

from __future__ import annotations

import time

import pytest
from pdfs import make_pdf
from served import chromium, serve
from test_session_docs import LEAFLET, QUESTION, pipeline  # noqa: F401  (the module's pipeline fixture)

import app
from medrag.ui import YOUR_DOCUMENT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(pipeline):  # noqa: F811
    with serve(app.build_demo(pipeline), default_concurrency_limit=4, max_size=64) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as engine:
        yield engine


def open_page(browser, server):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()  # a context: its own session
    page.goto(server)
    page.locator("#question textarea").wait_for()
    return page


def open_panel(page) -> None:
    if not page.locator("#upload").is_visible():  # a closed accordion's content is not rendered
        page.locator("#upload-panel").get_by_text("Ask about your own document").click()
    page.locator("#upload-files").wait_for()


def upload(page, path) -> None:
    open_panel(page)
    page.locator("#upload input[type=file]").set_input_files(str(path))


def ask(page, question: str) -> str:
    """Ask and wait for the answer (cited, or declined); returns the bot's last message text."""
    before = page.locator('#chatbot [data-testid="bot"]').count()
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    bot = page.locator('#chatbot [data-testid="bot"]').nth(before)
    bot.locator("small, .declined").first.wait_for(timeout=60_000)
    return bot.inner_text()


def test_an_uploaded_document_is_cited_only_in_its_own_session(server, browser, tmp_path):
    pdf = tmp_path / "zorvatide-leaflet.pdf"
    pdf.write_bytes(make_pdf([LEAFLET[1:]], LEAFLET[0]))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    mine, theirs = open_page(browser, server), open_page(browser, server)

    upload(mine, empty)  # a bad file first: its message, and the session keeps working
    mine.get_by_text("empty.txt is empty (0 bytes)").first.wait_for(timeout=30_000)
    mine.locator("#upload", has_text="empty.txt").wait_for(state="detached")  # its event has ended: the box is free
    upload(mine, pdf)
    mine.locator("#upload-files", has_text="zorvatide-leaflet.pdf").wait_for(timeout=120_000)
    limits = mine.locator("#upload-limits").inner_text()
    assert "10 MB and 50 pages" in limits and "3 files per session" in limits, limits

    answer = ask(mine, QUESTION)
    assert f"({YOUR_DOCUMENT.lower()})" in answer and "Zorvatide patient leaflet" in answer, answer
    mine.get_by_role("tab", name="Sources").click()
    badge = mine.locator("#sources li#source-1 .your-doc")
    badge.wait_for()
    assert badge.inner_text() == YOUR_DOCUMENT

    other = ask(theirs, QUESTION)  # the other session, open all along, never sees the file
    assert "Declined" in other and "zorvatide" not in other.lower().replace(QUESTION.lower(), ""), other
    open_panel(theirs)
    assert "No document of yours yet" in theirs.locator("#upload-files").inner_text()
    theirs.get_by_role("tab", name="Sources").click()
    theirs.locator("#sources li#source-1").wait_for()
    assert theirs.locator("#sources .your-doc").count() == 0
    assert "leaflet" not in theirs.locator("#sources").inner_text().lower()

    held = [d for d in app._LIVE.values() if d.files]
    assert [f.name for d in held for f in d.files] == ["zorvatide-leaflet.pdf"]
    docs = held[0]
    mine.context.close()  # the session ends: its files are dropped (gradio notices the closed heartbeat)
    deadline = time.monotonic() + 60
    while len(docs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(docs) == 0 and docs.files == []
    theirs.context.close()
