"""Who gets each conversation (R12–R15, R19): the Python side of ``storage/lua/dispatch.lua``.

The decision itself is one Lua script, atomic across every node (R14). This module picks the
keys, drains queues when capacity frees (an event, never a polling loop), and re-dispatches an
offline member's conversations (R15).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .accounts import uncsv
from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("kefu.dispatch")
MAX_DRAIN = 1000  # per call: a bound, not a tuning knob


@dataclass
class Outcome:
    result: str            # "assigned" | "queued" | "already"
    member: str = ""
    reason: str = ""
    position: int = 0
    version: int = 0
    name: str = ""  # the member's display name (what a buyer is shown)
    first_seq: int = 0  # a new buyer conversation: the seq of the message that opened it

    def public(self) -> dict[str, Any]:
        if self.result == "queued":
            return {"state": "queued", "position": self.position}
        return {"state": "active" if self.result == "assigned" else self.result, "member": self.member,
                "reason": self.reason}


def explanation(conv: str, h: dict[str, str]) -> dict[str, Any]:
    """Why a conversation is where it is: the recorded reason and candidates of its last decision."""
    return {"conv": conv, "state": h.get("state"), "member": h.get("member", ""), "reason": h.get("reason", ""),
            "candidates": json.loads(h.get("candidates") or "[]"), "queue": h.get("queue", "")}


class Dispatcher:
    def __init__(self, node: "Node") -> None:
        self.node = node

    async def dispatch(self, seller: str, conv: str, queue: str, *, addressed: str = "", release_from: str = "",
                       reason: str = "", exclude: str = "", note: str = "", transfer: str = "") -> Outcome:
        k = SellerKeys(seller)
        n = self.node
        res = await n.scripts.run("dispatch", [
            k.conv(conv), k.status, k.route, k.cap, k.load, k.lastassign, k.sticky, k.held, k.queue(queue),
            k.qver, k.names, k.assignlog, k.wo_handlers, k.log(conv), k.transfers(conv), k.seller],
            [conv, n.now_ms(), int(self.node.settings.sticky_window * 1000), addressed, k.ch_prefix,
             release_from, reason, queue, exclude, note, transfer])
        kind = res[0]
        if kind == "assigned":
            n.metrics.dispatched(res[2])
            return Outcome("assigned", member=res[1], reason=res[2], name=res[4])
        if kind == "queued":
            n.metrics.dispatched("queued")
            return Outcome("queued", position=int(res[1]), version=int(res[2]))
        return Outcome("already", member=res[2] if len(res) > 2 else "", reason=res[1])

    async def position(self, seller: str, queue: str, conv: str) -> tuple[int, int]:
        k = SellerKeys(seller)
        pipe = self.node.r.pipeline(transaction=True)
        pipe.zrank(k.queue(queue), conv)
        pipe.hget(k.qver, queue)
        rank, ver = await pipe.execute()
        return (int(rank) + 1 if rank is not None else 0), int(ver or 0)

    async def drain(self, seller: str, queues: list[str]) -> int:
        """Serve queued conversations, oldest first per queue, while anyone eligible has capacity (R12.4)."""
        k = SellerKeys(seller)
        served = 0
        for q in queues:
            for _ in range(MAX_DRAIN):
                head = await self.node.r.zrange(k.queue(q), 0, 0)
                if not head:
                    break
                out = await self.dispatch(seller, head[0], q)
                if out.result == "queued":
                    break
                if out.result == "already":
                    await self.node.r.zrem(k.queue(q), head[0])  # stale entry: served elsewhere
                    continue
                served += 1
        return served

    async def queues_of(self, seller: str, member: str) -> list[str]:
        route = await self.node.r.hget(SellerKeys(seller).route, member)
        return uncsv(route)

    async def drain_for(self, seller: str, member: str) -> int:
        return await self.drain(seller, await self.queues_of(seller, member))

    async def all_queues(self, seller: str) -> list[str]:
        k = SellerKeys(seller)
        stores = await self.node.r.hkeys(k.stores)
        groups = await self.node.r.hkeys(k.groups)
        return [f"s:{s}" for s in sorted(stores)] + [f"g:{g}" for g in sorted(groups)]

    async def redispatch(self, seller: str, member: str, convs: list[str]) -> None:
        """R15: an offline member's open conversations go back to the dispatcher (or wait, per policy)."""
        policy = await self.node.r.hget(SellerKeys(seller).seller, "policy") or "redispatch"
        if policy != "redispatch":
            return
        k = SellerKeys(seller)
        for conv in convs:
            q = await self.node.r.hget(k.conv(conv), "queue") or ""
            try:
                await self.dispatch(seller, conv, q, release_from=member, reason="redispatch", exclude=member)
            except Exception as e:  # another node did it first: not_holder
                log.debug("redispatch %s: %s", conv, e)
