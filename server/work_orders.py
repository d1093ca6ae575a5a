"""Work orders (协同工单, R22–R25): create from a conversation, assign, track, cancel, stats, CSV.

A work order is a hash ``wo:<id>`` plus a history list. Every list the console shows — created by
a member, held by a handler (``m:<member>`` or ``g:<group>``), a handler's to-do, a buyer's — is a
zset scored by the work order's number, so pages and counts are index reads. Changes are decided
here on a snapshot (who may do what, which transitions are legal) and applied by ``wo_update.lua``
only if status and handler are still those of the snapshot (else: read again), so lists, counts
and the buyer routing hash (``wo_handlers``, read by dispatch.lua) always move together.

Buyers never see work orders: every request here is member-only, and events go to member channels.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, cast

from redis.asyncio import Redis

from kefu.protocol import messages as M
from kefu.protocol.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound

from .accounts import Member
from .gateway import handles
from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from starlette.requests import Request

    from .connection import Connection
    from .node import Node

STATUSES = ("open", "in_progress", "done", "cancelled")
LIVE = frozenset({"open", "in_progress"})
LEGAL: dict[str, frozenset[str]] = {      # R24: open -> in_progress -> done; cancelled from a live one
    "open": frozenset({"in_progress", "cancelled"}),
    "in_progress": frozenset({"done", "cancelled"}),
    "done": frozenset(),
    "cancelled": frozenset(),
}
STAMP = {"in_progress": "started_at", "done": "done_at", "cancelled": "cancelled_at"}
DEFAULT_TYPES = ("refund", "exchange", "logistics", "complaint", "invoice", "other")
MAX_TYPES = 50
BATCH = 100           # ids read per round while filtering a list
SCAN_MAX = 2000       # ids examined per wo.list page; the reply's ``next`` continues from there
RETRIES = 50          # optimistic retries when status/handler changed between read and write
FIELDS = ("type", "status", "content", "buyer", "store", "order", "conv", "creator", "handler",
          "handler_member", "handler_group", "created", "updated", "started_at", "done_at", "cancelled_at")
INT_FIELDS = frozenset({"created", "updated", "started_at", "done_at", "cancelled_at"})
MAX_MS = 253402214400000  # 9999-12-31T00:00Z: later times cannot be formatted in every UTC offset
ID_RE = re.compile(r"^wo([1-9][0-9]{0,17})$")
CSV_COLUMNS = ("wo", "created", "type", "status", "store", "buyer", "order", "conv", "creator", "creator_name",
               "handler_member", "handler_group", "handler_name", "content", "updated", "started_at", "done_at",
               "cancelled_at")


# ---- records ----------------------------------------------------------------------------------

def number(wo: str) -> int:
    """``wo42`` -> 42, the score of the work order in every list. Unknown shapes are simply not found."""
    mt = ID_RE.match(wo)
    if not mt:
        raise NotFound(ErrorCode.NOT_FOUND, "no such work order")
    return int(mt.group(1))


def wo_view(wo: str, h: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"wo": wo}
    for f in FIELDS:
        v = h.get(f)
        if v:
            out[f] = int(v) if f in INT_FIELDS else v
    return out


def mine(m: Member) -> list[str]:
    """The handler keys a member answers for: itself and each of its groups."""
    return [f"m:{m.id}"] + [f"g:{g}" for g in m.groups]


@dataclass(frozen=True)
class Who:
    """The caller's relation to one work order."""
    creator: bool
    handler: bool       # the member handler
    in_group: bool      # a member of the group handler (may take it)
    manager: bool       # main account or ``manage``

    @property
    def participant(self) -> bool:
        return self.creator or self.handler or self.in_group or self.manager


def relation(m: Member, h: dict[str, str]) -> Who:
    hd = h.get("handler", "")
    return Who(creator=h.get("creator") == m.id, handler=hd == f"m:{m.id}",
               in_group=hd.startswith("g:") and hd[2:] in m.groups, manager=m.can("manage"))


