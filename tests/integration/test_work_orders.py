"""Work orders (协同工单, R22–R25) through a real server on a real Redis: permissions, transitions,
history, notifications, buyer isolation, exact counts under concurrency, CSV, order-aware routing."""
from __future__ import annotations

import asyncio
import csv
import io
import random
import urllib.error
import urllib.request
from typing import Any

import pytest

from kefu.clients.client import Client, ahttp
from kefu.protocol.errors import KefuError
from kefu.server.storage.keys import SellerKeys
from kefu_testing import PASSWORD

STATUSES = ("open", "in_progress", "done", "cancelled")
LEGAL = {("open", "in_progress"), ("open", "cancelled"), ("in_progress", "done"), ("in_progress", "cancelled")}
TEAM = {
    "alice": {"groups": ["pre"]},                                   # agent: wo_create only
    "bob": {"groups": ["pre", "after"]},
    "erin": {"groups": ["after"]},
    "carol": {"groups": ["after"], "role": "supervisor"},         # + wo_cancel, wo_export, dashboard
    "dave": {"groups": ["pre"], "revokes": ["wo_create"]},
}


async def team(make: Any) -> Any:
    return await make(stores={"shop": ["pre"], "outlet": ["after"]}, members=TEAM)


async def login(shop: Any, member: str | None = None) -> Client:
    return await Client.login(shop.base, shop.login(member), PASSWORD)


async def code(coro: Any) -> str:
    """The error code a request fails with ("ok" when it succeeds)."""
    try:
        await coro
        return "ok"
    except KefuError as e:
        return e.code.value


def recorder(c: Client) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    c.on_event = lambda t, d: seen.append((t, d))
    return seen


async def served(shop: Any, m: Client, store: str = "shop") -> tuple[Client, str]:
    b = await Client.buyer(shop.base, shop.seller, store)
    r = await b.send("我的快递丢了, \"急\"")
    await m.next_event("conv.assigned", pred=lambda d: d["conv"] == r["conv"])
    return b, r["conv"]


async def new_wo(c: Client, handler: str = "bob", group: bool = False, **kw: Any) -> dict[str, Any]:
    kw.setdefault("buyer", "a-buyer1")
    hd = {"handler_group": handler} if group else {"handler_member": handler}
    return await c.request("wo.create", type=kw.pop("type", "refund"), content=kw.pop("content", "请退款"), **hd, **kw)


async def close_all(*cs: Client) -> None:
    for c in cs:
        await c.close()


# ---- permissions (R2, R22, R24) -----------------------------------------------------------------

async def test_create_needs_wo_create_permission(make):  # R2, R22
    shop = await team(make)
    alice, dave = await login(shop, "alice"), await login(shop, "dave")
    assert await code(new_wo(dave)) == "forbidden"
    wo = await new_wo(alice, order="TB20250610-0001")
    assert wo["status"] == "open" and wo["creator"] == "alice" and wo["handler_member"] == "bob"
    assert wo["order"] == "TB20250610-0001" and wo["buyer"] == "a-buyer1"
    assert await code(new_wo(alice, handler="nobody")) == "not_found"
    assert await code(new_wo(alice, type="no-such-type")) == "invalid"
    assert await code(alice.request("wo.create", type="refund", content="x", handler_member="bob")) == "invalid"
    assert await code(alice.request("wo.create", type="refund", content="x", buyer="b",
                                    handler_member="bob", handler_group="after")) == "invalid"
    await close_all(alice, dave)


async def test_create_from_conversation_takes_buyer_and_store(make):  # R22
    shop = await team(make)
    alice, erin = await login(shop, "alice"), await login(shop, "erin")
    b, conv = await served(shop, alice)
    wo = await alice.request("wo.create", type="logistics", content="补发", conv=conv, handler_member="erin",
                             order="9001")
    assert (wo["buyer"], wo["store"], wo["conv"]) == (b.auth["buyer"], "shop", conv)
    # erin cannot read alice's conversation, so she cannot file one from it (nor learn that it exists)
    assert await code(erin.request("wo.create", type="refund", content="x", conv=conv,
                                   handler_member="bob")) == "not_found"
    await close_all(alice, erin, b)


