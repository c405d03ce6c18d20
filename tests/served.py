"""What the tests that serve the app share: a free port, the demo served as app.main serves it, and chromium.

`serve(demo, ...)` queues and launches a built demo on 127.0.0.1 with app.launch_kwargs() (the page's CSS,
theme, upload limit and the /ask middleware) and closes it afterwards. `chromium()` starts Debian's
chromium through playwright, and skips the test when it is missing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(demo, **queue) -> Iterator[str]:
    """`demo` queued (gradio's queue arguments in `queue`) and launched as the app launches it; yields its URL."""
    port = free_port()
    demo.queue(**queue).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_kwargs()
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is missing: apt-get install chromium (scripts/test.sh installs it)")


@contextmanager
def chromium():
    """A headless chromium (playwright's Browser); each `new_context()` of it is a visitor of its own."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        engine = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield engine
        finally:
            engine.close()
