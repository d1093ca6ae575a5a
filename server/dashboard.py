"""The admin live view (R9, R11, R26 live figures): every member's status and load, every queue."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from .node import Node


async def snapshot(node: "Node", seller: str) -> dict[str, Any]:
    k = SellerKeys(seller)
    r = node.r
    pipe = r.pipeline(transaction=False)
    for key in (k.names, k.status, k.want, k.load, k.cap, k.route):
        pipe.hgetall(key)
    pipe.zrange(k.held, 0, -1)
    names, status, want, load, cap, route, held = await pipe.execute()
    convs: dict[str, list[str]] = {}
    for e in held:
        m, conv = e.split("\0", 1)
        convs.setdefault(m, []).append(conv)
    members = [{"member": m, "name": nm, "status": status.get(m, "offline"), "want": want.get(m, "online"),
                "load": int(load.get(m, 0) or 0), "cap": int(cap.get(m, 0) or 0), "main": m == seller,
                "convs": convs.get(m, []), "routable": bool(route.get(m))}
               for m, nm in sorted(names.items())]
    queues = []
    now = node.now_ms()
    for q in await node.dispatcher.all_queues(seller):
        pipe = r.pipeline(transaction=False)
        pipe.zcard(k.queue(q))
        pipe.zrange(k.queue(q), 0, 0, withscores=True)
        n, head = await pipe.execute()
        oldest = int(head[0][1]) if head else 0
        queues.append({"queue": q, "length": n, "oldest": oldest, "wait_ms": now - oldest if oldest else 0})
    counts: dict[str, int] = {"online": 0, "idle": 0, "offline": 0}
    for m in members:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    from .stats import live_groups  # R26 live: per group, members per status, load, queues served
    return {"seller": seller, "members": members, "queues": queues, "counts": counts, "ts": now,
            "groups": await live_groups(node, seller, members, queues)}