async def test_buyers_can_neither_see_nor_act_on_work_orders(make):  # R24
    shop = await team(make)
    alice = await login(shop, "alice")
    b, conv = await served(shop, alice)
    seen = recorder(b)
    wo = await alice.request("wo.create", type="refund", content="退款", conv=conv, handler_member="alice")
    await alice.request("wo.update", wo=wo["wo"], status="in_progress", comment="在处理")
    for typ, data in (("wo.create", {"type": "refund", "content": "x", "handler_member": "alice"}),
                      ("wo.list", {}), ("wo.get", {"wo": wo["wo"]}), ("wo.counts", {}), ("wo.types", {}),
                      ("wo.update", {"wo": wo["wo"], "status": "cancelled"})):
        assert await code(b.request(typ, **data)) == "forbidden", typ
    await alice.send("marker", conv=conv)
    await b.next_event("msg", pred=lambda d: d["text"] == "marker")
    assert seen and all(t != "wo" and "wo" not in d for t, d in seen)
    assert (await alice.request("wo.get", wo=wo["wo"]))["status"] == "in_progress"  # the buyer changed nothing
    await close_all(alice, b)


async def test_cancel_needs_wo_cancel_permission_or_the_main_account(make):  # R24
    shop = await team(make)
    alice = await login(shop, "alice")
    bob, carol, main = await login(shop, "bob"), await login(shop, "carol"), await login(shop)
    w1, w2, w3 = await new_wo(alice), await new_wo(alice), await new_wo(alice)
    assert await code(alice.request("wo.update", wo=w1["wo"], status="cancelled")) == "forbidden"  # creator
    assert await code(bob.request("wo.update", wo=w1["wo"], status="cancelled")) == "forbidden"    # handler
    assert (await carol.request("wo.update", wo=w1["wo"], status="cancelled"))["status"] == "cancelled"
    assert (await main.request("wo.update", wo=w2["wo"], status="cancelled"))["status"] == "cancelled"
    await bob.request("wo.update", wo=w3["wo"], status="in_progress")
    assert (await carol.request("wo.update", wo=w3["wo"], status="cancelled"))["status"] == "cancelled"
    w4 = await new_wo(alice, handler="after", group=True)  # carol is in 'after': cancelling is not taking
    got = await carol.request("wo.update", wo=w4["wo"], status="cancelled")
    assert (got["status"], got["handler"]) == ("cancelled", "g:after")
    # a supervisor who is no participant may still comment (whoever sees it may)
    assert (await carol.request("wo.update", wo=w1["wo"], comment="已取消: 重复工单"))["status"] == "cancelled"
    await close_all(alice, bob, carol, main)


async def test_only_the_handler_side_moves_a_work_order_on(make):  # R24
    shop = await team(make)
    alice, dave, bob = await login(shop, "alice"), await login(shop, "dave"), await login(shop, "bob")
    wo = await new_wo(alice)
    assert await code(alice.request("wo.update", wo=wo["wo"], status="in_progress")) == "forbidden"
    assert await code(dave.request("wo.update", wo=wo["wo"], comment="hi")) == "not_found"  # not his to see
    assert (await bob.request("wo.update", wo=wo["wo"], status="in_progress"))["status"] == "in_progress"
    await close_all(alice, dave, bob)


# ---- transitions and history (R24) -------------------------------------------------------------

@pytest.mark.parametrize("start", STATUSES)
async def test_every_status_transition(make, start):  # R24
    shop = await make()
    main = await login(shop)
    path = {"open": [], "in_progress": ["in_progress"], "done": ["in_progress", "done"], "cancelled": ["cancelled"]}
    for target in STATUSES:
        wo = await new_wo(main, handler=shop.seller)
        for st in path[start]:
            await main.request("wo.update", wo=wo["wo"], status=st)
        got = await code(main.request("wo.update", wo=wo["wo"], status=target))
        assert got == ("ok" if (start, target) in LEGAL else "illegal_transition"), (start, target)
        after = await main.request("wo.get", wo=wo["wo"])
        assert after["status"] == (target if got == "ok" else start)
    await main.close()


