"""The dispatcher: each branch of R12 in order, capacity (R13, R14), queues, re-dispatch (R15)."""
from __future__ import annotations

import asyncio

import pytest

from kefu.clients.client import Client, ahttp
from kefu.protocol.errors import KefuError
from kefu_testing import PASSWORD, eventually


def team(*names, cap=2, groups=("pre",)):
    return {n: {"groups": list(groups), "capacity": cap} for n in names}


async def login(shop, m, **kw):
    return await Client.login(shop.base, shop.login(m), PASSWORD, **kw)


async def new_buyer(shop, text="hi", store="shop", token="", **kw):
    b = await Client.buyer(shop.base, shop.seller, store, token=token)
    r = await b.send(text, **kw)
    return b, r


async def admin_token(shop):
    return (await ahttp("POST", shop.base + "/api/login", {"login": shop.seller, "password": PASSWORD}))["token"]


async def test_least_loaded_then_longest_waiting(make):  # R12.3
    shop = await make(members=team("alice", "bob", "carol", cap=5))
    ms = {n: await login(shop, n) for n in ("alice", "bob", "carol")}
    got = []
    for i in range(6):
        b, r = await new_buyer(shop)
        got.append((await ms_event(ms, r["conv"]))[0])
    # loads stay balanced: each member gets one before anyone gets a second
    assert sorted(got[:3]) == ["alice", "bob", "carol"]
    assert sorted(got[3:]) == ["alice", "bob", "carol"]
    # ties go to whoever waited longest since the last assignment: the order repeats
    assert got[3:] == got[:3]
    for c in ms.values():
        await c.close()


async def ms_event(ms, conv):
    """Which member got ``conv`` (and the event)."""
    async def one(name, c):
        ev = await c.next_event("conv.assigned", pred=lambda d: d["conv"] == conv, timeout=10)
        return name, ev
    tasks = [asyncio.create_task(one(n, c)) for n, c in ms.items()]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    for t in pending:
        t.cancel()
    name, ev = done.pop().result()
    return name, ev


async def test_assignment_carries_its_reason_and_candidates(make):  # explainable dispatch
    shop = await make(members=team("alice", "bob"))
    a = await login(shop, "alice")
    bob = await login(shop, "bob")
    await bob.request("status.set", status="idle")
    b, r = await new_buyer(shop)
    ev = await a.next_event("conv.assigned")
    assert ev["reason"] == "least_loaded"
    verdicts = {c["member"]: c["verdict"] for c in ev["candidates"]}
    assert verdicts["alice"] == "chosen" and verdicts["bob"] == "idle"
    ex = await a.request("conv.explain", conv=r["conv"])
    assert ex["reason"] == "least_loaded" and ex["member"] == "alice"
    http = await ahttp("GET", f"{shop.base}/api/admin/conversations/{r['conv']}", token=await admin_token(shop))
    assert http["reason"] == "least_loaded" and {c["member"] for c in http["candidates"]} >= {"alice", "bob"}
    for c in (a, bob, b):
        await c.close()


async def test_addressed_member_first_even_when_idle(make):  # R12.1, R6
    shop = await make(members=team("alice", "bob"))
    a = await login(shop, "alice", status="idle")
    bob = await login(shop, "bob")
    b, r = await new_buyer(shop, to="alice")
    ev = await a.next_event("conv.assigned")
    assert ev["conv"] == r["conv"] and ev["reason"] == "addressed"
    for c in (a, bob, b):
        await c.close()


async def test_idle_member_gets_no_new_conversations_but_keeps_its_own(make):  # R6
    shop = await make(members=team("alice", "bob"))
    a = await login(shop, "alice")
    b1, r1 = await new_buyer(shop)
    await a.next_event("conv.assigned")
    await a.request("status.set", status="idle")
    bob = await login(shop, "bob")
    b2, r2 = await new_buyer(shop)
    ev = await bob.next_event("conv.assigned")
    assert ev["conv"] == r2["conv"]
    await b1.send("are you there?")
    got = await a.next_event("msg", pred=lambda d: d["text"] == "are you there?")
    assert got["conv"] == r1["conv"]
    await a.send("yes", conv=r1["conv"])
    # with everyone idle, a new buyer queues
    await bob.request("status.set", status="idle")
    b3, r3 = await new_buyer(shop)
    assert r3["dispatch"]["state"] == "queued" and r3["dispatch"]["position"] == 1
    for c in (a, bob, b1, b2, b3):
        await c.close()


