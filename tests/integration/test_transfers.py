"""Conversations and transfers (R16, R18–R21): history moves with the chat, capacity moves atomically."""
from __future__ import annotations

import asyncio

import pytest

from kefu.clients.client import Client
from kefu.protocol.errors import KefuError
from kefu_testing import PASSWORD, make_shop


def team(*names, cap=3, groups=("pre",)):
    return {n: {"groups": list(groups), "capacity": cap} for n in names}


async def login(shop, m, base=None, **kw):
    return await Client.login(base or shop.base, shop.login(m), PASSWORD, **kw)


async def dash_snapshot(shop):
    async with await login(shop, shop.seller, app="dashboard") as d:
        return await d.request("dash.snapshot")


async def held_by(shop, who):
    """Serve one buyer to ``who`` (the only online member)."""
    b = await Client.buyer(shop.base, shop.seller, "shop")
    r = await b.send("hello")
    ev = await who.next_event("conv.assigned", pred=lambda d: d["conv"] == r["conv"])
    return b, r["conv"], ev


async def test_transfer_three_times_arrives_with_every_message_in_order(make):  # R18
    shop = await make(members=team("m1", "m2", "m3", "m4"))
    ms = [await login(shop, "m1")]
    b, conv, _ = await held_by(shop, ms[0])
    for n in ("m2", "m3", "m4"):
        ms.append(await login(shop, n))
    texts = ["hello"]
    for i, (src, dst, name) in enumerate(zip(ms, ms[1:], ("m2", "m3", "m4"))):
        await b.send(f"buyer {i}")
        await src.send(f"agent {i}", conv=conv)
        texts += [f"buyer {i}", f"agent {i}"]
        r = await src.request("conv.transfer", conv=conv, to_member=name, reason=f"step {i}")
        assert r["member"] == name
        removed = await src.next_event("conv.removed", pred=lambda d: d["conv"] == conv)
        assert removed["reason"] == "transferred" and removed["to"] == name
        ev = await dst.next_event("conv.assigned", pred=lambda d: d["conv"] == conv)
        assert ev["reason"] == "transfer" and ev["transfer"]["reason"] == f"step {i}"
        with pytest.raises(KefuError) as e:
            await src.send("too late", conv=conv)
        assert e.value.code.value == "not_holder"
    h = await ms[-1].request("history", conv=conv, limit=200)
    assert [m["text"] for m in h["messages"] if m["kind"] != "note"] == texts
    notes = [m["text"] for m in h["messages"] if m["kind"] == "note"]
    assert len(notes) == 3 and "step 2" in notes[-1]
    seqs = [m["seq"] for m in h["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    # the buyer stayed connected, lost nothing and saw no internal notes
    await ms[-1].send("final", conv=conv)
    await b.next_event("msg", pred=lambda d: d["text"] == "final")
    assert [m["text"] for m in b.messages[conv] if m["kind"] == "member"] == ["agent 0", "agent 1", "agent 2", "final"]
    assert all(m["kind"] != "note" for m in b.messages[conv])
    hist = await ms[-1].request("conv.transfers", conv=conv)
    assert [(t["from"], t["to"]) for t in hist["transfers"]] == [("m1", "m2"), ("m2", "m3"), ("m3", "m4")]
    for c in ms + [b]:
        await c.close()


async def test_transfer_refusals_each_with_its_code(make):  # R18, R20
    shop = await make(members={**team("alice", "bob", "carol", "dave", "fay"), "full": {"groups": ["pre"], "capacity": 0},
                               "viewer": {"groups": ["pre"], "role": "viewer"}})
    other = await make(members=team("zed"))
    a = await login(shop, "alice")
    b, conv, _ = await held_by(shop, a)
    bob = await login(shop, "bob", status="idle")
    full = await login(shop, "full")
    viewer = await login(shop, "viewer")
    z = await login(other, "zed")
    cases = {"bob": "target_idle", "carol": "target_offline", "full": "target_full", "alice": "self_transfer",
             "nobody": "not_found", "zed": "not_found", "viewer": "target_cannot_serve"}
    for to, code in cases.items():
        with pytest.raises(KefuError) as e:
            await a.request("conv.transfer", conv=conv, to_member=to)
        assert e.value.code.value == code, to
    # the sender keeps the chat after every refusal
    await a.send("still mine", conv=conv)
    # someone who does not hold it cannot move it
    with pytest.raises(KefuError) as e:
        await bob.request("conv.transfer", conv=conv, to_member="alice")
    assert e.value.code.value == "not_holder"
    for c in (a, b, bob, full, viewer, z):
        await c.close()


async def test_capacity_moves_with_the_transfer(make):  # R20
    shop = await make(members=team("alice", "bob", cap=1))
    a = await login(shop, "alice")
    b1, conv, _ = await held_by(shop, a)
    bob = await login(shop, "bob")
    b2 = await Client.buyer(shop.base, shop.seller, "shop")
    r2 = await b2.send("second")
    await bob.next_event("conv.assigned", pred=lambda d: d["conv"] == r2["conv"])
    with pytest.raises(KefuError) as e:  # bob is full
        await a.request("conv.transfer", conv=conv, to_member="bob")
    assert e.value.code.value == "target_full"
    await bob.request("conv.close", conv=r2["conv"])
    await a.request("conv.transfer", conv=conv, to_member="bob")
    snap = await dash_snapshot(shop)
    load = {m["member"]: (m["load"], m["cap"]) for m in snap["members"]}
    assert load["alice"] == (0, 1) and load["bob"] == (1, 1)
    for c in (a, bob, b1, b2):
        await c.close()


async def test_transfer_to_a_group_picks_by_history_then_load_or_queues(make):  # R19
    shop = await make(groups=["pre", "post"], stores={"shop": ["pre", "post"]},
                      members={"alice": {"groups": ["pre"]}, "pat": {"groups": ["post"], "capacity": 1},
                               "quinn": {"groups": ["post"], "capacity": 1}})
    a = await login(shop, "alice")
    b, conv, _ = await held_by(shop, a)
    r = await a.request("conv.transfer", conv=conv, to_group="post", reason="refund question")
    assert r["state"] == "queued"  # nobody of post-sales is online: waits in the group's queue
    await a.next_event("conv.removed", pred=lambda d: d["conv"] == conv)
    pat = await login(shop, "pat")
    ev = await pat.next_event("conv.assigned", pred=lambda d: d["conv"] == conv)
    assert ev["queue"] == "g:post"
    h = await pat.request("history", conv=conv)
    assert h["messages"][0]["text"] == "hello" and any("refund question" in m["text"] for m in h["messages"])
    # back to alice's group and then to post again: the member who served it before gets it (R12.2)
    await pat.request("conv.transfer", conv=conv, to_member="alice")
    quinn = await login(shop, "quinn")
    r = await a.request("conv.transfer", conv=conv, to_group="post")
    assert r["state"] == "active" and r["member"] == "pat" and "sticky" in r["reason"]
    for c in (a, b, pat, quinn):
        await c.close()


async def test_concurrent_double_transfer_across_two_nodes_has_one_winner(make, spawn):  # R14, R20
    shop = await make(members=team("alice", "bob", "carol", cap=5))
    n2 = spawn()
    for round_ in range(5):
        a1 = await login(shop, "alice")
        a2 = await login(shop, "alice", base=n2.base)
        bob = await login(shop, "bob")
        carol = await login(shop, "carol", base=n2.base)
        await bob.request("status.set", status="idle")
        await carol.request("status.set", status="idle")
        b, conv, _ = await held_by(shop, a1)
        await bob.request("status.set", status="online")
        await carol.request("status.set", status="online")
        res = await asyncio.gather(a1.request("conv.transfer", conv=conv, to_member="bob"),
                                   a2.request("conv.transfer", conv=conv, to_member="carol"),
                                   a1.request("conv.close", conv=conv), return_exceptions=True)
        ok = [r for r in res if not isinstance(r, Exception)]
        errs = [r.code.value for r in res if isinstance(r, KefuError)]
        assert len(ok) == 1 and sorted(errs) in (["not_holder", "not_holder"], ["conv_closed", "not_holder"],
                                                 ["conv_closed", "conv_closed"]), res
        snap = await dash_snapshot(shop)
        loads = {m["member"]: m["load"] for m in snap["members"]}
        holders = {m["member"]: len(m["convs"]) for m in snap["members"]}
        assert loads == holders  # capacity counts stay exact
        for c in (a1, a2, bob, carol, b):
            await c.close()
        # close everything for the next round
        for m in ("alice", "bob", "carol"):
            c = await login(shop, m)
            for cv in (await c.request("conv.list"))["convs"]:
                await c.request("conv.close", conv=cv["conv"])
            await c.close()


async def test_close_and_restart_times(make):  # R16
    shop = await make(members=team("alice"))
    a = await login(shop, "alice")
    b, conv, _ = await held_by(shop, a)
    await a.send("first reply", conv=conv)
    v1 = await a.request("conv.get", conv=conv)
    assert v1["first_resp"] >= v1["first_buyer"] > 0
    await a.request("conv.close", conv=conv)
    st = await b.next_event("conv.state", pred=lambda d: d["state"] == "closed")
    with pytest.raises(KefuError) as e:
        await a.send("closed", conv=conv)
    assert e.value.code.value == "conv_closed"
    closed = (await a.request("conv.list", state="closed"))["convs"]
    assert [c["conv"] for c in closed] == [conv] and closed[0]["service_ms"] >= 0
    await a.request("conv.restart", conv=conv)
    await b.next_event("conv.state", pred=lambda d: d["state"] == "active")
    await a.send("second reply", conv=conv)
    v2 = await a.request("conv.get", conv=conv)
    assert v2["first_resp"] == v1["first_resp"]  # restart does not reset the first response time
    assert v2["restarts"] == 1
    with pytest.raises(KefuError) as e:
        await a.request("conv.restart", conv=conv)
    assert e.value.code.value == "conv_not_closed"
    for c in (a, b):
        await c.close()
    del st


async def test_restart_refused_at_capacity(make):  # R14, R16
    shop = await make(members=team("alice", cap=1))
    a = await login(shop, "alice")
    b1, c1, _ = await held_by(shop, a)
    await a.request("conv.close", conv=c1)
    b2, c2, _ = await held_by(shop, a)
    with pytest.raises(KefuError) as e:
        await a.request("conv.restart", conv=c1)
    assert e.value.code.value == "at_capacity"
    for c in (a, b1, b2):
        await c.close()


async def test_internal_chat_same_seller_only(make):  # R21
    shop = await make(members=team("alice", "bob"))
    other = await make(members=team("eve"))
    a = await login(shop, "alice")
    bob = await login(shop, "bob")
    contacts = {m["member"]: m for m in (await a.request("contacts"))["members"]}
    assert set(contacts) == {"bob", shop.seller} and contacts["bob"]["status"] == "online"
    r = await a.request("internal.open", member="bob")
    await bob.next_event("internal", pred=lambda d: d["conv"] == r["conv"])
    await a.request("send", conv=r["conv"], cid="i1", text="lunch?")
    await a.request("send", conv=r["conv"], cid="i1", text="lunch?")  # retry: idempotent
    got = await bob.next_event("msg", pred=lambda d: d["conv"] == r["conv"])
    assert got["text"] == "lunch?"
    await bob.send("yes", conv=r["conv"])
    await a.next_event("msg", pred=lambda d: d["text"] == "yes")
    h = await bob.request("history", conv=r["conv"])
    assert [m["text"] for m in h["messages"]] == ["lunch?", "yes"]
    with pytest.raises(KefuError) as e:
        await a.request("internal.open", member="eve")
    assert e.value.code.value == "not_found"
    eve = await login(other, "eve")
    with pytest.raises(KefuError) as e:
        await eve.request("history", conv=r["conv"])
    assert e.value.code.value == "not_found"
    with pytest.raises(KefuError) as e:
        await eve.send("hi", conv=r["conv"])
    assert e.value.code.value == "not_found"
    for c in (a, bob, eve):
        await c.close()


async def test_console_lists_active_conversations_with_unread_and_last_message(make):  # R16, R4
    shop = await make(stores={"shop": ["pre"], "two": ["pre"]}, members=team("alice"))
    a = await login(shop, "alice")
    b1, c1, _ = await held_by(shop, a)
    b2 = await Client.buyer(shop.base, shop.seller, "two")
    r2 = await b2.send("from store two")
    await a.next_event("conv.assigned", pred=lambda d: d["conv"] == r2["conv"])
    await b1.send("second")
    await a.next_event("msg", pred=lambda d: d["text"] == "second")
    convs = {c["conv"]: c for c in (await a.request("conv.list"))["convs"]}
    assert convs[c1]["store"] == "shop" and convs[r2["conv"]]["store"] == "two"
    assert convs[c1]["unread"] == 2 and convs[c1]["last_text"] == "second"
    await a.request("read", conv=c1, seq=2)
    convs = {c["conv"]: c for c in (await a.request("conv.list"))["convs"]}
    assert convs[c1]["unread"] == 0
    for c in (a, b1, b2):
        await c.close()


async def test_buyers_queued_by_a_group_transfer_see_their_position_move(make):  # R19, R12.4
    shop = await make(groups=["pre", "post"], stores={"shop": ["pre"]},
                      members={"alice": {"groups": ["pre"], "capacity": 5}, "pat": {"groups": ["post"]}})
    a = await login(shop, "alice")
    b1, c1, _ = await held_by(shop, a)
    b2, c2, _ = await held_by(shop, a)
    await a.request("conv.transfer", conv=c1, to_group="post")
    await a.request("conv.transfer", conv=c2, to_group="post")
    await b2.next_event("queue.position", pred=lambda d: d["position"] == 2)
    await b1.request("conv.leave")  # the first in line gives up
    ev = await b2.next_event("queue.position", pred=lambda d: d["position"] == 1)
    assert ev["conv"] == c2
    for c in (a, b1, b2):
        await c.close()


async def test_each_member_has_its_own_read_mark(make):  # R21, R18
    """Internal chat: one side reading does not mark the other's messages read; your own messages are
    read. A transfer's new holder starts with the whole history unread, whatever the old holder read."""
    shop = await make(members=team("alice", "bob"))
    a, bob = await login(shop, "alice"), await login(shop, "bob")

    async def unread(m, conv):
        return {c["conv"]: c["unread"] for c in (await m.request("conv.list"))["convs"]}.get(conv)
    r = await a.request("internal.open", member="bob")
    conv = r["conv"]
    await a.send("one", conv=conv)
    await a.send("two", conv=conv)
    await bob.next_event("msg", pred=lambda d: d["text"] == "two")
    assert (await unread(a, conv), await unread(bob, conv)) == (0, 2)
    await bob.request("read", conv=conv, seq=1)
    assert (await unread(a, conv), await unread(bob, conv)) == (0, 1)
    await bob.send("three", conv=conv)
    assert (await unread(a, conv), await unread(bob, conv)) == (1, 0)
    b1, c1, _ = await held_by(shop, a)
    await b1.send("more")
    await a.next_event("msg", pred=lambda d: d["text"] == "more")
    await a.request("read", conv=c1, seq=2)
    assert await unread(a, c1) == 0
    await a.request("conv.transfer", conv=c1, to_member="bob")
    await bob.next_event("conv.assigned", pred=lambda d: d["conv"] == c1)
    assert await unread(bob, c1) >= 2
    for c in (a, bob, b1):
        await c.close()