async def test_a_finished_work_order_cannot_be_reassigned(make):  # R24
    shop = await make()
    main = await login(shop)
    wo = await new_wo(main, handler=shop.seller)
    await main.request("wo.update", wo=wo["wo"], status="cancelled")
    assert await code(main.request("wo.update", wo=wo["wo"], handler_member="alice")) == "illegal_transition"
    await main.close()


async def test_every_change_is_kept_in_the_history(make):  # R24
    shop = await team(make)
    alice, bob, erin = await login(shop, "alice"), await login(shop, "bob"), await login(shop, "erin")
    wo = (await new_wo(alice, handler="after", group=True))["wo"]
    await erin.request("wo.update", wo=wo, handler_member="erin")
    await erin.request("wo.update", wo=wo, comment="客户说, \"明天\"再联系")
    await erin.request("wo.update", wo=wo, handler_member="bob")
    await bob.request("wo.update", wo=wo, status="in_progress", comment="开始处理")
    await bob.request("wo.update", wo=wo, status="done")
    got = await alice.request("wo.get", wo=wo)
    h = got["history"]
    assert [(e["action"], e["by"]) for e in h] == [
        ("created", "alice"), ("taken", "erin"), ("comment", "erin"), ("handler", "erin"), ("status", "bob"),
        ("comment", "bob"), ("status", "bob")]
    assert h[1]["from"] == "g:after" and h[1]["to"] == "m:erin" and h[3]["to"] == "m:bob"
    assert h[2]["text"] == "客户说, \"明天\"再联系"
    assert (h[4]["from"], h[4]["to"], h[6]["from"], h[6]["to"]) == ("open", "in_progress", "in_progress", "done")
    assert all(isinstance(e["ts"], int) for e in h) and [e["ts"] for e in h] == sorted(e["ts"] for e in h)
    assert got["status"] == "done" and got["done_at"] >= got["started_at"] >= got["created"]
    await close_all(alice, bob, erin)


# ---- notifications (R22) -----------------------------------------------------------------------

async def test_handler_is_notified_at_once_and_no_other_seller(make):  # R22
    shop, other = await team(make), await team(make)
    alice, bob = await login(shop, "alice"), await login(shop, "bob")
    obob, oalice = await login(other, "bob"), await login(other, "alice")
    wo = await new_wo(alice, content="换货, 尺码不对")
    ev = await bob.next_event("wo", pred=lambda d: d["wo"] == wo["wo"])
    assert (ev["action"], ev["by"], ev["content"], ev["status"]) == ("created", "alice", "换货, 尺码不对", "open")
    assert (await alice.next_event("wo"))["wo"] == wo["wo"]  # the creator follows it too
    await bob.request("wo.update", wo=wo["wo"], status="in_progress")
    ev = await alice.next_event("wo", pred=lambda d: d["action"] == "in_progress")
    assert ev["by"] == "bob" and ev["changes"][0]["to"] == "in_progress"
    # the other seller's bob hears about his own seller's work order first, nothing earlier
    mine = await new_wo(oalice)
    assert (await obob.next_event("wo"))["wo"] == mine["wo"]
    await close_all(alice, bob, obob, oalice)


async def test_group_handler_notifies_every_member_until_one_takes_it(make):  # R22
    shop = await team(make)
    alice, bob, erin, carol = (await login(shop, "alice"), await login(shop, "bob"), await login(shop, "erin"),
                               await login(shop, "carol"))
    wo = (await new_wo(alice, handler="after", group=True))["wo"]
    for c in (bob, erin, carol):
        assert (await c.next_event("wo", pred=lambda d: d["wo"] == wo))["handler_group"] == "after"
    for c in (bob, erin, carol):
        assert (await c.request("wo.counts"))["pending"] == 1
    got = await erin.request("wo.update", wo=wo, status="in_progress")  # starting it takes it
    assert (got["handler_member"], got["handler_group"], got["status"]) == ("erin", "after", "in_progress")
    ev = await bob.next_event("wo", pred=lambda d: d["wo"] == wo and d["action"] == "in_progress")
    assert ev["handler_member"] == "erin"
    assert (await bob.request("wo.counts"))["pending"] == 0
    assert (await erin.request("wo.counts"))["pending"] == 1
    assert await code(bob.request("wo.update", wo=wo, status="done")) == "forbidden"  # erin's now
    await close_all(alice, bob, erin, carol)


