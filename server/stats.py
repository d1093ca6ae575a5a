"""Service statistics (R26), computed from what the server records (R16, R18, R22), and their admin API.

A report covers the buyer conversations *created* in ``[from, to)`` (the ``convs`` index) and puts
each figure on a member, its groups, the conversation's store and the seller's total:

- ``served``: conversations the member held at some point — a transferred conversation counts once
  for each member who had a share of it, a restart does not count again. Stores and the total count
  conversations that were served at all; ``conversations`` (stores, total) counts all of them.
- ``closed``: closed by the member (the last close, after any restart); buyers who left are not closed.
- ``first_resp_*``: first member reply minus first buyer message (R16, queue wait included), put on
  the member who replied. Never reset by a restart or a transfer.
- ``resp_*``: for every buyer turn (the first buyer message after a member reply), the time to the
  next member reply, on the member who replied, counted from when that member got the conversation
  if the buyer wrote before that (a member is not charged for time before its share).
- ``service_ms``: time the member held the conversation until it closed it or handed it over (R16
  "assigned -> closed", split by holder); ``service_avg_ms`` divides by the shares that ended.
- ``transfers_out`` / ``transfers_in``: transfers the member made / conversations it received by one
  (to a member, or through a group's queue, R18, R19).
- ``queued`` / ``queue_wait_*``: waits in a queue (R12.4) — the first one from creation, and any
  after a transfer to a group or a re-dispatch (R15); the average and maximum are over waits that
  ended in an assignment, put on the member who got the conversation; ``left_queue``: buyers who
  left while queued.
- ``wo_created`` / ``wo_done``: work orders (R22) created in the range, on their creator and store / those
  of them done, on their handler (its group when no member handles it) and store.

Groups: a member's figures count for each of its groups (``served`` as distinct conversations); a
wait counts for the group of its queue (``g:<group>``), else for the groups of the member who got
the conversation, else (left, still waiting) for the groups the store routes to.

Known limits of the recorded data (the conversation hash, its transfer list, the per-seller
assignment log, the message stream): close, restart and a release into a queue by a re-dispatch are
not in the assignment log. The total service time is exact (``service_ms``); its split is exact
unless a conversation was restarted and then passed on (the gap goes to the last holder), or was
re-dispatched into a queue more than once (only the latest release time is kept, in ``queued_at``).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kefu.protocol.errors import BadRequest, ErrorCode, NotFound

from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from .node import Node

DAY_MS = 86_400_000
MAX_SPAN_MS = 366 * DAY_MS
MAX_CONVS = 200_000
SKEW_MS = 60_000   # assignment-log entries are read back to a minute before ``from`` (clock skew between nodes)
CHUNK = 500
FIELDS = ("conversations", "served", "closed", "first_resp_count", "first_resp_avg_ms", "resp_count",
          "resp_avg_ms", "service_ms", "service_avg_ms", "transfers_in", "transfers_out", "queued",
          "queue_wait_avg_ms", "queue_wait_max_ms", "left_queue", "wo_created", "wo_done")
BY = ("member", "group", "store")


# ---- one conversation, reconstructed ------------------------------------------------------------

@dataclass
class Holding:
    member: str
    start: int
    via: str                 # "dispatch" | "transfer" | "redispatch"
    end: int | None = None   # None: still held


@dataclass
class Wait:
    queue: str
    start: int
    queued: bool = True      # False: the first dispatch served it at once (not a wait)
    end: int | None = None
    outcome: str = "waiting"  # "assigned" | "left" | "waiting"
    member: str = ""


@dataclass
class Assign:
    ts: int
    member: str
    reason: str
    frm: str = ""


@dataclass
class Conv:
    conv: str
    store: str
    state: str
    holdings: list[Holding] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    service: dict[str, int] = field(default_factory=dict)    # member -> ms of ended holdings
    holder: str = ""                                         # who holds it now ("" unless active)
    first_resp: tuple[str, int] | None = None
    responses: list[tuple[str, int]] = field(default_factory=list)
    transfers_out: list[str] = field(default_factory=list)
    closed_by: str = ""
    left: bool = False


def _int(h: dict[str, str], f: str) -> int:
    v = h.get(f)
    return int(float(v)) if v else 0


def reconstruct(conv: str, h: dict[str, str], assigns: list[Assign], xfers: list[dict[str, Any]],
                log: list[tuple[str, dict[str, str]]]) -> Conv:
    """Holdings, waits and responses of one conversation from its hash, assignment-log entries
    (in log order), transfer records and messages."""
    state, store = h.get("state", ""), h.get("store", "")
    c = Conv(conv, store, state, holder=h.get("member", "") if state == "active" else "")
    created, queued_at, first = _int(h, "created"), _int(h, "queued_at"), _int(h, "first_assigned")
    if not assigns and first:  # the assignment log was trimmed: rebuild what the transfer list tells
        holders = [x.get("from", "") for x in xfers[:1]] or [h.get("member", "")]
        assigns = [Assign(first, holders[0], "dispatch")]
        assigns += [Assign(int(x["ts"]), x["to"], "transfer", x.get("from", "")) for x in xfers if x.get("to")]
    initially_queued = bool(queued_at) and (not first or queued_at <= first or first > created)
    wait: Wait | None = Wait(f"s:{store}", created, queued=initially_queued)
    cur: Holding | None = None
    via = "dispatch"
    # releases into a queue, which the assignment log does not show: transfers to a group that
    # nobody could take at once, and the latest re-dispatch that queued (its time is ``queued_at``)
    releases = [(int(x["ts"]), x.get("from", ""), f"g:{x.get('group', '')}", "transfer")
                for x in xfers if x.get("kind") == "group" and not x.get("to")]
    if queued_at and first and queued_at > first and all(r[0] != queued_at for r in releases):
        releases.append((queued_at, "", h.get("queue", ""), "redispatch"))
    releases.sort(key=lambda r: r[0])

    def end_holding(ts: int) -> None:
        nonlocal cur
        if cur is not None:
            cur.end = max(ts, cur.start)
            cur = None

    def release_until(ts: int | None) -> None:
        nonlocal wait, via
        while releases and (ts is None or releases[0][0] <= ts):
            t, frm, q, how = releases[0]
            if cur is not None and (not frm or frm == cur.member) and t >= cur.start:
                end_holding(t)
                wait, via = Wait(q, t), how
            elif ts is not None and t == ts:
                return  # same millisecond as the next assignment: it may release that holder
            releases.pop(0)

    for a in sorted(assigns, key=lambda a: a.ts):
        release_until(a.ts)
        how = via
        if cur is not None:  # released by this very assignment: a transfer, or a re-dispatch in one step
            how = "redispatch" if a.reason.startswith("redispatch") else "transfer" if (
                a.frm or a.reason.startswith("transfer")) else "redispatch"
            end_holding(a.ts)
        if wait is not None:
            wait.end, wait.outcome, wait.member = a.ts, "assigned", a.member
            c.waits.append(wait)
            wait = None
        cur = Holding(a.member, a.ts, how)
        c.holdings.append(cur)
        via = "dispatch"
    release_until(None)
    closed_at = _int(h, "closed_at")
    if h.get("abandoned") == "1":
        c.left = True
        if wait is not None:
            wait.end, wait.outcome = closed_at or wait.start, "left"
    elif state == "closed":
        c.closed_by = h.get("closed_by", "")
        if closed_at:
            end_holding(closed_at)
    if wait is not None:
        c.waits.append(wait)
    # service per member: ended holdings; the exact total (restarts included) corrects the last holder
    for x in c.holdings:
        if x.end is not None:
            c.service[x.member] = c.service.get(x.member, 0) + x.end - x.start
    if c.holdings:
        last = h.get("member") or c.holdings[-1].member
        extra = _int(h, "service_ms") - sum(c.service.values())
        if extra and (last in c.service or extra > 0):
            c.service[last] = max(0, c.service.get(last, 0) + extra)
    c.transfers_out = [x.get("from", "") for x in xfers]
    if h.get("first_resp") and h.get("first_buyer"):
        c.first_resp = (h.get("first_resp_by", ""), _int(h, "first_resp") - _int(h, "first_buyer"))
    pending: int | None = None
    for _, f in log:
        kind, ts = f.get("k"), int(f.get("ts") or 0)
        if kind == "buyer":
            pending = ts if pending is None else pending
        elif kind == "member" and pending is not None:
            m = f.get("f", "")
            starts = [x.start for x in c.holdings if x.member == m and x.start <= ts]
            c.responses.append((m, ts - max([pending, *starts[-1:]])))
            pending = None
    return c


# ---- aggregation --------------------------------------------------------------------------------

@dataclass
class Acc:
    convs: set[str] = field(default_factory=set)
    served: set[str] = field(default_factory=set)
    ended: int = 0
    closed: int = 0
    fr: list[int] = field(default_factory=list)
    resp: list[int] = field(default_factory=list)
    service_ms: int = 0
    xin: int = 0
    xout: int = 0
    queued: int = 0
    waits: list[int] = field(default_factory=list)
    left: int = 0
    wo_created: int = 0
    wo_done: int = 0

    def row(self) -> dict[str, Any]:
        def avg(xs: list[int]) -> int | None:
            return round(sum(xs) / len(xs)) if xs else None
        return {"conversations": len(self.convs), "served": len(self.served), "closed": self.closed,
                "first_resp_count": len(self.fr), "first_resp_avg_ms": avg(self.fr),
                "resp_count": len(self.resp), "resp_avg_ms": avg(self.resp), "service_ms": self.service_ms,
                "service_avg_ms": round(self.service_ms / self.ended) if self.ended else None,
                "transfers_in": self.xin, "transfers_out": self.xout, "queued": self.queued,
                "queue_wait_avg_ms": avg(self.waits), "queue_wait_max_ms": max(self.waits, default=None),
                "left_queue": self.left, "wo_created": self.wo_created, "wo_done": self.wo_done}


class Report:
    """Accumulates conversations into member, group and store rows and the seller's total."""

    def __init__(self, member_groups: dict[str, list[str]], store_groups: dict[str, list[str]]) -> None:
        self.mg, self.sg = member_groups, store_groups
        self.rows: dict[str, dict[str, Acc]] = {b: {} for b in BY}
        self.total = Acc()

    def acc(self, by: str, key: str) -> Acc:
        a = self.rows[by].get(key)
        if a is None:
            a = self.rows[by][key] = Acc()
        return a

    def member(self, m: str) -> list[Acc]:
        """The accumulators a member's figure goes to: its own and its groups'."""
        return [self.acc("member", m)] + [self.acc("group", g) for g in self.mg.get(m, [])] if m else []

    def add(self, c: Conv) -> None:
        st, tot = self.acc("store", c.store), self.total
        whole = [st, tot]
        for a in whole:
            a.convs.add(c.conv)
        for x in c.holdings:
            for a in self.member(x.member) + whole:
                a.served.add(c.conv)
                a.convs.add(c.conv)
            if x.via == "transfer":
                for a in self.member(x.member):
                    a.xin += 1
        for m, ms in c.service.items():
            for a in self.member(m):
                a.service_ms += ms
                a.ended += m != c.holder
        for a in whole:
            a.service_ms += sum(c.service.values())
            a.ended += bool(c.holdings) and not c.holder
        if c.closed_by:
            for a in self.member(c.closed_by) + whole:
                a.closed += 1
        if c.first_resp:
            for a in self.member(c.first_resp[0]) + whole:
                a.fr.append(c.first_resp[1])
        for m, ms in c.responses:
            for a in self.member(m) + whole:
                a.resp.append(ms)
        for m in c.transfers_out:
            for a in self.member(m):
                a.xout += 1
        for a in whole:
            a.xout += len(c.transfers_out)
            a.xin += len(c.transfers_out)
        for w in c.waits:
            if not w.queued:
                continue
            accs = [self.acc("member", w.member)] if w.member else []
            groups = ([w.queue[2:]] if w.queue.startswith("g:") else
                      self.mg.get(w.member, []) if w.member else self.sg.get(c.store, []))
            accs += [self.acc("group", g) for g in groups] + whole
            for a in accs:
                a.queued += 1
                if w.outcome == "assigned" and w.end is not None:
                    a.waits.append(w.end - w.start)
                a.left += w.outcome == "left"

    def work_order(self, h: dict[str, str]) -> None:
        whole = ([self.acc("store", h["store"])] if h.get("store") else []) + [self.total]
        for a in self.member(h.get("creator", "")) + whole:
            a.wo_created += 1
        if h.get("status") == "done":
            hm, hg = h.get("handler_member", ""), h.get("handler_group", "")
            for a in (self.member(hm) if hm else [self.acc("group", hg)] if hg else []) + whole:
                a.wo_done += 1

    def table(self, by: str, names: dict[str, str], keys: Iterable[str]) -> list[dict[str, Any]]:
        rows = self.rows[by]
        return [{"key": k, "name": names.get(k, ""), **(rows[k] if k in rows else Acc()).row()}
                for k in sorted(set(keys) | set(rows))]