async def test_returning_buyer_goes_back_to_its_member_even_idle(make):  # R12.2, R6, R16
    shop = await make(members=team("alice", "bob"))
    a = await login(shop, "alice")
    bob = await login(shop, "bob")
    b, r = await new_buyer(shop)
    name, _ = await ms_event({"alice": a, "bob": bob}, r["conv"])
    holder = a if name == "alice" else bob
    other = bob if holder is a else a
    await holder.request("conv.close", conv=r["conv"])
    await holder.request("status.set", status="idle")
    # the other member is now strictly less loaded, yet the returning buyer is sticky
    r2 = await b.send("me again")
    assert r2["conv"] != r["conv"]  # R16: a new message after close opens a new conversation
    ev = await holder.next_event("conv.assigned", pred=lambda d: d["conv"] == r2["conv"])
    assert ev["reason"] == "sticky"
    for c in (a, bob, b):
        await c.close()
    del other


async def test_sticky_window_expired_falls_back_to_least_loaded(make):  # R12.2 window
    shop = await make(members=team("alice", "bob"), sticky_window=0)
    a = await login(shop, "alice")
    b, r = await new_buyer(shop)
    await a.next_event("conv.assigned")
    await a.request("conv.close", conv=r["conv"])
    await a.request("status.set", status="idle")
    bob = await login(shop, "bob")
    r2 = await b.send("again")
    ev = await bob.next_event("conv.assigned", pred=lambda d: d["conv"] == r2["conv"])
    assert ev["reason"] == "least_loaded"
    for c in (a, bob, b):
        await c.close()


async def test_capacity_is_never_exceeded_and_queue_is_fifo_with_positions(make):  # R12.4, R13
    shop = await make(members=team("alice", cap=1))
    a = await login(shop, "alice")
    b1, r1 = await new_buyer(shop)
    await a.next_event("conv.assigned")
    waiting = []
    for i in range(3):
        b, r = await new_buyer(shop, text=f"w{i}")
        assert r["dispatch"] == {"state": "queued", "position": i + 1}
        waiting.append((b, r["conv"]))
    # the second in line leaves: the third moves up to 2
    await waiting[1][0].request("conv.leave")
    ev = await waiting[2][0].next_event("queue.position", pred=lambda d: d["position"] != 3)
    assert ev["position"] == 2
    # capacity frees: the first in line is served, the last moves to 1
    await a.request("conv.close", conv=r1["conv"])
    ev = await a.next_event("conv.assigned")
    assert ev["conv"] == waiting[0][1]
    st = await waiting[0][0].next_event("conv.state", pred=lambda d: d["state"] == "active")
    assert st["agent"] == "alice"
    ev = await waiting[2][0].next_event("queue.position", pred=lambda d: d["position"] != 2)
    assert ev["position"] == 1
    # the history the buyer wrote while queued is there for the member
    h = await a.request("history", conv=waiting[0][1])
    assert [m["text"] for m in h["messages"]] == ["w0"]
    for c in [a, b1] + [w[0] for w in waiting]:
        await c.close()


async def test_queue_drains_when_a_member_comes_online_resumes_or_capacity_rises(make):  # R12.4
    shop = await make(members=team("alice", "bob", cap=1))
    a = await login(shop, "alice", status="idle")
    qs = [await new_buyer(shop, text=f"q{i}") for i in range(3)]
    assert all(r["dispatch"]["state"] == "queued" for _, r in qs)
    await a.request("status.set", status="online")           # resume
    assert (await a.next_event("conv.assigned"))["conv"] == qs[0][1]["conv"]
    bob = await login(shop, "bob")                             # comes online
    assert (await bob.next_event("conv.assigned"))["conv"] == qs[1][1]["conv"]
    tok = await admin_token(shop)
    await ahttp("PATCH", f"{shop.base}/api/admin/members/bob", {"capacity": 2}, tok)  # capacity raised
    assert (await bob.next_event("conv.assigned"))["conv"] == qs[2][1]["conv"]
    for c in [a, bob] + [b for b, _ in qs]:
        await c.close()


