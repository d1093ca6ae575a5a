"""Presence: online / idle / offline across tabs, nodes and restarts (R5–R11)."""
from __future__ import annotations

import asyncio

import pytest

from kefu.clients.client import Client, ahttp
from kefu.protocol.errors import KefuError
from kefu_testing import PASSWORD, eventually


def two(shop_members=("alice", "bob")):
    return {m: {"groups": ["pre"], "capacity": 3} for m in shop_members}


async def test_main_account_cannot_be_suspended(shop):  # R8
    main = await Client.login(shop.base, shop.seller, PASSWORD)
    with pytest.raises(KefuError) as e:
        await main.request("status.set", status="idle")
    assert e.value.code.value == "cannot_suspend_main"
    with pytest.raises(KefuError) as e:
        await main.request("status.toggle")
    assert e.value.code.value == "cannot_suspend_main"
    await main.close()


async def test_toggle_is_one_switch_and_kept_for_next_connection(shop):  # R9
    a = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    assert a.auth["status"] == "online"
    assert (await a.request("status.toggle"))["status"] == "idle"
    assert (await a.request("status.toggle"))["status"] == "online"
    await a.request("status.set", status="idle")
    await a.close()
    a2 = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    assert a2.auth["status"] == "idle"
    await a2.close()


async def test_seller_suspends_a_member_from_the_live_view_agent_cannot(make):  # R9
    shop = await make(members={"alice": {"groups": ["pre"]}, "bob": {"groups": ["pre"]}})
    a = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    main = await Client.login(shop.base, shop.seller, PASSWORD)
    r = await main.request("status.set", member="alice", status="idle")
    assert r["status"] == "idle"
    ev = await a.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "idle")
    assert ev
    bob = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    with pytest.raises(KefuError) as e:
        await bob.request("status.set", member="alice", status="online")
    assert e.value.code.value == "forbidden"
    # the same over HTTP, as the dashboard does
    tok = (await ahttp("POST", shop.base + "/api/login", {"login": shop.seller, "password": PASSWORD}))["token"]
    r = await ahttp("POST", f"{shop.base}/api/admin/members/alice/status", {"status": "toggle"}, tok)
    assert r["status"] == "online"
    for c in (a, main, bob):
        await c.close()


async def test_several_tabs_one_presence_offline_only_after_grace(make):  # R10
    shop = await make(members=two())
    watcher = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    t1 = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    t2 = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    await t1.close()
    # still online: the snapshot says so, and no offline event arrives within the grace period (1 s)
    snap = await watcher.request("contacts")
    assert {m["member"]: m["status"] for m in snap["members"]}["alice"] == "online"
    import time
    t0 = time.monotonic()
    await t2.close()
    ev = await watcher.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] != "online",
                                  timeout=10)
    assert ev["status"] == "offline"
    assert time.monotonic() - t0 >= 0.8, "offline before the grace period (1 s) passed"
    await watcher.close()


async def test_reload_within_grace_does_not_flap(make):  # R10
    shop = await make(members=two())
    watcher = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    a = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    await watcher.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "online")
    await a.reconnect()  # a page reload: gone and back well inside the grace period
    await a.request("status.toggle")  # a marker event after the reload
    ev = await watcher.next_event("presence", pred=lambda d: d["member"] == "alice")
    assert ev["status"] == "idle", "alice went offline during a reload"
    await a.close(); await watcher.close()


async def test_presence_is_one_across_nodes(make, spawn):  # R10
    shop = await make(members=two())
    other = spawn()
    watcher = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    a1 = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    a2 = await Client.login(other.base, shop.login("alice"), PASSWORD)
    await a1.close()
    await a2.request("status.toggle")
    ev = await watcher.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] != "online")
    assert ev["status"] == "idle"
    await a2.close(); await watcher.close()


