"""The three browser apps together in real Chromium, on a real kefu node and Redis (issue 9).

A buyer page, two member consoles and the dashboard are open at once: dispatch, replies, the
suspend switch (seen by the dashboard, never by the buyer: R7), a transfer that carries the
history (R18), a work order (R22, R23), a dropped socket that loses nothing (R17), and a reload
of every page.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect

from e2e_helpers import (bubbles, console_login, conv_item, dashboard_login, member_row, send, shoot, sign_in,
                         texts)
from kefu.clients.client import Client, http_json
from kefu_testing import PASSWORD

pytestmark = pytest.mark.browser


def run(coro: Any) -> Any:
    """Run async test helpers in a thread of their own: Playwright's sync API keeps a loop in this one."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def shop_for(make: Any, **kw: Any) -> Any:
    return run(make(**kw))


def name_things(shop: Any, store: str, store_name: str, seller_name: str) -> None:
    """Display names as a seller would set them (admin API), so the screenshots read like a real shop."""
    tok = http_json("POST", f"{shop.base}/api/login", {"login": shop.seller, "password": PASSWORD})["token"]
    http_json("PATCH", f"{shop.base}/api/admin/stores/{store}", {"name": store_name}, tok)
    http_json("PATCH", f"{shop.base}/api/admin/members/{shop.seller}", {"name": seller_name}, tok)


