"""Debian's Chromium driven by playwright, for every test that opens a page (never ``playwright install``)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "needs Debian's chromium (apt-get install chromium)"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


@contextlib.contextmanager
def chromium():
    """A headless Chromium, closed on the way out."""
    from playwright.sync_api import sync_playwright  # only the browser tests load playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def watched_page(browser, width: int = 1400, height: int = 1000):
    """A new page of ``browser``; the test fails if a script on it throws."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        page.close()
    assert not errors, errors  # no uncaught script error anywhere


def open_report(report: Path, rows: str, *, screenshot: Path | None = None) -> dict:
    """Open an HTML report file as a reader would and print it: its pictures ``[alt, complete, natural width]``,
    the text of the rows matched by the CSS selector ``rows``, its ``h2`` headings and the printed PDF's bytes."""
    with chromium() as browser, watched_page(browser, 1200, 900) as page:
        page.goto(Path(report).as_uri())
        page.wait_for_load_state("load")
        seen = {"images": page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])"),
                "rows": page.eval_on_selector_all(rows, "els => els.map(e => e.innerText)"),
                "headings": page.eval_on_selector_all("h2", "els => els.map(e => e.innerText)")}
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        page.emulate_media(media="print")
        seen["pdf"] = page.pdf()
    return seen
