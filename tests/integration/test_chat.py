"""Buyer <-> member chat that loses nothing (R16, R17), through real server processes."""
from __future__ import annotations

import asyncio

import pytest

from kefu.clients.client import Client
from kefu.protocol.errors import KefuError
from kefu_testing import PASSWORD


async def served(shop, member="alice", codec="msgpack"):
    """A member online, a buyer who opened a conversation, and the assignment event."""
    m = await Client.login(shop.base, shop.login(member), PASSWORD, codec=codec)
    b = await Client.buyer(shop.base, shop.seller, "shop", codec=codec)
    r = await b.send("hello")
    ev = await m.next_event("conv.assigned")
    assert ev["conv"] == r["conv"]
    return m, b, r["conv"]


async def test_buyer_and_member_exchange_messages_in_order(shop):  # R17
    m, b, conv = await served(shop)
    for i in range(30):
        await b.send(f"b{i}")
        await m.send(f"m{i}", conv=conv)
    await m.next_event("msg", pred=lambda d: d["text"] == "b29")
    await b.next_event("msg", pred=lambda d: d["text"] == "m29")
    for c in (m, b):
        seqs = [x["seq"] for x in c.messages[conv]]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        assert c.duplicates == 0 and c.out_of_order == 0
    h = await m.request("history", conv=conv, limit=200)
    assert [x["seq"] for x in h["messages"]] == list(range(1, 62))
    assert h["messages"][0]["text"] == "hello"
    await m.close(); await b.close()


async def test_retry_with_same_client_id_is_idempotent(shop):  # R17
    m, b, conv = await served(shop)
    r1 = await b.request("send", cid="same-1", text="once")
    r2 = await b.request("send", cid="same-1", text="once")
    assert r1["seq"] == r2["seq"] and r2["dup"] is True
    h = await m.request("history", conv=conv)
    assert [x["text"] for x in h["messages"]].count("once") == 1
    await m.close(); await b.close()


async def test_reconnect_resumes_from_last_seq_nothing_lost_or_duplicated(shop):  # R17
    m, b, conv = await served(shop)
    await b.next_event("conv.state", pred=lambda d: d["state"] == "active")
    await m.send("before", conv=conv)
    await b.next_event("msg", pred=lambda d: d["text"] == "before")
    await b.close()
    for i in range(5):
        await m.send(f"missed{i}", conv=conv)
    await b.connect()
    await b.next_event("msg", pred=lambda d: d["text"] == "missed4")
    assert b.texts(conv) == ["hello", "before"] + [f"missed{i}" for i in range(5)]
    assert b.duplicates == 0
    await m.close(); await b.close()


async def test_json_and_msgpack_clients_talk_to_each_other(shop):
    m, b, conv = await served(shop, codec="json")
    bm = await Client.buyer(shop.base, shop.seller, "shop", codec="msgpack", token=b.token)
    await m.send("你好，欢迎光临", conv=conv)
    got = await bm.next_event("msg", pred=lambda d: d["kind"] == "member")
    assert got["text"] == "你好，欢迎光临"
    await m.close(); await b.close(); await bm.close()


async def test_member_cannot_send_to_a_conversation_it_does_not_hold(make):
    shop = await make(members={"alice": {"groups": ["pre"]}, "bob": {"groups": ["pre"]}})
    m, b, conv = await served(shop)
    bob = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    with pytest.raises(KefuError) as e:
        await bob.send("not mine", conv=conv)
    assert e.value.code.value == "not_holder"
    with pytest.raises(KefuError) as e:
        await bob.request("history", conv=conv + "x")
    assert e.value.code.value == "not_found"
    for c in (m, b, bob):
        await c.close()


async def test_two_nodes_deliver_to_each_others_clients(shop, spawn):
    other = spawn()
    m = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    b = await Client.buyer(other.base, shop.seller, "shop")
    r = await b.send("from node 2")
    ev = await m.next_event("conv.assigned")
    assert ev["conv"] == r["conv"]
    assert m.auth["node"] != b.auth["node"]
    await m.send("from node 1", conv=r["conv"])
    got = await b.next_event("msg", pred=lambda d: d["kind"] == "member")
    assert got["text"] == "from node 1"
    await m.close(); await b.close()


async def test_workers_share_one_port_as_separate_nodes(make, spawn):
    node = spawn(workers=2)
    shop = await make(base=node.base)
    m = await Client.login(node.base, shop.login("alice"), PASSWORD)
    buyers = [await Client.buyer(node.base, shop.seller, "shop") for _ in range(6)]
    nodes = {b.auth["node"] for b in buyers} | {m.auth["node"]}
    for i, b in enumerate(buyers):
        r = await b.send(f"hello {i}")
        await m.next_event("conv.assigned", pred=lambda d: d["conv"] == r["conv"])
        await m.send(f"answer {i}", conv=r["conv"])
        got = await b.next_event("msg", pred=lambda d: d["kind"] == "member")
        assert got["text"] == f"answer {i}"
        await m.request("conv.close", conv=r["conv"])
    assert len(nodes) >= 1  # the kernel spreads connections; whichever worker, delivery works
    for c in [m] + buyers:
        await c.close()


async def test_own_messages_echo_by_default_and_not_when_declined(shop):  # R17
    m, b, conv = await served(shop)
    tab = Client(shop.base, b.token, echo=True)  # a browser tab: sees its own messages as events
    await tab.connect()
    r = await tab.send("from the tab")
    assert r["echo"] is True
    ev = await tab.next_event("msg", pred=lambda d: d["seq"] == r["seq"])
    assert ev["text"] == "from the tab"
    await b.next_event("msg", pred=lambda d: d["text"] == "from the tab")
    for i in range(10):
        r2 = await b.send(f"quiet {i}")
        # no echo when the reply can carry it in order; an echo when the event was first (or is due)
        if not r2["echo"]:
            assert b.messages[conv][-1]["seq"] == r2["seq"]
    await tab.next_event("msg", pred=lambda d: d["text"] == "quiet 9")  # the other tab still sees it
    await m.send("answer", conv=conv)
    await b.next_event("msg", pred=lambda d: d["text"] == "answer")
    seqs = [x["seq"] for x in b.messages[conv]]
    assert seqs == list(range(1, len(seqs) + 1)) and b.duplicates == 0  # each once, in order
    for c in (m, b, tab):
        await c.close()