# ---- reading Redis ------------------------------------------------------------------------------

async def _assignments(node: "Node", seller: str, convs: set[str], since: int) -> dict[str, list[Assign]]:
    """The assignment-log entries of these conversations, newest pages first, back to ``since``."""
    out: dict[str, list[Assign]] = {}
    key = SellerKeys(seller).assignlog
    hi = "+"
    while True:
        page = cast(list[tuple[str, dict[str, str]]], await node.r.xrevrange(key, hi, "-", count=1000))
        for sid, f in page:
            if f.get("conv") in convs and not f.get("reason", "").startswith("release:"):
                out.setdefault(f["conv"], []).append(
                    Assign(int(f.get("ts") or 0), f.get("member", ""), f.get("reason", ""), f.get("from", "")))
        if len(page) < 1000 or int(page[-1][1].get("ts") or 0) < since - SKEW_MS:
            break
        hi = "(" + page[-1][0]
    for v in out.values():
        v.reverse()
    return out


async def report(node: "Node", seller: str, frm: int, to: int) -> Report:
    k = SellerKeys(seller)
    r = node.r
    ids = cast(list[str], await r.zrangebyscore(k.convs, frm, f"({to}", start=0, num=MAX_CONVS + 1))
    if len(ids) > MAX_CONVS:
        raise BadRequest(ErrorCode.TOO_LARGE, f"more than {MAX_CONVS} conversations: choose a shorter range")
    groups = await node.accounts.groups(seller)
    stores = await node.accounts.stores(seller)
    mg: dict[str, list[str]] = {}
    for g, v in groups.items():
        for m in v["members"]:
            mg.setdefault(m, []).append(g)
    rep = Report(mg, {s: v["groups"] for s, v in stores.items()})
    assigns = await _assignments(node, seller, set(ids), frm) if ids else {}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        pipe = r.pipeline(transaction=False)
        for conv in chunk:
            pipe.hgetall(k.conv(conv))
            pipe.lrange(k.transfers(conv), 0, -1)
            pipe.xrange(k.log(conv))
        res = await pipe.execute()
        for j, conv in enumerate(chunk):
            h, xf, log = res[3 * j: 3 * j + 3]
            if h and h.get("kind", "buyer") == "buyer":
                rep.add(reconstruct(conv, h, assigns.get(conv, []), [json.loads(x) for x in xf], log))
    await _work_orders(node, seller, frm, to, rep)
    return rep