async def me(node: "Node", c: "Connection") -> Member:
    """The caller's current record: permissions and groups as they are now, not as at login."""
    return await node.accounts.get(c.seller, c.user)


async def serving_buyer(r: Redis, k: SellerKeys, member: str, buyer: str) -> bool:
    """Does ``member`` hold an active conversation with ``buyer`` (the work orders beside the chat)?"""
    convs = cast(list[str], await r.zrevrange(k.buyer_convs(buyer), 0, 19))
    pipe = r.pipeline(transaction=False)
    for cv in convs:
        pipe.hmget(k.conv(cv), "state", "member")
    return any(st == "active" and mb == member for st, mb in await pipe.execute())


async def visible(r: Redis, k: SellerKeys, m: Member, h: dict[str, str], who: Who) -> bool:
    """Participants, supervisors, the group it came through (read-only once taken), and whoever
    serves its buyer now (the console shows it beside the chat)."""
    return (who.participant or m.can("dashboard") or h.get("handler_group", "") in m.groups
            or await serving_buyer(r, k, m.id, h.get("buyer", "")))


async def handler_key(r: Redis, k: SellerKeys, member: str | None, group: str | None) -> str:
    if bool(member) == bool(group):
        raise BadRequest(ErrorCode.INVALID, "give exactly one of handler_member, handler_group")
    if member:
        if not await r.sismember(k.members, member):
            raise NotFound(ErrorCode.NOT_FOUND, f"no member {member!r}")  # same answer for other sellers
        return f"m:{member}"
    assert group
    if not await r.hexists(k.groups, group):
        raise NotFound(ErrorCode.NOT_FOUND, f"no group {group!r}")
    return f"g:{group}"


async def recipients(r: Redis, k: SellerKeys, creator: str, handlers: set[str]) -> set[str]:
    """Members to tell: the creator and every handler — a group handler is all of its members."""
    out = {creator}
    for hd in handlers:
        if hd.startswith("m:"):
            out.add(hd[2:])
        elif hd.startswith("g:"):
            out |= cast(set[str], await r.smembers(k.group_members(hd[2:])))
    out.discard("")
    return out


async def notify(node: "Node", k: SellerKeys, to: set[str], view: dict[str, Any], action: str, by: str,
                 changes: list[dict[str, Any]]) -> None:
    """Persist, then publish: one ``wo`` event, encoded once, to each recipient's member channel."""
    ev = node.pack_event("wo", {**view, "action": action, "by": by, "changes": changes})
    pipe = node.r.pipeline(transaction=False)
    for mb in sorted(to):
        pipe.publish(k.ch_member(mb), ev)
    await pipe.execute()


# ---- types (R22: configurable per seller) -------------------------------------------------------

async def get_types(r: Redis, seller: str) -> list[str]:
    return cast(list[str], await r.lrange(SellerKeys(seller).wo_types, 0, -1)) or list(DEFAULT_TYPES)


async def set_types(r: Redis, seller: str, types: Any) -> list[str]:
    if not isinstance(types, list) or not 1 <= len(types) <= MAX_TYPES:
        raise BadRequest(ErrorCode.INVALID, f"types: a list of 1 to {MAX_TYPES} names")
    out: list[str] = []
    for t in types:
        if not isinstance(t, str) or not 1 <= len(t.strip()) <= 32 or any(ch < " " for ch in t):
            raise BadRequest(ErrorCode.INVALID, f"bad type {t!r}: 1 to 32 characters, one line")
        if t.strip() not in out:
            out.append(t.strip())
    k = SellerKeys(seller)
    pipe = r.pipeline(transaction=True)
    pipe.delete(k.wo_types)
    pipe.rpush(k.wo_types, *out)
    await pipe.execute()
    return out


# ---- create (R22) ------------------------------------------------------------------------------

