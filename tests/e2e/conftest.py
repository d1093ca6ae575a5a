"""Real Chromium (Debian's, headless) driven by Playwright against a real ``kefu serve`` on a real Redis.

Playwright's own browser download does not work here: we launch /usr/bin/chromium. A missing
Chromium fails the browser tests with the command that installs it — never a silent skip.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

E2E = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

sys.path.insert(0, str(E2E))


def chromium_path() -> str:
    for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if p and Path(p).exists():
            return p
    pytest.fail("Chromium is missing: the browser tests need Debian's Chromium at /usr/bin/chromium — "
                "run `apt-get install -y chromium`", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: `pip install playwright` "
                    "(the browser itself comes from `apt-get install -y chromium`)", pytrace=False)
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture
def pages(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``pages(name, url)`` opens a page in its own browser context (own sessionStorage/localStorage).

    Page errors and console errors are collected; the test fails if any page threw.
    """
    from playwright.sync_api import expect
    expect.set_options(timeout=10_000)
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(name: str, url: str, *, width: int = 1440, height: int = 900, locale: str = "zh-CN") -> Any:
        ctx = browser.new_context(viewport={"width": width, "height": height}, locale=locale,
                                  device_scale_factor=1)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda e: errors.append(f"{name}: {e}"))
        page.goto(url)
        return page

    yield open_page
    for ctx in contexts:
        ctx.close()
    assert not errors, "JavaScript errors in the pages:\n" + "\n".join(errors)
