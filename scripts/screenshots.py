"""The README's pictures: the app answering one question, wide (1280 px) and on a phone (390 px).

Serves the app in-process (sample corpus, extractive generator, CPU), drives Debian chromium through
playwright, and writes docs/screenshot.png, docs/screenshot-mobile.png and docs/screenshot-mobile-sources.png.
Shortcut on purpose: the sample corpus's index is built into a temporary folder each run, so the
pictures never depend on what data/index holds.

Usage: .venv/bin/python scripts/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"  # Debian's; `playwright install` would download another
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
QUESTION = "How can I lower my blood pressure?"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15 in CSS pixels


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(url: str, out: Path, profile: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        for name, viewport in (("screenshot.png", WIDE), ("screenshot-mobile.png", PHONE)):
            page = browser.new_page(viewport=viewport, device_scale_factor=1 if viewport is WIDE else 2)
            page.goto(url)
            page.locator("#question textarea").fill(QUESTION)
            page.locator("#ask").click()
            page.locator('#chatbot [data-testid="bot"] a', has_text="[1]").first.wait_for(timeout=60_000)
            page.locator("#share-link textarea, #share-link input").first.wait_for()
            page.wait_for_timeout(500)  # the last tokens and the share link settle
            page.screenshot(path=str(out / name))
            if viewport is PHONE:
                page.get_by_role("tab", name="Sources").click()
                page.locator("#sources li#source-1").wait_for()
                page.screenshot(path=str(out / "screenshot-mobile-sources.png"))
            page.close()
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for the png files")
    args = ap.parse_args()
    import app
    from medrag.build import build_index
    from medrag.config import PipelineConfig

    with tempfile.TemporaryDirectory() as tmp:
        config = PipelineConfig.from_env(generator="extractive", index_dir=str(Path(tmp) / "index"))
        build_index([Path(config.sample_docs)], config.index_dir, config)
        demo = app.build_demo(app.load_pipeline(config))
        port = free_port()
        demo.queue().launch(
            server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_kwargs()
        )
        try:
            shoot(f"http://127.0.0.1:{port}/", Path(args.out), tmp)
        finally:
            demo.close()
    print(f"wrote {args.out}/screenshot.png, screenshot-mobile.png, screenshot-mobile-sources.png")


if __name__ == "__main__":
    main()