async def create(node: "Node", c: "Connection", req: M.WoCreate) -> dict[str, Any]:
    m = await me(node, c)
    m.require("wo_create")
    k = SellerKeys(c.seller)
    r = node.r
    types = await get_types(r, c.seller)
    if req.type not in types:
        raise BadRequest(ErrorCode.INVALID, f"unknown type {req.type!r}; this seller's types: {types}")
    handler = await handler_key(r, k, req.handler_member, req.handler_group)
    buyer, store = req.buyer or "", req.store or ""
    if req.conv:
        h = await node.conversations.visible(c, req.conv)  # the creator must be able to read it
        if h.get("kind") != "buyer":
            raise BadRequest(ErrorCode.INVALID, "work orders come from buyer conversations")
        if (buyer and buyer != h.get("buyer")) or (store and store != h.get("store")):
            raise BadRequest(ErrorCode.INVALID, "buyer and store come from the conversation")
        buyer, store = h.get("buyer", ""), h.get("store", "")
    elif not buyer:
        raise BadRequest(ErrorCode.INVALID, "give conv, or buyer (and order)")
    if store and not await r.hexists(k.stores, store):
        raise NotFound(ErrorCode.NOT_FOUND, f"no store {store!r}")
    n = int(await r.incr(k.wo_seq))
    wo, now = f"wo{n}", node.now_ms()
    hm = handler[2:] if handler.startswith("m:") else ""
    rec = {"type": req.type, "content": req.content, "status": "open", "handler": handler, "handler_member": hm,
           "handler_group": "" if hm else handler[2:], "creator": m.id, "buyer": buyer, "store": store,
           "order": req.order or "", "conv": req.conv or "", "created": str(now), "updated": str(now)}
    entry = {"ts": now, "by": m.id, "action": "created", "to": handler, "status": "open"}
    pipe = r.pipeline(transaction=True)
    pipe.hset(k.wo(wo), mapping=cast(Any, rec))  # redis-py types a str-keyed dict too narrowly
    pipe.rpush(k.wo_hist(wo), json.dumps(entry, ensure_ascii=False))
    pipe.zadd(k.wo_all, {wo: now})
    pipe.zadd(k.wo_ids, {wo: n})
    pipe.zadd(k.wo_created(m.id), {wo: n})
    pipe.zadd(k.wo_box(handler), {wo: n})
    pipe.zadd(k.wo_todo(handler), {wo: n})
    pipe.zadd(k.wo_buyer(buyer), {wo: n})
    if hm:  # order-aware routing: the buyer's next conversation goes to this handler first (R12)
        pipe.hset(k.wo_buyer_open(buyer), wo, f"{hm}|{now}")
        pipe.hset(k.wo_handlers, buyer, hm)
    await pipe.execute()
    view = wo_view(wo, rec)
    await notify(node, k, await recipients(r, k, m.id, {handler}), view, "created", m.id, [entry])
    return view


# ---- update (R24) ------------------------------------------------------------------------------

@dataclass
class Plan:
    status: str
    handler: str
    fields: dict[str, str]
    changes: list[dict[str, Any]]
    action: str