async def test_offline_member_chats_are_redispatched(make):  # R15
    shop = await make(members=team("alice", "bob"))
    a = await login(shop, "alice")
    b, r = await new_buyer(shop)
    await a.next_event("conv.assigned")
    bob = await login(shop, "bob")
    await a.close()  # gone; after the grace period (1 s) its chats move
    ev = await bob.next_event("conv.assigned", timeout=15)
    assert ev["conv"] == r["conv"] and ev["reason"].startswith("redispatch")
    await b.send("anyone?")
    await bob.next_event("msg", pred=lambda d: d["text"] == "anyone?")
    h = await bob.request("history", conv=r["conv"])
    assert [m["text"] for m in h["messages"] if m["kind"] == "buyer"] == ["hi", "anyone?"]
    for c in (bob, b):
        await c.close()


async def test_wait_policy_keeps_chats_for_the_offline_member(make):  # R15 policy
    shop = await make(members=team("alice", "bob"), policy="wait")
    a = await login(shop, "alice")
    b, r = await new_buyer(shop)
    await a.next_event("conv.assigned")
    bob = await login(shop, "bob")
    watcher = await login(shop, shop.seller)
    await a.close()
    await watcher.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "offline")
    view = await watcher.request("conv.get", conv=r["conv"])
    assert view["member"] == "alice" and view["state"] == "active"
    a2 = await login(shop, "alice")
    await b.send("back?")
    await a2.next_event("msg", pred=lambda d: d["text"] == "back?")
    for c in (a2, bob, b, watcher):
        await c.close()


async def test_member_of_another_store_group_is_not_a_candidate(make):  # R3
    shop = await make(stores={"shop": ["pre"], "other": ["post"]},
                      members={"alice": {"groups": ["pre"]}, "bob": {"groups": ["post"]}})
    bob = await login(shop, "bob")
    b, r = await new_buyer(shop)
    assert r["dispatch"]["state"] == "queued"
    a = await login(shop, "alice")
    assert (await a.next_event("conv.assigned"))["conv"] == r["conv"]
    for c in (a, bob, b):
        await c.close()


async def test_member_serves_only_the_stores_chosen_at_login(make):  # R4
    shop = await make(stores={"shop": ["pre"], "other": ["pre"]}, members=team("alice"))
    a = await login(shop, "alice", stores=["other"])
    assert a.auth["serving"] == ["other"]
    b, r = await new_buyer(shop, store="shop")
    assert r["dispatch"]["state"] == "queued"
    b2, r2 = await new_buyer(shop, store="other")
    ev = await a.next_event("conv.assigned")
    assert ev["conv"] == r2["conv"] and ev["store"] == "other"
    with pytest.raises(KefuError) as e:
        await login(shop, "alice", stores=["nope"])
    assert e.value.code.value == "forbidden"
    for c in (a, b, b2):
        await c.close()


async def test_least_loaded_search_over_thousands_of_routable_members(make, redis_proc):  # R12.3
    """A seller with more routable members than Lua can unpack in one call (8,000): the search still
    reads them all (in chunks) and picks the one online member."""
    from redis.asyncio import Redis
    from kefu.server.storage.keys import SellerKeys
    shop = await make(members=team("alice", cap=3))
    k = SellerKeys(shop.seller)
    rd = Redis.from_url(redis_proc.url, decode_responses=True)
    try:
        route = await rd.hget(k.route, "alice")
        await rd.hset(k.route, mapping={f"ghost{i:05d}": route for i in range(9000)})  # offline, never connected
        a = await login(shop, "alice")
        b, r = await new_buyer(shop)
        ev = await a.next_event("conv.assigned", pred=lambda d: d["conv"] == r["conv"])
        assert ev["reason"] == "least_loaded"
        assert len(ev["candidates"]) <= 21
        assert [c["verdict"] for c in ev["candidates"] if c["member"] == "alice"] == ["chosen"]
        await rd.hdel(k.route, *[f"ghost{i:05d}" for i in range(9000)])
    finally:
        await rd.aclose()
    for c in (a, b):
        await c.close()