def test_buyer_two_consoles_and_dashboard_together(make: Any, pages: Any) -> None:
    shop = shop_for(make, stores={"flagship": ["presales"]}, groups=["presales", "aftersales"], members={
        "alice": {"groups": ["presales"], "name": "Alice 小爱", "capacity": 3},
        "bob": {"groups": ["presales", "aftersales"], "name": "Bob 小波", "capacity": 5},
    })
    name_things(shop, "flagship", "旗舰店 Flagship", "店长 Owner")
    base = shop.base

    # the seller's dashboard (main account): watch-only, it makes nobody online
    dash = pages("dashboard", f"{base}/web/dashboard/")
    dashboard_login(dash, shop.seller, PASSWORD)
    expect(member_row(dash, "alice")).to_have_attribute("data-status", "offline")

    alice = pages("alice", f"{base}/web/console/")
    console_login(alice, shop.login("alice"), PASSWORD)
    expect(member_row(dash, "alice")).to_have_attribute("data-status", "online")  # pushed (R11)

    bob = pages("bob", f"{base}/web/console/")
    console_login(bob, shop.login("bob"), PASSWORD, status="idle")
    expect(member_row(dash, "bob")).to_have_attribute("data-status", "idle")

    # a buyer writes; only Alice is online, so she gets it (R12.3) with the reason shown
    buyer = pages("buyer", f"{base}/web/chat/?seller={shop.seller}&store=flagship", width=900)
    send(buyer, "你好，我想买一件外套")
    expect(bubbles(buyer)).to_have_text(["你好，我想买一件外套"])
    expect(buyer.get_by_test_id("msg-pending")).to_have_count(0)   # stored: it has its seq
    conv = buyer.evaluate("window.kefu.current")
    assert conv
    item = conv_item(alice, conv)
    expect(item).to_be_visible()
    expect(item.get_by_test_id("conv-reason")).not_to_be_empty()
    expect(item.get_by_test_id("conv-unread")).to_have_text("1")
    item.click()
    expect(bubbles(alice)).to_have_text(["你好，我想买一件外套"])
    send(alice, "欢迎光临！请问要什么尺码？")
    expect(bubbles(buyer)).to_have_text(["你好，我想买一件外套", "欢迎光临！请问要什么尺码？"])
    expect(buyer.get_by_test_id("agent-name")).to_contain_text("Alice 小爱")
    expect(member_row(dash, "alice").get_by_test_id("member-load")).to_have_text("1/3")

    # Alice suspends: the dashboard shows it at once, the buyer page does not (R7), messages still flow (R6)
    alice.get_by_test_id("status-switch").click()
    expect(alice.get_by_test_id("status-switch")).to_have_attribute("data-status", "idle")
    expect(member_row(dash, "alice")).to_have_attribute("data-status", "idle")
    send(buyer, "还在吗？")
    expect(bubbles(alice)).to_have_text(["你好，我想买一件外套", "欢迎光临！请问要什么尺码？", "还在吗？"])
    expect(buyer.get_by_test_id("agent-name")).to_contain_text("Alice 小爱")
    page_text = buyer.locator("body").inner_text()
    assert "挂起" not in page_text and "Idle" not in page_text and "idle" not in page_text

    # transfer: only online colleagues are offered, live — Bob appears as soon as he resumes
    alice.get_by_test_id("transfer").click()
    dialog = alice.get_by_test_id("transfer-dialog")
    expect(dialog.get_by_test_id("xfer-none")).to_be_visible()
    bob.get_by_test_id("status-switch").click()
    expect(bob.get_by_test_id("status-switch")).to_have_attribute("data-status", "online")
    expect(member_row(dash, "bob")).to_have_attribute("data-status", "online")
    dialog.locator("[data-testid=xfer-member][data-member=bob]").click()
    dialog.get_by_test_id("xfer-reason").fill("尺码问题请小波跟进")
    dialog.get_by_test_id("modal-submit").click()
    expect(dialog).to_be_hidden()
    expect(alice.get_by_test_id("chat-bar")).to_be_visible()       # hers no more: read-only history
    expect(alice.get_by_test_id("composer")).to_be_hidden()

    # Bob gets it with its complete history and the system note (R18); the buyer sees Bob, no note
    bitem = conv_item(bob, conv)
    expect(bitem.get_by_test_id("conv-reason")).to_contain_text("Alice 小爱")
    bitem.click()
    expect(bubbles(bob)).to_have_text(["你好，我想买一件外套", "欢迎光临！请问要什么尺码？", "还在吗？"])
    expect(bob.get_by_test_id("msg-note")).to_contain_text("尺码问题请小波跟进")
    expect(buyer.get_by_test_id("agent-name")).to_contain_text("Bob 小波")
    send(bob, "您好，我是小波，M 码有货。")
    expect(bubbles(buyer)).to_have_count(4)
    expect(buyer.get_by_test_id("msg-note")).to_have_count(0)
    expect(member_row(dash, "bob").get_by_test_id("member-load")).to_have_text("1/5")
    expect(member_row(dash, "alice").get_by_test_id("member-load")).to_have_text("0/3")

    # a dropped socket loses nothing and duplicates nothing: both sides write while Bob is away (R17).
    # Bob's message goes out on the dying socket (lost), waits in the outbox, is resent with its cid;
    # he is back within the grace period (KEFU_GRACE=1 s in tests), so the chat stays his.
    pending = bob.evaluate("""() => {
        window.kefu.sock.drop(600);
        const box = document.querySelector("[data-testid=composer]");
        box.value = "稍等，我帮您确认一下库存";
        box.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
        return document.querySelectorAll("[data-testid=msg-pending]").length;
    }""")
    assert pending == 1
    send(buyer, "好的，我要 M 码")
    expect(bob.get_by_test_id("conn-banner")).to_have_attribute("data-state", "ok", timeout=15_000)
    expect(bubbles(buyer)).to_have_count(6)
    expect(bubbles(bob)).to_have_count(6)
    assert set(texts(buyer)[4:]) == {"稍等，我帮您确认一下库存", "好的，我要 M 码"}  # in the order they were stored
    expect(bubbles(bob)).to_have_text(texts(buyer))                      # same order on both sides, each once

    # a work order from Bob's chat reaches its handler, Alice, at once (R22, R23)
    bob.get_by_test_id("create-wo").click()
    wo_dialog = bob.get_by_test_id("wo-dialog")
    wo_dialog.get_by_test_id("wo-content").fill("买家要换 M 码，请仓库确认库存")
    wo_dialog.get_by_test_id("wo-order").fill("TB20261125001")
    wo_dialog.get_by_test_id("wo-handler-member").select_option("alice")
    wo_dialog.get_by_test_id("modal-submit").click()
    expect(wo_dialog).to_be_hidden()
    expect(alice.locator("#badge-wo")).to_have_text("1")
    alice.get_by_test_id("tab-wo").click()
    wo_item = alice.get_by_test_id("wo-item").first
    expect(wo_item.get_by_test_id("wo-item-content")).to_have_text("买家要换 M 码，请仓库确认库存")
    wo_item.click()
    alice.get_by_test_id("wo-act-in_progress").click()
    expect(alice.get_by_test_id("wo-detail-status")).to_have_attribute("class", "badge st-in_progress")

    # today's figures (R26) follow the assignments: one conversation, served by two members
    expect(dash.locator("[data-testid=stat][data-key=conversations] .stat-value")).to_have_text("1")
    expect(member_row(dash, "bob").get_by_test_id("member-today")).to_contain_text("1")

    shoot(bob, "console", publish=True)
    shoot(dash, "dashboard", publish=True)
    shoot(buyer, "chat", publish=True)

    # a reload of each page loses nothing: same buyer, same sessions, same history, nothing twice
    want = texts(buyer)
    buyer_id = buyer.evaluate("window.kefu.buyer")
    buyer.reload()
    expect(bubbles(buyer)).to_have_text(want)
    assert buyer.evaluate("window.kefu.buyer") == buyer_id
    expect(buyer.get_by_test_id("agent-name")).to_contain_text("Bob 小波")

    bob.reload()
    conv_item(bob, conv).click()
    expect(bubbles(bob)).to_have_count(6)
    expect(bob.get_by_test_id("msg-note")).to_have_count(1)
    expect(bubbles(bob)).to_have_text(want)
    send(bob, "重新加载后继续服务")
    expect(bubbles(buyer)).to_have_count(7)

    alice.reload()
    expect(alice.get_by_test_id("status-switch")).to_have_attribute("data-status", "idle")  # her last choice
    alice.get_by_test_id("tab-wo").click()
    expect(alice.get_by_test_id("wo-item")).to_have_count(1)

    dash.reload()
    expect(member_row(dash, "alice")).to_have_attribute("data-status", "idle")
    expect(member_row(dash, "bob")).to_have_attribute("data-status", "online")
    expect(member_row(dash, "bob").get_by_test_id("member-load")).to_have_text("1/5")