async def test_two_group_members_take_at_once_one_wins(make):  # R22, R24
    shop = await team(make)
    alice, bob, erin = await login(shop, "alice"), await login(shop, "bob"), await login(shop, "erin")
    for _ in range(5):
        wo = (await new_wo(alice, handler="after", group=True))["wo"]
        res = await asyncio.gather(code(bob.request("wo.update", wo=wo, status="in_progress")),
                                   code(erin.request("wo.update", wo=wo, handler_member="erin")))
        assert sorted(res) == ["forbidden", "ok"], res
        got = await alice.request("wo.get", wo=wo)
        assert [e["action"] for e in got["history"]].count("taken") == 1
        assert got["handler_member"] in ("bob", "erin")
    await close_all(alice, bob, erin)


# ---- lists and counts (R23) ---------------------------------------------------------------------

async def all_of(c: Client, **f: Any) -> list[dict[str, Any]]:
    """Every page of a list, following ``next``."""
    out, before = [], None
    while True:
        page = await c.request("wo.list", limit=7, before=before, **f)
        out += page["items"]
        before = page["next"]
        if before is None:
            return out


async def test_lists_filter_and_page(make):  # R23
    shop = await team(make)
    alice, bob, carol = await login(shop, "alice"), await login(shop, "bob"), await login(shop, "carol")
    made = []
    for i in range(20):
        made.append(await new_wo(alice, handler=["bob", "erin", "after"][i % 3], group=i % 3 == 2,
                                 type=["refund", "logistics"][i % 2], store=["shop", "outlet"][i % 4 // 2],
                                 buyer=f"a-b{i % 5}"))
    ids = [w["wo"] for w in made]
    got = await all_of(alice, box="created")
    assert [w["wo"] for w in got] == ids[::-1]  # newest first, no gaps or duplicates across pages
    assert {w["wo"] for w in await all_of(alice, box="created", type="refund")} == set(ids[0::2])
    assert {w["wo"] for w in await all_of(alice, box="created", store="outlet")} == \
        {w["wo"] for w in made if w["store"] == "outlet"}
    assert {w["wo"] for w in await all_of(alice, box="created", buyer="a-b3")} == set(ids[3::5])
    assert {w["wo"] for w in await all_of(alice, box="created", handler="after")} == set(ids[2::3])
    bobs = {w["wo"] for w in made if w.get("handler_member") == "bob" or w.get("handler_group") == "after"}
    assert {w["wo"] for w in await all_of(bob, box="assigned")} == bobs
    await bob.request("wo.update", wo=ids[0], status="in_progress")
    await bob.request("wo.update", wo=ids[0], status="done")
    assert {w["wo"] for w in await all_of(bob, box="pending")} == bobs - {ids[0]}
    assert [w["wo"] for w in await all_of(bob, box="assigned", status="done")] == [ids[0]]
    page = await bob.request("wo.list", box="pending")
    assert page["counts"] == {"created": 0, "assigned": len(bobs), "pending": len(bobs) - 1}
    assert await code(alice.request("wo.list", box="all")) == "forbidden"
    assert len(await all_of(carol, box="all")) == 20
    await close_all(alice, bob, carol)


async def test_the_member_serving_a_buyer_sees_its_work_orders(make):  # R12, R23
    shop = await team(make)
    alice, dave = await login(shop, "alice"), await login(shop, "dave")
    b, conv = await served(shop, alice)
    wo = await alice.request("wo.create", type="refund", content="x", conv=conv, handler_member="bob")
    await alice.request("conv.transfer", conv=conv, to_member="dave")
    got = await dave.request("wo.list", box="all", buyer=b.auth["buyer"])
    assert [w["wo"] for w in got["items"]] == [wo["wo"]]
    assert (await dave.request("wo.get", wo=wo["wo"]))["buyer"] == b.auth["buyer"]
    assert await code(dave.request("wo.list", box="all", buyer="a-someone-else")) == "forbidden"
    await close_all(alice, dave, b)


async def test_counts_stay_exact_under_concurrent_changes(make, redis_proc):  # R23
    shop = await team(make)
    names = ("alice", "bob", "erin", "carol", None)
    cs = {m: await login(shop, m) for m in names}
    main = cs[None]
    handlers = [("bob", False), ("erin", False), ("carol", False), ("after", True), ("pre", True)]
    wos = [(await new_wo(cs["alice"], handler=h, group=g, buyer=f"a-b{i % 4}"))["wo"]
           for i, (h, g) in enumerate(handlers * 4)]
    rng = random.Random(7)
    members = ("alice", "bob", "erin", "carol", shop.seller)

    def action() -> dict[str, Any]:
        a = rng.choice(("in_progress", "done", "cancelled", "take", "member", "group", "comment"))
        if a == "take":
            return {}
        if a == "member":
            return {"handler_member": rng.choice(members)}
        if a == "group":
            return {"handler_group": rng.choice(("pre", "after"))}
        if a == "comment":
            return {"comment": "并发 test"}
        return {"status": a}

    async def storm(c: Client, me: str) -> list[str]:
        reqs = []
        for _ in range(80):
            a = action() or {"handler_member": me}
            reqs.append(code(c.request("wo.update", wo=rng.choice(wos), **a)))
        return await asyncio.gather(*reqs)

    async def watch(c: Client) -> list[dict[str, int]]:  # counts read mid-storm: one consistent snapshot each
        return [await c.request("wo.counts") for _ in range(20)]

    *results, seen = await asyncio.gather(*(storm(c, m or shop.seller) for m, c in cs.items()),
                                          watch(cs["bob"]))
    assert all(x["created"] == 0 and 0 <= x["pending"] <= x["assigned"] for x in seen)
    flat = [r for rs in results for r in rs]
    # refusals are expected (a work order moved away, or on to a final state); nothing else is
    assert flat.count("ok") > 50 and set(flat) <= {"ok", "forbidden", "illegal_transition", "not_found"}, set(flat)
    everything = {w["wo"]: w for w in await all_of(main, box="all")}
    assert set(everything) == set(wos)
    for m in names:
        c = cs[m]
        mid = m or shop.seller
        counts = await c.request("wo.counts")
        boxes = {b: await all_of(c, box=b) for b in ("created", "assigned", "pending")}
        assert counts == {b: len(v) for b, v in boxes.items()}, m
        groups = TEAM.get(m or "", {}).get("groups", [])
        mine = {f"m:{mid}"} | {f"g:{g}" for g in groups}
        truth = [w for w in everything.values() if w["handler"] in mine]
        assert {w["wo"] for w in boxes["assigned"]} == {w["wo"] for w in truth}, m
        assert {w["wo"] for w in boxes["pending"]} == {w["wo"] for w in truth
                                                        if w["status"] in ("open", "in_progress")}, m
        assert counts["created"] == (len(wos) if m == "alice" else 0)
    # order-aware routing points at a member handling one of the buyer's open work orders, or nowhere
    rc, key = redis_proc.client(), SellerKeys(shop.seller).wo_handlers
    for buyer in {w["buyer"] for w in everything.values()}:
        live = {w["handler_member"] for w in everything.values() if w["buyer"] == buyer
                and w["status"] in ("open", "in_progress") and w["handler"].startswith("m:")}
        assert (rc.hget(key, buyer) in live) if live else rc.hget(key, buyer) is None, buyer
    await close_all(*cs.values())


# ---- types, statistics and CSV (R22, R25) -------------------------------------------------------

async def test_types_are_set_per_seller_by_a_manager(make):  # R22
    shop, other = await team(make), await team(make)
    alice, main = await login(shop, "alice"), await login(shop)
    url = shop.base + "/api/admin/work-orders/types"
    assert "refund" in (await ahttp("GET", url, token=alice.token))["types"]
    with pytest.raises(KefuError) as e:
        await ahttp("PUT", url, {"types": ["退款"]}, token=alice.token)
    assert e.value.code.value == "forbidden"
    with pytest.raises(KefuError) as e:
        await ahttp("PUT", url, {"types": ["ok", "bad\nline"]}, token=main.token)
    assert e.value.code.value == "invalid"
    got = await ahttp("PUT", url, {"types": ["退款", "物流", "投诉", "退款"]}, token=main.token)
    assert got["types"] == ["退款", "物流", "投诉"]
    assert (await alice.request("wo.types"))["types"] == ["退款", "物流", "投诉"]
    assert await code(new_wo(alice, type="refund")) == "invalid"
    assert (await new_wo(alice, type="物流"))["type"] == "物流"
    oalice = await login(other, "alice")
    assert "refund" in (await oalice.request("wo.types"))["types"]  # nothing crosses sellers
    await close_all(alice, main, oalice)


def get_raw(url: str, token: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


NASTY = ["普通内容", "逗号, 和 \"引号\"", "多行\n第二行\r\n第三行", "=SUM(A1:A2)", " 前后空格 ", "emoji 📦"]


async def test_csv_export_parses_back_to_the_same_rows(make):  # R25
    shop = await team(make)
    alice, bob, carol = await login(shop, "alice"), await login(shop, "bob"), await login(shop, "carol")
    made = [await new_wo(alice, content=t, order=f"N,{i}", type=["refund", "complaint"][i % 2])
            for i, t in enumerate(NASTY)]
    await bob.request("wo.update", wo=made[0]["wo"], status="in_progress")
    url = f"{shop.base}/api/admin/work-orders.csv?tz=480"
    status, _, _ = await asyncio.to_thread(get_raw, url, alice.token)
    assert status == 403  # agents have no wo_export
    status, headers, raw = await asyncio.to_thread(get_raw, url, carol.token)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"]
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [r["wo"] for r in rows] == [w["wo"] for w in made]
    # the same text, except that a formula is neutralised for spreadsheets (CSV injection)
    assert [r["content"] for r in rows] == [("'" + t if t.startswith("=") else t) for t in NASTY]
    assert [r["order"] for r in rows] == [f"N,{i}" for i in range(len(NASTY))]
    assert rows[0]["status"] == "in_progress" and rows[0]["started_at"]
    assert rows[1]["creator"] == "alice" and rows[1]["handler_member"] == "bob" and rows[1]["type"] == "complaint"
    # a range that ends before the first work order: just the header
    first = made[0]["created"]
    status, _, raw = await asyncio.to_thread(get_raw, f"{shop.base}/api/admin/work-orders.csv?to={first}",
                                             carol.token)
    assert status == 200 and raw.decode("utf-8-sig").splitlines()[0].startswith("wo,created,")
    assert len(list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))) == 1
    await close_all(alice, bob, carol)