def plan(m: Member, who: Who, h: dict[str, str], req: M.WoUpdate, target: str | None, now: int) -> Plan:
    """Decide one update on a snapshot. Raises Forbidden, or Conflict(illegal_transition) (R24)."""
    s0, h0 = h.get("status", ""), h.get("handler", "")
    p = Plan(s0, h0, {}, [], "")
    mine_ = f"m:{m.id}"

    def assign(to: str, taken: bool) -> None:
        p.handler = to
        p.fields["handler_member"] = to[2:] if to.startswith("m:") else ""
        p.fields["handler_group"] = (h0[2:] if taken else "") if to.startswith("m:") else to[2:]
        p.changes.append({"action": "taken" if taken else "handler", "from": h0, "to": to})
        p.action = "taken" if taken else "assigned"

    if target is not None and target != h0:
        if not who.participant:
            raise Forbidden(ErrorCode.FORBIDDEN, "only its creator, its handler or a manager reassigns a work order")
        if s0 not in LIVE:
            raise Conflict(ErrorCode.ILLEGAL_TRANSITION, f"a {s0} work order cannot be reassigned")
        assign(target, taken=who.in_group and target == mine_)
    if req.status is not None:
        st = req.status
        if st == "cancelled":
            if not m.can("wo_cancel"):
                raise Forbidden(ErrorCode.FORBIDDEN, "cancelling needs the wo_cancel permission (R24)")
        elif not (who.handler or who.in_group or who.manager or p.handler == mine_):
            raise Forbidden(ErrorCode.FORBIDDEN, "only its handler moves a work order on")
        if st not in LEGAL.get(s0, frozenset()):
            raise Conflict(ErrorCode.ILLEGAL_TRANSITION,
                           f"{s0} -> {st} is not allowed: open -> in_progress -> done, or cancelled while open or "
                           "in_progress")
        if who.in_group and p.handler == h0 and st != "cancelled":  # starting or finishing it takes it
            assign(mine_, taken=True)
        p.status = st
        p.fields[STAMP[st]] = str(now)
        p.changes.append({"action": "status", "from": s0, "to": st})
        p.action = st
    if req.comment is not None:  # whoever may see it may comment (e.g. the member serving its buyer)
        p.changes.append({"action": "comment", "text": req.comment})
        p.action = p.action or "comment"
    for ch in p.changes:
        ch.update(ts=now, by=m.id)
    return p


async def update(node: "Node", c: "Connection", req: M.WoUpdate) -> dict[str, Any]:
    if req.status is None and req.comment is None and req.handler_member is None and req.handler_group is None:
        raise BadRequest(ErrorCode.INVALID, "nothing to change: give status, handler_member, handler_group or comment")
    n = number(req.wo)
    m = await me(node, c)
    k = SellerKeys(c.seller)
    r = node.r
    target = None
    if req.handler_member is not None or req.handler_group is not None:
        target = await handler_key(r, k, req.handler_member, req.handler_group)
    for _ in range(RETRIES):
        h = cast(dict[str, str], await r.hgetall(k.wo(req.wo)))
        who = relation(m, h)
        if not h or not await visible(r, k, m, h, who):
            raise NotFound(ErrorCode.NOT_FOUND, "no such work order")
        now = node.now_ms()
        p = plan(m, who, h, req, target, now)
        if not p.changes:
            return wo_view(req.wo, h)  # e.g. reassigned to its current handler
        s0, h0, buyer = h.get("status", ""), h.get("handler", ""), h.get("buyer", "")
        res = await node.scripts.run("wo_update", [
            k.wo(req.wo), k.wo_hist(req.wo), k.wo_box(h0), k.wo_todo(h0), k.wo_box(p.handler), k.wo_todo(p.handler),
            k.wo_buyer_open(buyer), k.wo_handlers],
            [req.wo, s0, h0, p.status, p.handler, buyer, n, now, json.dumps(p.fields, ensure_ascii=False),
             *[json.dumps(ch, ensure_ascii=False) for ch in p.changes]])
        if res[0] == "ok":
            break
    else:
        raise Conflict(ErrorCode.CONFLICT, "the work order keeps changing: try again")
    view = wo_view(req.wo, {**h, **p.fields, "status": p.status, "handler": p.handler, "updated": str(now)})
    to = await recipients(r, k, h.get("creator", ""), {h0, p.handler})
    await notify(node, k, to, view, p.action, m.id, p.changes)
    return view


async def get(node: "Node", c: "Connection", wo: str) -> dict[str, Any]:
    number(wo)
    m = await me(node, c)
    k = SellerKeys(c.seller)
    pipe = node.r.pipeline(transaction=True)
    pipe.hgetall(k.wo(wo))
    pipe.lrange(k.wo_hist(wo), 0, -1)
    h, hist = await pipe.execute()
    if not h or not await visible(node.r, k, m, h, relation(m, h)):
        raise NotFound(ErrorCode.NOT_FOUND, "no such work order")
    return {**wo_view(wo, h), "history": [json.loads(x) for x in hist]}