def test_buyers_see_their_queue_position_until_served(make: Any, pages: Any) -> None:  # R12.4
    shop = shop_for(make, members={"alice": {"groups": ["pre"], "name": "Alice 小爱", "capacity": 2}})
    dash = pages("dashboard", f"{shop.base}/web/dashboard/")
    dashboard_login(dash, shop.seller, PASSWORD)
    url = f"{shop.base}/web/chat/?seller={shop.seller}&store=shop"
    first, second = pages("first", url, width=800), pages("second", url, width=800, locale="en-US")
    send(first, "有人吗？")
    expect(first.get_by_test_id("queue-position")).to_have_text("1")
    send(second, "Hello, anyone there?")
    expect(second.get_by_test_id("queue-position")).to_have_text("2")
    expect(second.get_by_test_id("queue-bar")).to_contain_text("number 2")
    queue = dash.locator("[data-testid=queue-row][data-queue='s:shop']")
    expect(queue.get_by_test_id("queue-length")).to_have_text("2")
    expect(queue.get_by_test_id("queue-wait")).not_to_have_text("–")
    first.reload()  # still queued, same place, same messages
    expect(first.get_by_test_id("queue-position")).to_have_text("1")
    expect(bubbles(first)).to_have_text(["有人吗？"])

    alice = pages("alice", f"{shop.base}/web/console/")
    console_login(alice, shop.login("alice"), PASSWORD)   # the queue drains as she comes online
    expect(first.get_by_test_id("queue-bar")).to_be_hidden()
    expect(second.get_by_test_id("queue-bar")).to_be_hidden()
    expect(first.get_by_test_id("agent-name")).to_contain_text("Alice 小爱")
    expect(second.get_by_test_id("agent-name")).to_contain_text("Alice 小爱")
    expect(alice.get_by_test_id("conv-item")).to_have_count(2)
    expect(queue.get_by_test_id("queue-length")).to_have_text("0")


