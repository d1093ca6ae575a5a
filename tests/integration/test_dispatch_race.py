"""A race that would catch a double assignment (R14): two nodes, hundreds of buyers at once,
small capacities, members toggling idle/online and reconnecting meanwhile."""
from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict

import redis.asyncio as aredis

from kefu.clients.client import Client
from kefu.server.storage.keys import SellerKeys
from kefu_testing import PASSWORD, eventually

N_BUYERS = 200
MEMBERS = [f"m{i}" for i in range(6)]
CAP = 2


async def test_no_double_assignment_no_capacity_breach_everyone_served(make, spawn, redis_proc):
    shop = await make(members={m: {"groups": ["pre"], "capacity": CAP} for m in MEMBERS})
    n2 = spawn()
    bases = [shop.base, n2.base]
    rng = random.Random(7)
    assigned_events: Counter[str] = Counter()
    stop = asyncio.Event()

    async def agent(i: int, m: str) -> None:
        """Serve: reply, then close each chat; reconnect once in a while (within the grace period)."""
        c = await Client.login(bases[i % 2], shop.login(m), PASSWORD)
        handled = 0
        backlog: list[str] = []
        while not stop.is_set():
            if backlog:
                conv = backlog.pop()
            else:
                try:
                    ev = await c.next_event("conv.assigned", timeout=0.5)
                except asyncio.TimeoutError:
                    backlog = [x["conv"] for x in (await c.request("conv.list"))["convs"]]
                    continue
                assigned_events[ev["conv"]] += 1
                conv = ev["conv"]
            try:
                await c.send("hello!", conv=conv)
                await c.request("conv.close", conv=conv)
            except Exception:
                pass  # it may have been re-dispatched meanwhile: the server decides
            handled += 1
            if handled % 15 == 0:
                await c.reconnect()
                # what was assigned while away is in the console's list, as a real console shows it
                backlog = [x["conv"] for x in (await c.request("conv.list"))["convs"]]
        await c.close()

    async def chaos() -> None:
        """Members toggle idle/online meanwhile (bounded)."""
        cs = [await Client.login(bases[(i + 1) % 2], shop.login(m), PASSWORD) for i, m in enumerate(MEMBERS[:3])]
        for _ in range(40):
            if stop.is_set():
                break
            c = rng.choice(cs)
            await c.request("status.toggle")
            await asyncio.sleep(0.02)  # pacing of the chaos, not synchronisation
        for c in cs:
            await c.request("status.set", status="online")
            await c.close()

    async def buyer(i: int) -> str:
        b = await Client.buyer(bases[i % 2], shop.seller, "shop")
        r = await b.send(f"buyer {i}")
        await b.next_event("conv.state", pred=lambda d: d["state"] in ("active", "closed"), timeout=60)
        await b.close()
        return str(r["conv"])

    agents = [asyncio.create_task(agent(i, m)) for i, m in enumerate(MEMBERS)]
    chaos_task = asyncio.create_task(chaos())
    convs = await asyncio.wait_for(asyncio.gather(*[buyer(i) for i in range(N_BUYERS)]), 120)
    await chaos_task
    r = aredis.from_url(redis_proc.url, decode_responses=True)
    k = SellerKeys(shop.seller)

    async def settled() -> bool:
        return all(s == "closed" for s in [await r.hget(k.conv(c), "state") for c in convs])
    try:
        await eventually(settled, 60, "every conversation served and closed")
    except AssertionError:
        left = {c: await r.hgetall(k.conv(c)) for c in convs if await r.hget(k.conv(c), "state") != "closed"}
        print({c: (h.get("state"), h.get("member"), h.get("reason")) for c, h in left.items()})
        print(await r.hgetall(k.status), await r.hgetall(k.load))
        raise
    stop.set()
    await asyncio.gather(*agents)

    # every assignment, in order, from the audit log
    log = await r.xrange(k.assignlog, "-", "+")
    per_conv: dict[str, list[str]] = defaultdict(list)
    held: dict[str, bool] = {}
    for _, e in log:
        assert int(e["load"]) <= int(e["cap"]) == CAP, f"capacity exceeded: {e}"
        conv, reason = e["conv"], e["reason"]
        per_conv[conv].append(reason)
        if reason.startswith("release:"):
            assert held.get(conv), f"{conv} released while not held: {per_conv[conv]}"
            held[conv] = False
        elif reason != "transfer":  # a transfer moves a held chat; anything else needs a free one
            assert not held.get(conv), f"{conv} assigned twice: {per_conv[conv]}"
            held[conv] = True
    assert set(per_conv) == set(convs)
    assert sum(assigned_events.values()) <= sum(1 for v in per_conv.values() for r in v if not r.startswith("release:"))
    # counters are exact: no member holds anything, every load is back to zero
    loads = await r.hgetall(k.load)
    assert all(int(v) == 0 for v in loads.values()), loads
    assert await r.zcard(k.held) == 0
    assert await r.zcard(k.queue("s:shop")) == 0
    await r.aclose()