async def _work_orders(node: "Node", seller: str, frm: int, to: int, rep: Report) -> None:
    """R22: the work orders created in the range, on their creator; those of them now ``done``, on
    their handler (a group member who finishes a group's work order becomes its handler)."""
    from .work_orders import in_range
    async for chunk in in_range(node.r, seller, frm, to):
        for _, h in chunk:
            rep.work_order(h)


# ---- live figures per group (dashboard) ---------------------------------------------------------

async def live_groups(node: "Node", seller: str, members: list[dict[str, Any]],
                      queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group: members per status, load and capacity, and the queues it serves (its own ``g:``
    queue and those of the stores routed to it) with their length and oldest wait (R26 live)."""
    groups = await node.accounts.groups(seller)
    stores = await node.accounts.stores(seller)
    by_member = {m["member"]: m for m in members}
    byq = {q["queue"]: q for q in queues}
    now = node.now_ms()
    out = []
    for g, v in groups.items():
        qs = [byq[q] for q in [f"g:{g}"] + [f"s:{s}" for s, sv in stores.items() if g in sv["groups"]] if q in byq]
        ms = [by_member[m] for m in v["members"] if m in by_member]
        oldest = min((q["oldest"] for q in qs if q["oldest"]), default=0)
        row: dict[str, Any] = {"group": g, "name": v["name"], "queued": sum(q["length"] for q in qs),
                               "oldest": oldest, "wait_ms": now - oldest if oldest else 0,
                               "queues": [q["queue"] for q in qs], "load": sum(m["load"] for m in ms),
                               "cap": sum(m["cap"] for m in ms if m["status"] == "online")}
        for st in ("online", "idle", "offline"):
            row[st] = sum(1 for m in ms if m["status"] == st)
        out.append(row)
    return out


# ---- HTTP ---------------------------------------------------------------------------------------

def _range(req: Request, now: int) -> tuple[int, int]:
    """``from``/``to`` as the work-order reports take them (ms, or ISO 8601 with naive times in ``tz``;
    a bare ``to`` date covers that day); without ``from``, the current day in ``tz``."""
    from .work_orders import time_range
    frm, to, tz = time_range(req, now)
    if "from" not in req.query_params:
        off = int(tz.utcoffset(None).total_seconds() * 1000)
        frm = (now + off) // DAY_MS * DAY_MS - off
        to = to if "to" in req.query_params else frm + DAY_MS
    if not frm < to or to - frm > MAX_SPAN_MS:
        raise BadRequest(ErrorCode.INVALID, "need from < to, at most 366 days apart")
    return frm, to


async def stats_data(req: Request) -> dict[str, Any]:
    from .app import caller
    node: Node = req.app.state.node
    m = await caller(req, "dashboard")
    by = req.query_params.get("by", "member")
    if by not in BY:
        raise BadRequest(ErrorCode.INVALID, "by is member, group or store")
    frm, to = _range(req, node.now_ms())
    rep = await report(node, m.seller, frm, to)
    k = SellerKeys(m.seller)
    names = cast(dict[str, str], await node.r.hgetall({"member": k.names, "group": k.groups, "store": k.stores}[by]))
    return {"seller": m.seller, "from": frm, "to": to, "by": by, "rows": rep.table(by, names, names),
            "total": rep.total.row(), "generated": node.now_ms()}


async def stats_json(req: Request) -> Any:
    return await stats_data(req)


async def stats_csv(req: Request) -> Any:
    data = await stats_data(req)
    buf = io.StringIO("\ufeff")  # a BOM, as in the work-order export: Excel then reads Chinese names
    buf.seek(1)
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([data["by"], "name", *FIELDS])
    for row in [*data["rows"], {"key": "*", "name": "total", **data["total"]}]:
        w.writerow([row["key"], row["name"], *("" if row[f] is None else row[f] for f in FIELDS)])
    fn = f"kefu-stats-{data['seller']}-{data['by']}-{data['from']}-{data['to']}.csv"
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{fn}"'})


async def test_clock(req: Request) -> Any:
    """Tests only (``KEFU_TEST_CLOCK=1``): move or stop this node's clock. Body: ``{"offset_ms": N}``
    (a fixed offset from real time), ``{"advance_ms": N}`` (forward; a stopped clock stays stopped),
    ``{"set_ms": N}`` (stop the clock at N) or ``{"freeze": false}`` (run again from where it is)."""
    from .app import body
    node: Node = req.app.state.node
    if not node.settings.test_clock:
        raise NotFound(ErrorCode.NOT_FOUND, "no such route")
    b = await body(req)
    try:
        if "offset_ms" in b:
            node.frozen_ms, node.clock_offset_ms = None, int(b["offset_ms"])
        if "set_ms" in b:
            node.frozen_ms = int(b["set_ms"])
        if "advance_ms" in b:
            if node.frozen_ms is not None:
                node.frozen_ms += int(b["advance_ms"])
            else:
                node.clock_offset_ms += int(b["advance_ms"])
        if b.get("freeze") is False and node.frozen_ms is not None:
            now, node.frozen_ms = node.frozen_ms, None
            node.clock_offset_ms += now - node.now_ms()
    except (TypeError, ValueError):
        raise BadRequest(ErrorCode.INVALID, "offset_ms, advance_ms and set_ms are integers") from None
    return {"now": node.now_ms(), "offset_ms": node.clock_offset_ms, "frozen": node.frozen_ms is not None}


def http_routes() -> list[Any]:
    from .app import api
    return [Route("/api/admin/stats", api(stats_json)), Route("/api/admin/stats.csv", api(stats_csv)),
            Route("/api/test/clock", api(test_clock), methods=["POST"])]