# ---- lists and counts (R23) -----------------------------------------------------------------

async def counts(r: Redis, k: SellerKeys, m: Member) -> dict[str, int]:
    """Sizes of the three boxes, read in one MULTI: a consistent snapshot whatever changes concurrently."""
    hs = mine(m)
    pipe = r.pipeline(transaction=True)
    pipe.zcard(k.wo_created(m.id))
    for x in hs:
        pipe.zcard(k.wo_box(x))
    for x in hs:
        pipe.zcard(k.wo_todo(x))
    res = [int(v) for v in await pipe.execute()]
    return {"created": res[0], "assigned": sum(res[1:1 + len(hs)]), "pending": sum(res[1 + len(hs):])}


async def newest(r: Redis, keys: list[str], below: int | None, want: int) -> tuple[list[str], bool]:
    """The ``want`` highest-numbered ids below ``below`` across several lists, and whether more remain."""
    hi = f"({below}" if below is not None else "+inf"
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.zrevrangebyscore(key, hi, "-inf", start=0, num=want)
    got = await pipe.execute()
    ids = sorted({i for part in got for i in part}, key=number, reverse=True)
    return ids[:want], len(ids) > want or any(len(part) == want for part in got)


async def list_(node: "Node", c: "Connection", req: M.WoList) -> dict[str, Any]:
    m = await me(node, c)
    k = SellerKeys(c.seller)
    r = node.r
    hs = mine(m)
    if req.box == "all" and not m.can("dashboard") and not (
            req.buyer and await serving_buyer(r, k, m.id, req.buyer)):
        raise Forbidden(ErrorCode.FORBIDDEN, "box 'all' needs the dashboard permission (or a buyer you serve)")
    if req.buyer:
        sources = [k.wo_buyer(req.buyer)]
    else:
        sources = {"created": [k.wo_created(m.id)], "assigned": [k.wo_box(x) for x in hs],
                   "pending": [k.wo_todo(x) for x in hs], "all": [k.wo_ids]}[req.box]

    def keep(h: dict[str, str]) -> bool:
        box = {"created": h.get("creator") == m.id, "assigned": h.get("handler") in hs,
               "pending": h.get("handler") in hs and h.get("status") in LIVE, "all": True}[req.box]
        return bool(h) and box and all((
            req.status is None or h.get("status") == req.status,
            req.type is None or h.get("type") == req.type,
            req.store is None or h.get("store") == req.store,
            req.handler is None or req.handler in (h.get("handler_member"), h.get("handler_group"))))

    items: list[dict[str, Any]] = []
    below = number(req.before) if req.before else None
    nxt: str | None = None
    scanned = 0
    while True:
        ids, more = await newest(r, sources, below, BATCH)
        pipe = r.pipeline(transaction=False)
        for wo in ids:
            pipe.hgetall(k.wo(wo))
        for i, (wo, h) in enumerate(zip(ids, await pipe.execute())):
            scanned += 1
            if keep(h):
                items.append(wo_view(wo, h))
            if len(items) == req.limit or scanned >= SCAN_MAX:
                nxt = wo if (more or i < len(ids) - 1) else None
                return {"items": items, "next": nxt, "counts": await counts(r, k, m)}
        if not more or not ids:
            return {"items": items, "next": None, "counts": await counts(r, k, m)}
        below = number(ids[-1])


# ---- statistics and export (R25) --------------------------------------------------------------