async def test_broadcast_reaches_the_sellers_people_and_nobody_else(make):  # R11
    s1 = await make(members=two())
    s2 = await make(members=two())
    dash = await Client.login(s1.base, s1.seller, PASSWORD)
    colleague = await Client.login(s1.base, s1.login("bob"), PASSWORD)
    stranger = await Client.login(s2.base, s2.login("bob"), PASSWORD)
    buyer = await Client.buyer(s1.base, s1.seller, "shop")
    a = await Client.login(s1.base, s1.login("alice"), PASSWORD)
    await a.request("status.set", status="idle")
    for c in (dash, colleague):
        await c.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "idle")
    # a marker on seller 2 proves the stranger's socket is live and got nothing of seller 1
    await (await Client.login(s2.base, s2.login("alice"), PASSWORD)).close()
    seen = []
    await stranger.next_event("presence", pred=lambda d: seen.append(d) or d["member"] == "alice")
    assert all(d["status"] == "online" for d in seen), f"seller 1's presence leaked: {seen}"
    assert all(t != "presence" for t, _ in list(buyer.events._queue))  # type: ignore[attr-defined]
    for c in (dash, colleague, stranger, buyer, a):
        await c.close()


async def test_buyer_sees_no_difference_between_online_and_idle(shop):  # R7
    a = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    b = await Client.buyer(shop.base, shop.seller, "shop", codec="json")
    r = await b.send("hi")
    st1 = await b.next_event("conv.state", pred=lambda d: d["state"] == "active")
    await a.request("status.set", status="idle")
    await a.send("still here", conv=r["conv"])
    await b.next_event("msg", pred=lambda d: d["text"] == "still here")
    view = await b.request("conv.get", conv=r["conv"])
    for seen in (st1, view):
        assert "idle" not in str(seen) and "online" not in str(seen)
    assert st1["agent"] == "alice"
    await a.close(); await b.close()


async def test_disabled_member_is_disconnected_at_once_and_cannot_log_in(shop):  # R1
    a = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    tok = (await ahttp("POST", shop.base + "/api/login", {"login": shop.seller, "password": PASSWORD}))["token"]
    await ahttp("PATCH", f"{shop.base}/api/admin/members/alice", {"disabled": True}, tok)
    ev = await a.next_event("closed")
    assert ev["code"] == 4003
    with pytest.raises(KefuError) as e:
        await Client.login(shop.base, shop.login("alice"), PASSWORD)
    assert e.value.code.value == "account_disabled"


async def test_mass_disconnect_expires_every_buyer_together(make, redis_proc):  # R10, R13
    """40 queued buyers drop at once (a node restart, a network blip); 8 come back within the grace
    period. After it, exactly those 8 are still queued, in their order, and the served buyer keeps its
    conversation. The deadlines fall due together and are expired as one batch (server/presence.py)."""
    from redis.asyncio import Redis
    from kefu.server.storage.keys import SellerKeys
    shop = await make(members=team_of_one())
    a = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    served = await Client.buyer(shop.base, shop.seller, "shop")
    r0 = await served.send("first")
    await a.next_event("conv.assigned")
    waiting = []
    for i in range(40):
        b = await Client.buyer(shop.base, shop.seller, "shop")
        r = await b.send(f"w{i}")
        assert r["dispatch"]["position"] == i + 1
        waiting.append((b, r["conv"]))
    await asyncio.gather(served.close(), *(b.close() for b, _ in waiting))
    back = waiting[5:40:5]  # 7 of them ...
    back.append(waiting[39])  # ... and the last in line
    for b, _ in back:
        await b.connect()
    rd = Redis.from_url(redis_proc.url, decode_responses=True)
    k = SellerKeys(shop.seller)
    try:
        queue = await rd.hget(k.conv(waiting[0][1]), "queue")

        async def settled() -> bool:
            return await rd.zcard(k.queue(queue)) == len(back)
        await eventually(settled, timeout=15)
        assert await rd.zrange(k.queue(queue), 0, -1) == [conv for _, conv in back]
        assert await rd.hget(k.conv(r0["conv"]), "state") == "active"
        for i, (b, conv) in enumerate(back):
            ev = await b.next_event("queue.position", pred=lambda d, i=i: d["position"] == i + 1)
            assert ev["conv"] == conv
    finally:
        await rd.aclose()
    for c in [a, *(b for b, _ in back)]:
        await c.close()


def team_of_one():
    return {"alice": {"groups": ["pre"], "capacity": 1}}
