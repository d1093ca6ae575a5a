"""Presence (R5–R11): online / idle / offline across tabs, devices and nodes.

A member is online (or idle, its toggle) while any connection lives on any node; ``offline``
only after ``grace`` seconds without one (R10). Each node heartbeats; survivors reap a dead
node's connections, so a SIGKILLed node's members go offline after the grace period and their
conversations are re-dispatched (R15). Deadlines live in Redis (``kefu:due``), so any node can
finish what a dead one started.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from kefu.protocol.errors import BadRequest, ErrorCode

from .connection import spawn
from .storage import keys as K
from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from .accounts import Member
    from .connection import Connection
    from .node import Node

log = logging.getLogger("kefu.presence")
EXPIRE_SLICE = 200  # grace deadlines expired per slice
DEAD_AFTER = 10  # heartbeats missed before a node counts as dead (a busy event loop must not look dead)


class Presence:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._registered = False
        self._expiring: set[str] = set()  # deadlines due this tick, expired together

    # ---- connections ----------------------------------------------------------------------
    async def member_connected(self, c: "Connection", status: str | None) -> str:
        n = self.node
        assert c.member is not None
        k = SellerKeys(c.seller)
        await n.r.sadd(K.node_sellers(n.id), c.seller)
        old, new = await n.scripts.run("connect", [k.conns, k.node_conns(n.id), k.status, k.want, k.names],
                                       [c.user, n.id, c.id, status or "", k.ch_prefix, "1" if c.member.main else ""])
        await n.r.zrem(K.DUE, f"{c.seller}\0{c.user}")
        self._cancel(f"{c.seller}\0{c.user}")
        if new == "online" and old != "online":
            spawn(n.dispatcher.drain_for(c.seller, c.user))
        return str(new)

    async def buyer_connected(self, c: "Connection") -> None:
        n = self.node
        k = SellerKeys(c.seller)
        pipe = n.r.pipeline(transaction=False)
        pipe.sadd(K.node_sellers(n.id), c.seller)
        pipe.zadd(k.conns, {f"b:{c.user}\0{n.id}\0{c.id}": 0})
        pipe.sadd(k.node_conns(n.id), f"b:{c.user}\0{c.id}")
        pipe.zrem(K.DUE, f"{c.seller}\0b:{c.user}")
        await pipe.execute()
        self._cancel(f"{c.seller}\0b:{c.user}")

    def _cancel(self, entry: str) -> None:
        t = self._timers.pop(entry, None)
        if t:
            t.cancel()

    async def disconnected(self, c: "Connection") -> None:
        n = self.node
        k = SellerKeys(c.seller)
        who = c.user if c.kind == "member" else f"b:{c.user}"
        gone = await n.scripts.run("disconnect", [k.conns, k.node_conns(n.id)], [n.id, f"{who}\0{c.id}"])
        for g in gone:
            await self.schedule(c.seller, g, n.now_ms())

    async def schedule(self, seller: str, who: str, since_ms: int) -> None:
        """After the grace period, check again: still no connection -> offline (or leave the queue)."""
        n = self.node
        grace = n.settings.buyer_grace if who.startswith("b:") else n.settings.grace
        due = since_ms + int(grace * 1000)
        entry = f"{seller}\0{who}"
        await n.r.zadd(K.DUE, {entry: due})
        old = self._timers.pop(entry, None)
        if old:
            old.cancel()
        delay = max(0.0, (due - n.now_ms()) / 1000)
        self._timers[entry] = asyncio.get_running_loop().call_later(delay, self._due, entry)

    def _due(self, entry: str) -> None:
        """A grace timer fired: expire it with the others of this tick, in one batch."""
        self._timers.pop(entry, None)
        self._expiring.add(entry)
        if len(self._expiring) == 1:
            asyncio.get_running_loop().call_soon(lambda: spawn(self._expire_batch()))

    async def _expire_batch(self) -> None:
        """Expire every deadline due now in a few pipelined round trips, however many there are.

        A mass disconnect (a node restart, a network blip, a load test ending) makes thousands of
        deadlines fall due together; handled one by one they took several round trips each and
        stalled live traffic on the node for ~200 ms (bench/RESULTS.md, B1 tail latency).
        """
        entries, self._expiring = list(self._expiring), set()
        # in slices: each is a few round trips, and live traffic runs between them (one slice of 200
        # costs the loop ~2 ms; 1,000 buyers at once in one piece stalled it ~20 ms)
        for i in range(0, len(entries), EXPIRE_SLICE):
            if i:
                await asyncio.sleep(0)  # yield to the sockets between slices
            await self._expire(entries[i:i + EXPIRE_SLICE])

    async def _expire(self, entries: list[str]) -> None:
        removed = await self.node.rs.batch([("ZREM", K.DUE, e) for e in entries])
        mine = [e.split("\0", 1) for e, ok in zip(entries, removed) if ok == 1]  # 0: back, or another node did it
        buyers = [(seller, who[2:]) for seller, who in mine if who.startswith("b:")]
        for seller, who in mine:
            if not who.startswith("b:"):
                spawn(self._member_gone(seller, who))
        if buyers:
            await self._buyers_gone(buyers)

    async def _member_gone(self, seller: str, who: str) -> None:
        n = self.node
        k = SellerKeys(seller)
        res = await n.scripts.run("offline", [k.conns, k.status, k.held, k.names], [who, k.ch_prefix])
        if res[0] == "offline":
            log.info("member %s:%s offline", seller, who)
            await n.dispatcher.redispatch(seller, who, list(res[1:]))

    async def _buyers_gone(self, buyers: list[tuple[str, str]]) -> None:
        """Buyers whose grace ran out leave the queues they wait in (three round trips per slice)."""
        rs = self.node.rs  # hiredis-packed batches: a slice of buyers costs little loop time
        cmds: list[tuple[str, ...]] = []
        for seller, buyer in buyers:
            k = SellerKeys(seller)
            cmds += [("ZRANGEBYLEX", k.conns, f"[b:{buyer}\0", f"[b:{buyer}\0\xff", "LIMIT", "0", "1"), ("HKEYS", k.stores)]
        res = await rs.batch(cmds)
        gone = [(seller, buyer, stores) for (seller, buyer), live, stores in zip(buyers, res[::2], res[1::2])
                if not live]
        opened = [(seller, buyer, store) for seller, buyer, stores in gone for store in stores]
        convs = await rs.batch([("GET", SellerKeys(s).open_conv(b, st)) for s, b, st in opened]) if opened else []
        found = [(seller, buyer, conv) for (seller, buyer, _), conv in zip(opened, convs) if conv]
        states = await rs.batch([("HGET", SellerKeys(s).conv(c), "state") for s, _, c in found]) if found else []
        for (seller, buyer, conv), state in zip(found, states):
            if state == "queued":
                try:
                    await self.node.conversations.leave(seller, buyer, conv)
                except Exception as e:
                    log.debug("leave %s: %s", conv, e)

    # ---- status toggle (R8, R9) -------------------------------------------------------------
    async def set_status(self, actor: "Member", target: str | None, status: str) -> dict[str, Any]:
        """The suspend/resume toggle, for oneself or (R9, ``manage``) for another member of the seller."""
        n = self.node
        who = target or actor.id
        if who != actor.id:
            actor.require("manage")  # R9: the seller or a supervisor with the manage permission
        m = await n.accounts.get(actor.seller, who)
        k = SellerKeys(actor.seller)
        _, old, new = await n.scripts.run("status", [k.status, k.want, k.conns, k.names],
                                          [who, status, k.ch_prefix, "1" if m.main else ""])
        if new == "online" and old != "online":
            await n.dispatcher.drain_for(actor.seller, who)
        return {"member": who, "status": new, "want": await n.r.hget(k.want, who)}

    async def contacts(self, c: "Connection") -> list[dict[str, Any]]:
        """R21: the members of the same seller (and its main account), with live presence."""
        n = self.node
        k = SellerKeys(c.seller)
        pipe = n.r.pipeline(transaction=False)
        pipe.hgetall(k.names)
        pipe.hgetall(k.status)
        names, status = await pipe.execute()
        return [{"member": m, "name": nm, "status": status.get(m, "offline"), "main": m == c.seller}
                for m, nm in sorted(names.items()) if m != c.user]

    async def groups(self, seller: str) -> list[dict[str, str]]:
        """The seller's groups, for "transfer to a group" (R19) in every member's console."""
        names = await self.node.r.hgetall(SellerKeys(seller).groups)
        return [{"group": g, "name": n} for g, n in sorted(names.items())]

    # ---- node liveness ----------------------------------------------------------------------
    async def tick(self) -> None:
        """Heartbeat, reap dead nodes, and run overdue deadlines (e.g. those of a dead node)."""
        n = self.node
        now = n.now_ms()
        if await n.r.zadd(K.NODES, {n.id: now}) and self._registered:
            # we were silent long enough for another node to reap us (a long pause): put our live
            # connections back, so nobody is offline while connected
            log.warning("node %s was reaped while alive: re-registering its connections", n.id)
            await self.reregister()
        self._registered = True
        stale = await n.r.zrangebyscore(K.NODES, "-inf", now - int(DEAD_AFTER * n.settings.heartbeat * 1000))
        for dead in stale:
            if dead == n.id:
                continue
            last = await n.r.zscore(K.NODES, dead)
            log.warning("node %s silent since %s: reaping its connections", dead, last)
            for seller in await n.r.smembers(K.node_sellers(dead)):
                k = SellerKeys(seller)
                gone = await n.scripts.run("disconnect", [k.conns, k.node_conns(dead)], [dead, "*"])
                for g in gone:
                    await self.schedule(seller, g, int(last or now))
            await n.r.delete(K.node_sellers(dead))
            await n.r.zrem(K.NODES, dead)
        for entry in await n.r.zrangebyscore(K.DUE, "-inf", now, start=0, num=200):
            if entry not in self._timers:
                self._due(entry)

    async def reregister(self) -> None:
        for c in tuple(self.node.hub.conns):
            if c.closed or c.watch or not c.kind:
                continue
            if c.kind == "member":
                await self.member_connected(c, None)
            else:
                await self.buyer_connected(c)

    def validate_status(self, status: str) -> str:
        if status not in ("online", "idle"):
            raise BadRequest(ErrorCode.INVALID, "status is online or idle")
        return status
