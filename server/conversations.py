"""Conversations (R16–R21): open, send, history, read marks, close, restart, transfer, internal chat.

Every write that must be atomic is a Lua script (append, close, restart, transfer, dispatch);
this module checks who may do what and builds the keys.
"""
from __future__ import annotations

import asyncio
import json
import secrets
from typing import TYPE_CHECKING, Any

from kefu.protocol.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound

from .dispatcher import Outcome
from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from .connection import Connection
    from .node import Node


def _msg(conv: str, store: str, sid: str, f: dict[str, str]) -> dict[str, Any]:
    return {"conv": conv, "seq": int(sid.split("-", 1)[0]), "kind": f.get("k", ""), "from": f.get("f", ""),
            "name": f.get("n", ""), "text": f.get("t", ""), "ts": int(f.get("ts", 0)), "cid": f.get("c", ""),
            "store": store}


CONV_FIELDS = ("state", "store", "buyer", "member", "kind", "a", "b", "seq", "created", "assigned_at",
               "closed_at", "first_buyer", "first_resp", "queue", "reason", "last_ts", "last_text", "last_kind",
               "bread", "transfers", "service_ms", "queued_at", "first_assigned", "restarts")
INT_FIELDS = {"seq", "created", "assigned_at", "closed_at", "first_buyer", "first_resp", "last_ts",
              "bread", "transfers", "service_ms", "queued_at", "first_assigned", "restarts"}


def conv_view(conv: str, h: dict[str, str], for_buyer: bool = False, viewer: str = "") -> dict[str, Any]:
    """The conversation as ``viewer`` sees it; ``mread``/``unread`` are that member's own read mark."""
    out: dict[str, Any] = {"conv": conv}
    for f in CONV_FIELDS:
        v = h.get(f)
        if v is None or v == "":
            continue
        out[f] = int(float(v)) if f in INT_FIELDS else v
    if not for_buyer:
        out["mread"] = int(h.get(f"mread:{viewer}") or 0)
    out["unread"] = max(0, out.get("seq", 0) - out.get("bread" if for_buyer else "mread", 0))
    if for_buyer:  # buyers never see routing internals (R7)
        for f in ("reason", "queue", "transfers", "service_ms", "first_resp", "first_assigned", "mread"):
            out.pop(f, None)
    return out


