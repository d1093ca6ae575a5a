"""What a person does in the three browser apps, as Playwright steps (waits are auto-waiting ``expect``s)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOTS = ROOT / "clients" / "web" / "screenshots"


def shoot(page: Any, name: str, *, publish: bool = False) -> None:
    """A screenshot in tests/artifacts/ (gitignored); with ``publish`` also in clients/web/screenshots/ (README)."""
    # transient notices are not what the picture is about
    hide = page.add_style_tag(content=".toasts, .conn-banner[data-state=ok] { display: none !important; }")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if publish and os.environ.get("KEFU_UPDATE_SCREENSHOTS"):  # the README's pictures change on purpose only
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    hide.evaluate("node => node.remove()")


def sign_in(page: Any, login: str, password: str) -> None:
    page.get_by_test_id("login-account").fill(login)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()


def console_login(page: Any, login: str, password: str, *, status: str = "online",
                  stores: list[str] | None = None) -> None:
    """Account and password, then the stores to serve now and the starting status (R4)."""
    sign_in(page, login, password)
    expect(page.get_by_test_id("start-serving")).to_be_visible()
    if stores is not None:
        for box in page.locator("[data-testid^=store-]").all():
            store = (box.get_attribute("data-testid") or "")[len("store-"):]
            if store and box.get_attribute("type") == "checkbox":
                box.set_checked(store in stores)
    page.get_by_test_id(f"start-{status}").click()
    page.get_by_test_id("start-serving").click()
    expect(page.get_by_test_id("status-switch")).to_have_attribute("data-status", status)


def dashboard_login(page: Any, login: str, password: str) -> None:
    sign_in(page, login, password)
    expect(page.get_by_test_id("member-row").first).to_be_visible()


def conv_item(page: Any, conv: str) -> Any:
    return page.locator(f"[data-testid=conv-item][data-conv='{conv}']")


def bubbles(page: Any) -> Any:
    """The chat bubbles shown (confirmed and pending), in order."""
    return page.locator("[data-testid=messages] [data-testid=bubble]")


def send(page: Any, text: str) -> None:
    """Type and press Enter (Enter sends; Shift+Enter would add a line)."""
    box = page.get_by_test_id("composer")
    box.fill(text)
    box.press("Enter")


def member_row(page: Any, member: str) -> Any:
    return page.locator(f"[data-testid=member-row][data-member='{member}']")


def texts(page: Any) -> list[str]:
    return [t.strip() for t in bubbles(page).all_inner_texts()]