async def test_statistics_by_type_status_and_handler(make):  # R25
    shop = await team(make)
    alice, bob, carol = await login(shop, "alice"), await login(shop, "bob"), await login(shop, "carol")
    ws = [await new_wo(alice, handler=h, group=g, type=t)
          for h, g, t in (("bob", False, "refund"), ("bob", False, "refund"), ("after", True, "logistics"),
                          ("erin", False, "complaint"))]
    await bob.request("wo.update", wo=ws[0]["wo"], status="in_progress")
    await bob.request("wo.update", wo=ws[0]["wo"], status="done")
    await carol.request("wo.update", wo=ws[3]["wo"], status="cancelled")
    url = shop.base + "/api/admin/work-orders/stats"
    with pytest.raises(KefuError) as e:
        await ahttp("GET", url, token=alice.token)
    assert e.value.code.value == "forbidden"
    s = await ahttp("GET", url, token=carol.token)
    assert s["total"] == 4
    assert s["by_status"] == {"open": 2, "in_progress": 0, "done": 1, "cancelled": 1}
    assert s["by_type"]["refund"]["total"] == 2 and s["by_type"]["refund"]["done"] == 1
    assert s["by_type"]["logistics"]["open"] == 1 and s["by_type"]["complaint"]["cancelled"] == 1
    rows = {r["handler"]: r for r in s["by_handler"]}
    assert rows["m:bob"]["total"] == 2 and rows["m:bob"]["done"] == 1 and rows["m:bob"]["open"] == 1
    assert rows["g:after"]["group"] == "after" and rows["g:after"]["total"] == 1
    assert rows["m:erin"]["cancelled"] == 1
    later = await ahttp("GET", f"{url}?from={ws[-1]['created'] + 1}", token=carol.token)
    assert later["total"] == 0
    assert (await ahttp("GET", f"{url}?from=2000-01-01&to=2999-12-31&tz=480", token=carol.token))["total"] == 4
    with pytest.raises(KefuError) as e:
        await ahttp("GET", f"{url}?from=yesterday", token=carol.token)
    assert e.value.code.value == "invalid"
    await close_all(alice, bob, carol)