class Conversations:
    def __init__(self, node: "Node") -> None:
        self.node = node

    def new_id(self, prefix: str = "c") -> str:
        return f"{prefix}{self.node.now_ms():x}{secrets.token_hex(3)}"

    async def get(self, seller: str, conv: str) -> dict[str, str]:
        h = await self.node.r.hgetall(SellerKeys(seller).conv(conv))
        if not h:
            raise NotFound(ErrorCode.NOT_FOUND, "no such conversation")
        return h

    async def read_after(self, seller: str, conv: str, after: int, count: int = 500) -> list[dict[str, Any]]:
        k = SellerKeys(seller)
        pipe = self.node.r.pipeline(transaction=False)
        pipe.hget(k.conv(conv), "store")
        pipe.xrange(k.log(conv), f"{after + 1}-0", "+", count=count)
        store, rows = await pipe.execute()
        return [_msg(conv, store or "", sid, f) for sid, f in rows]

    # ---- access ------------------------------------------------------------------------------
    async def can_read(self, c: "Connection", conv: str, h: dict[str, str]) -> bool:
        if c.kind == "buyer":
            return h.get("buyer") == c.user and h.get("store") == c.store
        m = c.member
        assert m is not None
        if h.get("kind") == "internal":
            return c.user in (h.get("a"), h.get("b"))
        if h.get("member") == c.user or m.can("dashboard"):
            return True
        k = SellerKeys(c.seller)
        if await self.node.r.zscore(k.closed_of(c.user), conv) is not None:
            return True
        for raw in await self.node.r.lrange(k.transfers(conv), 0, -1):
            t = json.loads(raw)
            if c.user in (t.get("from"), t.get("to")):
                return True
        return False

    async def visible(self, c: "Connection", conv: str) -> dict[str, str]:
        """The conversation if the caller may read it; NOT_FOUND otherwise (never reveal existence)."""
        h = await self.node.r.hgetall(SellerKeys(c.seller).conv(conv))
        if not h or not await self.can_read(c, conv, h):
            raise NotFound(ErrorCode.NOT_FOUND, "no such conversation")
        return h

    # ---- buyers --------------------------------------------------------------------------
    async def open_for_buyer(self, c: "Connection", addressed: str = "", first: tuple[str, str] | None = None
                             ) -> tuple[str, Outcome | None, bool]:
        """The buyer's open conversation at its store, creating (and dispatching) one if needed.

        ``first`` = (cid, text): the buyer's first message, stored before the dispatch so the member
        who gets the conversation always finds it (and cannot close it before it lands).
        """
        k = SellerKeys(c.seller)
        conv = self.new_id()
        now = self.node.now_ms()
        q = f"s:{c.store}"
        c.cursors.setdefault(conv, 0)
        # open, store the first message, dispatch: three scripts started in this order in one tick go
        # to Redis in one pipeline (scripts.py), so a new conversation costs one round trip. If the
        # buyer already has an open conversation, the other two find no such conversation and do nothing.
        steps = [self.node.scripts.run("open", [k.open_conv(c.user, c.store), k.conv(conv), k.buyer_convs(c.user),
                                                k.convs], [conv, c.store, c.user, now, q])]
        if first is not None:
            steps.append(self.append(c, conv, first[0], first[1]))
        steps.append(self.node.dispatcher.dispatch(c.seller, conv, q, addressed=addressed))
        res = await asyncio.gather(*steps, return_exceptions=True)
        if isinstance(res[0], BaseException):
            raise res[0]
        if res[0][0] == "existing":
            c.cursors.pop(conv, None)
            return str(res[0][1]), None, False
        for x in res[1:]:
            if isinstance(x, BaseException):
                raise x
        self.node.metrics.conversations_opened += 1
        out = res[-1]
        assert isinstance(out, Outcome)
        if first is not None:
            out.first_seq = int(res[1][0])  # type: ignore[index]
        return conv, out, True

    async def buyer_subscribe_queue(self, c: "Connection", queue: str) -> None:
        ch = SellerKeys(c.seller).ch_queue(queue)
        if ch not in c.channels:
            await self.node.hub.subscribe(c, ch)
            c.channels.append(ch)

    # ---- sending ------------------------------------------------------------------------------
    async def append(self, c: "Connection", conv: str, cid: str, text: str) -> tuple[int, bool]:
        k = SellerKeys(c.seller)
        name = c.member.name if c.member else "buyer"
        kind = "buyer" if c.kind == "buyer" else "member"
        res = await self.node.scripts.run("append", [k.conv(conv), k.log(conv), k.cids(conv)],
                                          [conv, kind, c.user, name, text, self.node.now_ms(), cid, k.ch_prefix])
        return int(res[1]), res[0] == "dup"

    async def history(self, c: "Connection", conv: str, before: int | None, after: int | None,
                      limit: int) -> dict[str, Any]:
        h = await self.visible(c, conv)
        k = SellerKeys(c.seller)
        r = self.node.r
        if after is not None:
            rows = await r.xrange(k.log(conv), f"{after + 1}-0", "+", count=limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
        else:
            hi = f"{before - 1}-0" if before is not None else "+"
            if before is not None and before <= 1:
                rows = []
            else:
                rows = await r.xrevrange(k.log(conv), hi, "-", count=limit + 1)
            more = len(rows) > limit
            rows = list(reversed(rows[:limit]))
        msgs = [_msg(conv, h.get("store", ""), sid, f) for sid, f in rows]
        if c.kind == "buyer":
            msgs = [m for m in msgs if m["kind"] != "note"]
        return {"conv": conv, "messages": msgs, "more": more}

    async def mark_read(self, c: "Connection", conv: str, seq: int) -> None:
        h = await self.visible(c, conv)
        # members each have their own mark: the two sides of an internal chat, or a transfer's new holder
        field = "bread" if c.kind == "buyer" else f"mread:{c.user}"
        seq = min(seq, int(h.get("seq") or 0))
        if seq > int(h.get(field) or 0):
            await self.node.r.hset(SellerKeys(c.seller).conv(conv), field, seq)

    # ---- listing ------------------------------------------------------------------------------
    async def list_for(self, c: "Connection", state: str, before: float | None, limit: int) -> list[dict[str, Any]]:
        k = SellerKeys(c.seller)
        r = self.node.r
        if c.kind == "buyer":
            ids = await r.zrevrange(k.buyer_convs(c.user), 0, 499)  # this store's are filtered below
        elif state == "active":
            raw = await r.zrangebylex(k.held, f"[{c.user}\0", f"[{c.user}\0\xff")
            ids = [e.split("\0", 1)[1] for e in raw]
            ids += list(await r.smembers(k.internals_of(c.user)))
        elif state == "closed":
            hi = f"({before}" if before is not None else "+inf"
            ids = await r.zrevrangebyscore(k.closed_of(c.user), hi, "-inf", start=0, num=limit)
        else:
            assert c.member is not None
            c.member.require("dashboard")
            ids = []
            for q in await self.node.dispatcher.all_queues(c.seller):
                ids += await r.zrange(k.queue(q), 0, limit - 1)
        pipe = r.pipeline(transaction=False)
        for conv in ids:
            pipe.hgetall(k.conv(conv))
        out = [conv_view(conv, h, c.kind == "buyer", c.user) for conv, h in zip(ids, await pipe.execute()) if h]
        if c.kind == "buyer":
            out = [v for v in out if v.get("store") == c.store]
        return out[:limit] if state != "active" or c.kind == "buyer" else out

    # ---- lifecycle (R16) ---------------------------------------------------------------------
    async def close(self, c: "Connection", conv: str) -> None:
        k = SellerKeys(c.seller)
        h = await self.get(c.seller, conv)
        if h.get("kind") == "internal":
            raise BadRequest(ErrorCode.INVALID, "internal conversations are not closed")
        res = await self.node.scripts.run("close", [k.conv(conv), k.load, k.held, k.closed_of(c.user),
                                                    k.open_conv(h.get("buyer", ""), h.get("store", "")), k.cap],
                                          [conv, c.user, self.node.now_ms(), k.ch_prefix])
        self.node.metrics.closed += 1
        await self.node.dispatcher.drain_for(c.seller, c.user)
        del res

    async def restart(self, c: "Connection", conv: str) -> None:
        k = SellerKeys(c.seller)
        h = await self.get(c.seller, conv)
        await self.node.scripts.run("restart", [k.conv(conv), k.load, k.cap, k.held, k.closed_of(c.user),
                                                k.open_conv(h.get("buyer", ""), h.get("store", "")), k.names],
                                    [conv, c.user, self.node.now_ms(), k.ch_prefix])

    async def leave(self, seller: str, buyer: str, conv: str) -> None:
        k = SellerKeys(seller)
        h = await self.get(seller, conv)
        q = h.get("queue", "")
        await self.node.scripts.run("leave", [k.conv(conv), k.queue(q), k.qver, k.open_conv(buyer, h.get("store", ""))],
                                    [conv, buyer, self.node.now_ms(), k.ch_prefix])
        self.node.metrics.left_queue += 1

    # ---- transfers (R18–R20) -------------------------------------------------------------------
    async def transfer(self, c: "Connection", conv: str, to_member: str | None, to_group: str | None,
                       reason: str) -> dict[str, Any]:
        assert c.member is not None
        c.member.require("transfer")
        if bool(to_member) == bool(to_group):
            raise BadRequest(ErrorCode.INVALID, "give exactly one of to_member, to_group")
        k = SellerKeys(c.seller)
        r = self.node.r
        me = c.member.name
        if to_member:
            tname = await r.hget(k.names, to_member)
            if tname is None:
                raise NotFound(ErrorCode.NOT_FOUND, f"no member {to_member!r}")
            note = f"{me} → {tname}" + (f": {reason}" if reason else "")
            res = await self.node.scripts.run("transfer", [
                k.conv(conv), k.log(conv), k.status, k.route, k.cap, k.load, k.held, k.names, k.transfers(conv),
                k.assignlog, k.sticky, k.lastassign],
                [conv, c.user, to_member, reason, self.node.now_ms(), k.ch_prefix, f"转接 transfer: {note}"])
            self.node.metrics.transfers += 1
            await self.node.dispatcher.drain_for(c.seller, c.user)
            return {"state": "active", "member": to_member, "note_seq": int(res[1])}
        assert to_group is not None
        gname = await r.hget(k.groups, to_group)
        if gname is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no group {to_group!r}")
        h = await self.get(c.seller, conv)
        if h.get("member") != c.user or h.get("state") != "active":
            raise Conflict(ErrorCode.NOT_HOLDER, "you do not hold this conversation")
        note = f"{me} → {gname}" + (f": {reason}" if reason else "")
        out = await self.node.dispatcher.dispatch(
            c.seller, conv, f"g:{to_group}", release_from=c.user, reason="transfer", exclude=c.user,
            note=f"转接 transfer: {note}",
            transfer=json.dumps({"from": c.user, "group": to_group, "reason": reason, "kind": "group"}))
        self.node.metrics.transfers += 1
        await self.node.dispatcher.drain_for(c.seller, c.user)
        return out.public()

    async def transfers_of(self, c: "Connection", conv: str) -> list[dict[str, Any]]:
        await self.visible(c, conv)
        return [json.loads(x) for x in await self.node.r.lrange(SellerKeys(c.seller).transfers(conv), 0, -1)]

    # ---- internal chat (R21) ------------------------------------------------------------------
    async def open_internal(self, c: "Connection", other: str) -> str:
        k = SellerKeys(c.seller)
        r = self.node.r
        if other == c.user:
            raise BadRequest(ErrorCode.INVALID, "cannot chat with yourself")
        if not await r.sismember(k.members, other):
            raise NotFound(ErrorCode.NOT_FOUND, f"no member {other!r}")  # nothing crosses sellers
        ikey = k.internal(c.user, other)
        conv = await r.get(ikey)
        if conv:
            return str(conv)
        conv = self.new_id("i")
        a, b = sorted((c.user, other))
        await r.hset(k.conv(conv), mapping={"kind": "internal", "a": a, "b": b, "state": "active", "seq": 0,
                                            "created": self.node.now_ms()})
        if not await r.set(ikey, conv, nx=True):
            await r.delete(k.conv(conv))
            return str(await r.get(ikey))
        await r.sadd(k.internals_of(a), conv)
        await r.sadd(k.internals_of(b), conv)
        for m in (a, b):
            await r.publish(k.ch_member(m), self.node.pack_event("internal", {"conv": conv, "with": b if m == a else a}))
        return conv

    def check_member(self, c: "Connection") -> None:
        if c.kind != "member":
            raise Forbidden(ErrorCode.FORBIDDEN, "members only")