async def in_range(r: Redis, seller: str, frm: int, to: int, chunk: int = 500
                   ) -> AsyncIterator[list[tuple[str, dict[str, str]]]]:
    """Work orders created in [frm, to), oldest first, in chunks."""
    k = SellerKeys(seller)
    ids = cast(list[str], await r.zrangebyscore(k.wo_all, frm, f"({to}"))
    for i in range(0, len(ids), chunk):
        pipe = r.pipeline(transaction=False)
        for wo in ids[i:i + chunk]:
            pipe.hgetall(k.wo(wo))
        yield [(wo, h) for wo, h in zip(ids[i:i + chunk], await pipe.execute()) if h]


async def stats(node: "Node", seller: str, frm: int, to: int) -> dict[str, Any]:
    """Counts by type, status and (current) handler of the work orders created in [frm, to)."""
    r = node.r
    k = SellerKeys(seller)
    names, groups = await r.hgetall(k.names), await r.hgetall(k.groups)
    by_type: dict[str, dict[str, int]] = {}
    by_status = dict.fromkeys(STATUSES, 0)
    by_handler: dict[str, dict[str, Any]] = {}
    total = 0
    async for chunk in in_range(r, seller, frm, to):
        for _, h in chunk:
            st, hd = h.get("status", "open"), h.get("handler", "")
            total += 1
            by_status[st] = by_status.get(st, 0) + 1
            t = by_type.setdefault(h.get("type", ""), {"total": 0, **dict.fromkeys(STATUSES, 0)})
            t["total"] += 1
            t[st] = t.get(st, 0) + 1
            row = by_handler.get(hd)
            if row is None:
                hm, hg = h.get("handler_member", ""), h.get("handler_group", "")
                row = by_handler[hd] = {"handler": hd, "member": hm, "group": hg if not hm else "",
                                        "name": names.get(hm, hm) if hm else groups.get(hg, hg), "total": 0,
                                        **dict.fromkeys(STATUSES, 0), "avg_done_ms": 0, "_done_ms": 0}
            row["total"] += 1
            row[st] = row.get(st, 0) + 1
            if st == "done":
                row["_done_ms"] += int(h.get("done_at") or 0) - int(h.get("created") or 0)
    for row in by_handler.values():
        row["avg_done_ms"] = row.pop("_done_ms") // row["done"] if row["done"] else 0
    return {"from": frm, "to": to, "total": total, "by_type": by_type, "by_status": by_status,
            "by_handler": sorted(by_handler.values(), key=lambda x: (-x["total"], x["handler"]))}


def when(v: str | None, tz: timezone, default: int, end: bool) -> int:
    """ms since the epoch, or an ISO date/datetime (naive: in ``tz``); a bare date as ``to`` covers that day."""
    if not v:
        return default
    try:
        if re.fullmatch(r"\d{1,15}", v):
            ms = int(v)
        else:
            d = datetime.fromisoformat(v)
            d = d if d.tzinfo is not None else d.replace(tzinfo=tz)
            ms = int((d + timedelta(days=1 if end and len(v) == 10 else 0)).timestamp() * 1000)
    except (ValueError, OverflowError):
        ms = -1
    if not 0 <= ms <= MAX_MS:
        raise BadRequest(ErrorCode.INVALID, f"bad time {v!r}: ms since the epoch or ISO 8601 (year 1970 to 9999)")
    return ms


def time_range(req: "Request", now: int) -> tuple[int, int, timezone]:
    q = req.query_params
    try:
        minutes = int(q.get("tz") or 0)
    except ValueError:
        minutes = 10**6
    if not -840 <= minutes <= 840:
        raise BadRequest(ErrorCode.INVALID, "tz: the UTC offset in minutes, e.g. 480 for China")
    tz = timezone(timedelta(minutes=minutes))
    frm, to = when(q.get("from"), tz, 0, False), when(q.get("to"), tz, now + 1, True)
    to = min(to, MAX_MS)
    if frm > to:
        raise BadRequest(ErrorCode.INVALID, "from is after to")
    return frm, to, tz


def fmt(ms: str | None, tz: timezone) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