# ---- order-aware routing (R12) ------------------------------------------------------------------

async def test_returning_buyer_goes_to_the_work_order_handler_first(make, redis_proc):  # R12
    shop = await make(members={"alice": {"groups": ["pre"]}, "bob": {"groups": ["pre"]}})
    bob = await login(shop, "bob")
    b1, _ = await served(shop, bob)                 # bob now has one conversation
    alice = await login(shop, "alice")              # alice: online, nothing to do
    b2, conv = await served(shop, alice)            # least loaded -> alice (and sticky: alice)
    wo = await alice.request("wo.create", type="refund", content="退款", conv=conv, handler_member="bob")
    await alice.request("conv.close", conv=conv)
    r = await b2.send("我又来了")
    ev = await bob.next_event("conv.assigned", pred=lambda d: d["conv"] == r["conv"])
    assert ev["reason"] == "work_order"
    live = await ahttp("GET", shop.base + "/api/admin/live", token=(await login(shop)).token)
    loads = {m["member"]: m["load"] for m in live["members"]}
    assert loads["bob"] == 2 and loads["alice"] == 0  # alice was less loaded, and the sticky one
    await bob.request("wo.update", wo=wo["wo"], status="in_progress")
    await bob.request("wo.update", wo=wo["wo"], status="done")
    assert redis_proc.client().hget(SellerKeys(shop.seller).wo_handlers, b2.auth["buyer"]) is None
    await close_all(alice, bob, b1, b2)