def test_console_pages_back_through_a_long_history(make: Any, pages: Any) -> None:  # R17
    shop = shop_for(make)
    alice = pages("alice", f"{shop.base}/web/console/")
    console_login(alice, shop.login("alice"), PASSWORD)

    async def chatty_buyer() -> None:  # a buyer on the Python client (msgpack) talks to a browser console
        b = await Client.buyer(shop.base, shop.seller, "shop")
        for i in range(70):
            await b.send(f"第 {i + 1} 条消息")
        await b.close()
    run(chatty_buyer())

    item = alice.get_by_test_id("conv-item")
    expect(item.get_by_test_id("conv-unread")).to_have_text("70")   # all of them arrived live
    alice.reload()                                                   # now from the server: newest page first
    expect(item.get_by_test_id("conv-unread")).to_have_text("70")
    item.click()
    expect(bubbles(alice)).to_have_count(50)
    expect(bubbles(alice).last).to_have_text("第 70 条消息")
    expect(item.get_by_test_id("conv-unread")).to_have_count(0)
    alice.get_by_test_id("load-earlier").click()
    expect(bubbles(alice)).to_have_count(70)
    assert texts(alice) == [f"第 {i + 1} 条消息" for i in range(70)]
    expect(alice.get_by_test_id("load-earlier")).to_be_hidden()


def test_dashboard_suspends_a_member_and_the_console_follows(make: Any, pages: Any) -> None:  # R9, R11
    shop = shop_for(make, members={"alice": {"groups": ["pre"], "name": "Alice 小爱"}}, quota=1)
    dash = pages("dashboard", f"{shop.base}/web/dashboard/")
    dashboard_login(dash, shop.seller, PASSWORD)
    alice = pages("alice", f"{shop.base}/web/console/")
    console_login(alice, shop.login("alice"), PASSWORD)
    expect(member_row(dash, "alice")).to_have_attribute("data-status", "online")
    member_row(dash, "alice").get_by_test_id("suspend-switch").click()
    expect(alice.get_by_test_id("status-switch")).to_have_attribute("data-status", "idle")
    expect(member_row(dash, "alice")).to_have_attribute("data-status", "idle")
    expect(member_row(dash, shop.seller).get_by_test_id("suspend-switch")).to_be_disabled()  # R8
    member_row(dash, "alice").get_by_test_id("suspend-switch").click()
    expect(alice.get_by_test_id("status-switch")).to_have_attribute("data-status", "online")

    # management (R1): the quota is enforced with a clear error; capacity changes show in the live view
    dash.get_by_test_id("manage-add").click()
    dlg = dash.get_by_test_id("member-dialog")
    dlg.get_by_test_id("m-id").fill("carol")
    dlg.get_by_test_id("m-password").fill("secret-pw-2")
    dlg.get_by_test_id("modal-submit").click()
    expect(dlg.get_by_test_id("modal-error")).to_contain_text("上限")
    dlg.get_by_role("button", name="取消").click()
    dash.locator("[data-testid=admin-member][data-member=alice] [data-testid=edit-member]").click()
    dlg = dash.get_by_test_id("member-dialog")
    dlg.get_by_test_id("m-capacity").fill("7")
    dlg.get_by_test_id("modal-submit").click()
    expect(dlg).to_be_hidden()
    expect(member_row(dash, "alice").get_by_test_id("member-load")).to_have_text("0/7")


def test_console_login_asks_for_the_verification_code_then_the_stores(make: Any, pages: Any) -> None:  # R4
    shop = shop_for(make, stores={"north": ["pre"], "south": ["pre"]}, require_otp=True,
                    members={"alice": {"groups": ["pre"]}})
    page = pages("alice", f"{shop.base}/web/console/", locale="en-US")
    sign_in(page, shop.login("alice"), PASSWORD)
    expect(page.get_by_test_id("login-error")).to_contain_text("verification code")
    page.get_by_test_id("login-otp").fill("000000" if pyotp.TOTP(shop.secrets["otp"]).now() != "000000" else "111111")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong verification code")
    page.get_by_test_id("login-otp").fill(pyotp.TOTP(shop.secrets["otp"]).now())
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("start-serving")).to_be_visible()
    page.get_by_test_id("store-south").set_checked(False)
    page.get_by_test_id("start-serving").click()
    expect(page.get_by_test_id("serving")).to_have_text("north")
    expect(page.get_by_test_id("status-switch")).to_have_attribute("data-status", "online")
    # the token lives in sessionStorage: a reload keeps the member signed in, serving the same stores
    page.reload()
    expect(page.get_by_test_id("serving")).to_have_text("north")
    expect(page.get_by_test_id("login")).to_have_count(0)