def cell(v: str) -> str:
    """A spreadsheet must not run a cell as a formula (CSV injection): such text gets a leading '."""
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


async def csv_rows(node: "Node", seller: str, frm: int, to: int, tz: timezone) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM (so Excel reads Chinese), RFC 4180 quoting, streamed chunk by chunk."""
    r = node.r
    k = SellerKeys(seller)
    names, groups = await r.hgetall(k.names), await r.hgetall(k.groups)
    buf = io.StringIO()
    w = csv.writer(buf)
    buf.write("\ufeff")
    w.writerow(CSV_COLUMNS)
    async for chunk in in_range(r, seller, frm, to):
        for wo, h in chunk:
            hm, hg = h.get("handler_member", ""), h.get("handler_group", "")
            w.writerow([cell(x) for x in [wo, fmt(h.get("created"), tz), h.get("type", ""), h.get("status", ""), h.get("store", ""),
                        h.get("buyer", ""), h.get("order", ""), h.get("conv", ""), h.get("creator", ""),
                        names.get(h.get("creator", ""), ""), hm, hg,
                        names.get(hm, hm) if hm else groups.get(hg, hg), h.get("content", ""),
                        fmt(h.get("updated"), tz), fmt(h.get("started_at"), tz), fmt(h.get("done_at"), tz),
                        fmt(h.get("cancelled_at"), tz)]])
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


def http_routes() -> list[Any]:
    """GET …/work-orders/stats and GET …/work-orders.csv (``wo_export``), GET/PUT …/work-orders/types."""
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from .app import api, body, caller

    @api
    async def wo_stats(req: "Request") -> Any:
        node: "Node" = req.app.state.node
        m = await caller(req, "wo_export")
        frm, to, _ = time_range(req, node.now_ms())
        return await stats(node, m.seller, frm, to)

    @api
    async def wo_csv(req: "Request") -> Any:
        node: "Node" = req.app.state.node
        m = await caller(req, "wo_export")
        frm, to, tz = time_range(req, node.now_ms())
        name = f"work-orders-{m.seller}-{fmt(str(frm), tz)[:10]}-{fmt(str(to - 1), tz)[:10]}.csv"
        return StreamingResponse(csv_rows(node, m.seller, frm, to, tz), media_type="text/csv; charset=utf-8",
                                 headers={"content-disposition": f'attachment; filename="{name}"'})

    @api
    async def wo_types(req: "Request") -> Any:
        node: "Node" = req.app.state.node
        if req.method == "GET":
            m = await caller(req)
            return {"types": await get_types(node.r, m.seller)}
        m = await caller(req, "manage")
        return {"types": await set_types(node.r, m.seller, (await body(req)).get("types"))}

    return [Route("/api/admin/work-orders/stats", wo_stats),
            Route("/api/admin/work-orders.csv", wo_csv),
            Route("/api/admin/work-orders/types", wo_types, methods=["GET", "PUT"])]


# ---- WebSocket requests (members only: buyers get ``forbidden``) -------------------------------

@handles("wo.create")
async def _wo_create(node: "Node", c: "Connection", req: M.WoCreate) -> Any:
    return await create(node, c, req)


@handles("wo.update")
async def _wo_update(node: "Node", c: "Connection", req: M.WoUpdate) -> Any:
    return await update(node, c, req)


@handles("wo.get")
async def _wo_get(node: "Node", c: "Connection", req: M.WoGet) -> Any:
    return await get(node, c, req.wo)


@handles("wo.list")
async def _wo_list(node: "Node", c: "Connection", req: M.WoList) -> Any:
    return await list_(node, c, req)


@handles("wo.counts")
async def _wo_counts(node: "Node", c: "Connection", req: M.WoCounts) -> Any:
    return await counts(node.r, SellerKeys(c.seller), await me(node, c))


@handles("wo.types")
async def _wo_types(node: "Node", c: "Connection", req: M.WoTypes) -> Any:
    return {"types": await get_types(node.r, c.seller)}