async def test_work_order_routing_follows_the_buyers_open_work_orders(make, redis_proc):  # R12
    shop = await team(make)
    alice, main = await login(shop, "alice"), await login(shop)
    rc = redis_proc.client()
    key = SellerKeys(shop.seller).wo_handlers

    def target() -> str | None:
        return rc.hget(key, "a-ret")

    w1 = (await new_wo(alice, handler="bob", buyer="a-ret"))["wo"]
    assert target() == "bob"
    w2 = (await new_wo(alice, handler="erin", buyer="a-ret"))["wo"]
    assert target() == "erin"
    w3 = (await new_wo(alice, handler="after", group=True, buyer="a-ret"))["wo"]
    assert target() == "erin"  # a group handler does not route
    await main.request("wo.update", wo=w2, status="cancelled")
    assert target() == "bob"   # back to the other open one
    await main.request("wo.update", wo=w1, handler_member="carol")
    assert target() == "carol"
    await main.request("wo.update", wo=w1, handler_group="pre")
    assert target() is None
    await main.request("wo.update", wo=w3, handler_member="erin")
    assert target() == "erin"
    await main.request("wo.update", wo=w3, status="in_progress")
    await main.request("wo.update", wo=w3, status="done")
    assert target() is None
    await close_all(alice, main)
