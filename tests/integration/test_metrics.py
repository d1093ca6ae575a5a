"""Service metrics (R26): a scripted day on a stopped, hand-moved clock, every figure checked against
hand-computed values; the live figures; /metrics in the Prometheus text format."""
from __future__ import annotations

import csv
import datetime as dt
import io
import urllib.request
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kefu.clients.client import Client, ahttp
from kefu.protocol.errors import KefuError
from kefu_testing import PASSWORD, RedisProc, ServerProc, make_shop

DAY = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
T0 = int(DAY.timestamp() * 1000) + 9 * 3600 * 1000   # 09:00 that day
S = 1000


@pytest.fixture(scope="module")
def clock_redis() -> Iterator[RedisProc]:
    """A Redis of its own: a node whose clock is moved must not judge other nodes' heartbeats."""
    r = RedisProc().start()
    yield r
    r.stop()


class Clock:
    def __init__(self, node: ServerProc) -> None:
        self.node = node
        self.t = 0

    async def set(self, ms: int) -> None:
        self.t = ms
        out = await ahttp("POST", self.node.base + "/api/test/clock", {"set_ms": ms})
        assert out["now"] == ms and out["frozen"]

    async def at(self, seconds: float) -> None:
        """Move the stopped clock to T0 + seconds."""
        await self.set(T0 + int(seconds * S))


async def stats(base: str, token: str, query: str) -> dict[str, Any]:
    return await ahttp("GET", f"{base}/api/admin/stats?{query}", token=token)  # type: ignore[no-any-return]


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in data["rows"]}


def only(row: dict[str, Any], **want: Any) -> None:
    """Every figure named in ``want`` matches; the ones not named are zero/None."""
    zero = {k: (None if k.endswith("_ms") and k != "service_ms" else 0) for k in row if k not in ("key", "name")}
    assert {k: row[k] for k in zero} == {**zero, **want}, row["key"]


async def test_scripted_day_every_figure_matches_hand_computed_values(clock_redis):  # R26, R16, R18, R19
    node = ServerProc(clock_redis.url, test_clock=1).start()
    try:
        await _scripted_day(node, clock_redis)
    finally:
        node.stop()


async def _scripted_day(node: ServerProc, clock_redis: RedisProc) -> None:
    shop = await make_shop(clock_redis.url, node.base, stores={"shop": ["pre"], "outlet": ["post"]},
                           members={"alice": {"groups": ["pre"], "capacity": 2}, "bob": {"groups": ["pre"]},
                                    "carol": {"groups": ["post"]}})
    clock = Clock(node)
    await clock.at(0)
    alice = await Client.login(node.base, shop.login("alice"), PASSWORD)
    # A: served at once by alice, closed, restarted (first response kept), closed again
    b1 = await Client.buyer(node.base, shop.seller, "shop")
    a = (await b1.send("hi"))["conv"]
    assert (await alice.next_event("conv.assigned"))["conv"] == a
    await clock.at(10); await alice.send("hello", conv=a)
    await clock.at(20); await b1.send("price?")
    await clock.at(25); await alice.send("9.9", conv=a)
    await clock.at(30); await alice.request("conv.close", conv=a)
    await clock.at(40); await alice.request("conv.restart", conv=a)
    await clock.at(45); await b1.send("one more thing")
    await clock.at(47); await alice.send("sure", conv=a)
    wo1 = (await alice.request("wo.create", type="refund", content="refund 9.9", conv=a, handler_member="bob"))["wo"]
    await clock.at(50); await alice.request("conv.close", conv=a)
    # B: alice answers, then transfers it to bob, who answers and closes
    await clock.at(60)
    b2 = await Client.buyer(node.base, shop.seller, "shop")
    b = (await b2.send("hi"))["conv"]
    assert (await alice.next_event("conv.assigned", pred=lambda d: d["conv"] == b))
    await clock.at(70); await alice.send("hello", conv=b)
    await clock.at(80); bob = await Client.login(node.base, shop.login("bob"), PASSWORD)
    await clock.at(85); await b2.send("refund?")
    await clock.at(90); await alice.request("conv.transfer", conv=b, to_member="bob", reason="after-sales")
    await bob.next_event("conv.assigned", pred=lambda d: d["conv"] == b)
    await clock.at(100); await bob.send("on it", conv=b)
    await clock.at(120); await bob.request("conv.close", conv=b)
    await bob.request("wo.update", wo=wo1, status="in_progress")
    await bob.request("wo.update", wo=wo1, status="done")
    # C: nobody serves the outlet yet; the buyer waits 60 s and leaves
    await clock.at(130)
    b3 = await Client.buyer(node.base, shop.seller, "outlet")
    r3 = await b3.send("anyone?")
    assert r3["dispatch"]["state"] == "queued"
    await clock.at(190); await b3.request("conv.leave", conv=r3["conv"])
    # D: waits 60 s until carol comes; carol transfers it to group pre, where it waits 30 s for bob
    await clock.at(200)
    b4 = await Client.buyer(node.base, shop.seller, "outlet")
    d = (await b4.send("hello?"))["conv"]
    await clock.at(260)
    carol = await Client.login(node.base, shop.login("carol"), PASSWORD)
    await carol.next_event("conv.assigned", pred=lambda e: e["conv"] == d)
    await clock.at(270); await carol.send("hi, outlet here", conv=d)
    await carol.request("wo.create", type="exchange", content="size M", conv=d, handler_group="pre")
    await clock.at(290)
    await alice.request("status.set", status="idle"); await bob.request("status.set", status="idle")
    await clock.at(300)
    assert (await carol.request("conv.transfer", conv=d, to_group="pre"))["state"] == "queued"
    await clock.at(330); await bob.request("status.set", status="online")
    await bob.next_event("conv.assigned", pred=lambda e: e["conv"] == d)
    await clock.at(340); await b4.send("still there?")
    await clock.at(345); await bob.send("yes", conv=d)
    await clock.at(360); await bob.request("conv.close", conv=d)

    main = (await ahttp("POST", node.base + "/api/login", {"login": shop.seller, "password": PASSWORD}))["token"]
    day = "from=2024-03-01&to=2024-03-01"
    m = rows(await stats(node.base, main, day + "&by=member"))
    assert set(m) == {shop.seller, "alice", "bob", "carol"}
    # alice: A (40 s after the restart gap) and B (30 s); first responses 10 s each; turns 10, 5, 2, 10 s
    only(m["alice"], conversations=2, served=2, closed=1, first_resp_count=2, first_resp_avg_ms=10 * S,
         resp_count=4, resp_avg_ms=6750, service_ms=70 * S, service_avg_ms=35 * S, transfers_out=1, wo_created=1)
    # bob: B from alice (his turn counts from 90 s, when he got it), D through group pre's queue (30 s wait)
    only(m["bob"], conversations=2, served=2, closed=2, resp_count=2, resp_avg_ms=7500, service_ms=60 * S,
         service_avg_ms=30 * S, transfers_in=2, queued=1, queue_wait_avg_ms=30 * S, queue_wait_max_ms=30 * S,
         wo_done=1)
    # carol: D after 60 s in the outlet queue; first response 70 s after the buyer's first message
    only(m["carol"], conversations=1, served=1, first_resp_count=1, first_resp_avg_ms=70 * S, resp_count=1,
         resp_avg_ms=10 * S, service_ms=40 * S, service_avg_ms=40 * S, transfers_out=1, queued=1,
         queue_wait_avg_ms=60 * S, queue_wait_max_ms=60 * S, wo_created=1)
    only(m[shop.seller])
    assert m["alice"]["name"] == "alice"

    g = rows(await stats(node.base, main, day + "&by=group"))
    only(g["pre"], conversations=3, served=3, closed=3, first_resp_count=2, first_resp_avg_ms=10 * S,
         resp_count=6, resp_avg_ms=7 * S, service_ms=130 * S, service_avg_ms=32500, transfers_in=2,
         transfers_out=1, queued=1, queue_wait_avg_ms=30 * S, queue_wait_max_ms=30 * S, wo_created=1, wo_done=1)
    only(g["post"], conversations=1, served=1, first_resp_count=1, first_resp_avg_ms=70 * S, resp_count=1,
         resp_avg_ms=10 * S, service_ms=40 * S, service_avg_ms=40 * S, transfers_out=1, queued=2,
         queue_wait_avg_ms=60 * S, queue_wait_max_ms=60 * S, left_queue=1, wo_created=1)

    st_data = await stats(node.base, main, day + "&by=store")
    st = rows(st_data)
    only(st["shop"], conversations=2, served=2, closed=2, first_resp_count=2, first_resp_avg_ms=10 * S,
         resp_count=5, resp_avg_ms=7400, service_ms=100 * S, service_avg_ms=50 * S, transfers_in=1,
         transfers_out=1, wo_created=1, wo_done=1)
    only(st["outlet"], conversations=2, served=1, closed=1, first_resp_count=1, first_resp_avg_ms=70 * S,
         resp_count=2, resp_avg_ms=7500, service_ms=70 * S, service_avg_ms=70 * S, transfers_in=1,
         transfers_out=1, queued=3, queue_wait_avg_ms=45 * S, queue_wait_max_ms=60 * S, left_queue=1,
         wo_created=1)
    total = st_data["total"]
    only({"key": "*", **total}, conversations=4, served=3, closed=3, first_resp_count=3,
         first_resp_avg_ms=30 * S, resp_count=7, resp_avg_ms=round(52 * S / 7), service_ms=170 * S,
         service_avg_ms=round(170 * S / 3), transfers_in=2, transfers_out=2, queued=3,
         queue_wait_avg_ms=45 * S, queue_wait_max_ms=60 * S, left_queue=1, wo_created=2, wo_done=1)
    assert st_data["from"] == int(DAY.timestamp() * 1000) and st_data["to"] == st_data["from"] + 86_400_000

    # the same day by explicit range; a range before it is empty; the next day has only its own conversation
    same = await stats(node.base, main, f"from={T0}&to={T0 + 3600 * S}&by=store")
    assert same["total"] == total and same["from"] == T0
    china = await stats(node.base, main, "from=2024-03-01T17:00:00&to=2024-03-01T18:00:00&tz=480")
    assert china["from"] == T0 and china["total"] == total
    assert (await stats(node.base, main, f"from={T0 - 3600 * S}&to={T0}"))["total"]["conversations"] == 0
    await clock.set(T0 + 86_400_000)
    b5 = await Client.buyer(node.base, shop.seller, "shop")
    await b5.send("next day")
    await bob.next_event("conv.assigned")
    assert (await stats(node.base, main, "from=2024-03-02&to=2024-03-02"))["total"]["served"] == 1
    assert (await stats(node.base, main, day))["total"] == total
    # the default range is "today" by the node's clock
    assert (await stats(node.base, main, "by=store"))["total"]["conversations"] == 1

    # CSV: the same rows and the total, as text
    raw = await _get_text(f"{node.base}/api/admin/stats.csv?{day}&by=group", main)
    assert raw.startswith("\ufeffgroup,name,conversations,served,")
    table = list(csv.DictReader(io.StringIO(raw[1:])))
    by_key = {r["group"]: r for r in table}
    assert by_key["pre"]["service_ms"] == str(130 * S) and by_key["post"]["left_queue"] == "1"
    assert by_key["*"]["name"] == "total" and by_key["*"]["conversations"] == "4"
    assert by_key["post"]["transfers_in"] == "0" and by_key["post"]["closed"] == "0"

    for c in (alice, bob, carol, b1, b2, b3, b4, b5):
        await c.close()


async def _get_text(url: str, token: str) -> str:
    import asyncio

    def get() -> str:
        req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["content-type"].startswith("text/csv")
            return r.read().decode()
    return await asyncio.to_thread(get)


async def test_stats_need_the_dashboard_permission(make):  # R2
    shop = await make(members={"alice": {"groups": ["pre"]}, "vera": {"role": "viewer"}})
    agent = (await ahttp("POST", shop.base + "/api/login", {"login": shop.login("alice"), "password": PASSWORD}))
    viewer = (await ahttp("POST", shop.base + "/api/login", {"login": shop.login("vera"), "password": PASSWORD}))
    for path in ("/api/admin/stats", "/api/admin/stats.csv"):
        with pytest.raises(KefuError) as e:
            await ahttp("GET", shop.base + path, token=agent["token"])
        assert e.value.code.value == "forbidden"
    out = await stats(shop.base, viewer["token"], "by=group")
    assert [r["key"] for r in out["rows"]] == ["pre"]
    with pytest.raises(KefuError) as e:
        await stats(shop.base, viewer["token"], "by=buyer")
    assert e.value.code.value == "invalid"
    with pytest.raises(KefuError) as e:
        await stats(shop.base, viewer["token"], "from=10&to=5")
    assert e.value.code.value == "invalid"


async def test_test_clock_is_off_unless_enabled(shop):
    with pytest.raises(KefuError) as e:
        await ahttp("POST", shop.base + "/api/test/clock", {"advance_ms": 1000})
    assert e.value.code.value == "not_found"


async def test_live_view_has_queues_statuses_and_load_per_group(make):  # R26 live
    shop = await make(stores={"shop": ["pre"], "outlet": ["post"]},
                      members={"alice": {"groups": ["pre"], "capacity": 2}, "carol": {"groups": ["post"]}})
    alice = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    b1 = await Client.buyer(shop.base, shop.seller, "shop")
    await b1.send("hi")
    await alice.next_event("conv.assigned")
    b2 = await Client.buyer(shop.base, shop.seller, "outlet")
    assert (await b2.send("hi"))["dispatch"]["state"] == "queued"
    main = await Client.login(shop.base, shop.seller, PASSWORD)
    snap = await main.request("dash.snapshot")
    groups = {g["group"]: g for g in snap["groups"]}
    assert groups["pre"]["online"] == 1 and groups["pre"]["load"] == 1 and groups["pre"]["cap"] == 2
    assert groups["pre"]["queued"] == 0 and groups["pre"]["queues"] == ["g:pre", "s:shop"]
    assert groups["post"]["offline"] == 1 and groups["post"]["queued"] == 1
    assert groups["post"]["oldest"] > 0 and groups["post"]["wait_ms"] >= 0
    live = await ahttp("GET", shop.base + "/api/admin/live", token=main.token)
    assert {g["group"] for g in live["groups"]} == {"pre", "post"}
    for c in (alice, b1, b2, main):
        await c.close()


def scrape(base: str, token: str = "") -> str:
    req = urllib.request.Request(base + "/metrics", headers={"authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/plain")
        return r.read().decode()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], family: str, sample: str | None = None, default: float | None = None,
          **labels: str) -> float:
    """The sum of a family's samples with these labels (``sample`` picks e.g. a histogram's ``_count``)."""
    got = [s.value for s in (fams[family].samples if family in fams else [])
           if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items())]
    if not got and default is not None:
        return default
    assert got, (family, labels)
    return float(sum(got))


async def test_metrics_endpoint_speaks_prometheus_text(make, server):
    import asyncio
    shop = await make(stores={"shop": ["pre"], "outlet": ["post"]},
                      members={"alice": {"groups": ["pre"]}, "carol": {"groups": ["post"]}})
    before = families(await asyncio.to_thread(scrape, server.base))
    alice = await Client.login(shop.base, shop.login("alice"), PASSWORD)
    b1 = await Client.buyer(shop.base, shop.seller, "shop")
    conv = (await b1.send("hi"))["conv"]
    await alice.next_event("conv.assigned")
    await alice.send("hello", conv=conv)
    b2 = await Client.buyer(shop.base, shop.seller, "outlet")
    await b2.send("queued")
    with pytest.raises(KefuError):
        await alice.request("conv.close", conv="nope")
    text = await asyncio.to_thread(scrape, server.base)
    fams = families(text)
    node = alice.auth["node"]
    assert value(fams, "kefu_connections", node=node) >= 3
    assert value(fams, "kefu_sessions", kind="buyer", node=node) >= 2
    assert value(fams, "kefu_messages_in") >= value(before, "kefu_messages_in") + 4
    assert value(fams, "kefu_messages_out") > value(before, "kefu_messages_out")
    decided = value(fams, "kefu_dispatch_decisions", reason="least_loaded", via="new")
    assert decided >= 1 and value(fams, "kefu_dispatch_decisions", reason="queued") >= 1
    assert value(fams, "kefu_errors", code="not_found") >= value(before, "kefu_errors", code="not_found", default=0) + 1
    assert value(fams, "kefu_redis_latency_seconds", "kefu_redis_latency_seconds_count", op="append") >= 2
    assert value(fams, "kefu_redis_latency_seconds", "kefu_redis_latency_seconds_count", op="ping") >= 2
    assert fams["kefu_redis_latency_seconds"].type == "histogram"
    assert value(fams, "kefu_redis_ping_seconds") > 0
    assert value(fams, "kefu_queue_length", seller=shop.seller) == 1
    assert value(fams, "kefu_cluster_queued_conversations") >= 1
    assert value(fams, "kefu_cluster_members", status="online") >= 1
    assert value(fams, "kefu_cluster_nodes") >= 1
    assert value(fams, "kefu_slow_consumer_closes") >= 0 and "kefu_outbound_dropped_frames" in fams
    assert "process_cpu_seconds" in fams
    # event-loop health (server/watchdog.py): the lag probe ticks every 50 ms; GC pauses by generation
    assert fams["kefu_loop_lag_seconds"].type == "histogram"
    assert value(fams, "kefu_loop_lag_seconds", "kefu_loop_lag_seconds_count", node=node) >= 1
    assert fams["kefu_gc_pause_seconds"].type == "histogram"
    # no per-buyer or per-member labels anywhere
    labels = {k for f in fams.values() for s in f.samples for k in s.labels}
    assert labels <= {"node", "reason", "via", "code", "op", "le", "kind", "status", "seller", "generation"}
    assert b1.auth["buyer"] not in text and "alice" not in text
    for c in (alice, b1, b2):
        await c.close()


async def test_metrics_need_the_token_when_one_is_set(spawn):
    import asyncio
    node = spawn(metrics_token="scrape-me-0123")
    with pytest.raises(urllib.error.HTTPError) as e:
        await asyncio.to_thread(scrape, node.base)
    assert e.value.code == 403
    with pytest.raises(urllib.error.HTTPError):
        await asyncio.to_thread(scrape, node.base, "wrong")
    assert "kefu_connections" in families(await asyncio.to_thread(scrape, node.base, "scrape-me-0123"))


# ---- the reconstruction alone, for what a scripted day does not reach ---------------------------

B = 1_700_000_000_000  # times below are B + seconds-ish offsets


def _conv(**h: Any) -> dict[str, str]:
    """A conversation hash; integer fields are offsets from B."""
    return {"kind": "buyer", "store": "shop", "queue": "s:shop",
            **{k: str(B + v if k in TIMES else v) for k, v in h.items()}}


TIMES = {"created", "first_assigned", "queued_at", "closed_at", "assigned_at"}


def at(ts: int, *a: str) -> Any:
    from kefu.server.stats import Assign
    return Assign(B + ts, *a)


def test_redispatch_into_the_queue_splits_service_at_the_release():  # R15
    from kefu.server.stats import reconstruct
    h = _conv(state="closed", created=0, first_assigned=0, queued_at=50, member="bob", closed_at=100,
              closed_by="bob", service_ms=70)
    c = reconstruct("c1", h, [at(0, "alice", "least_loaded"), at(80, "bob", "least_loaded")], [], [])
    assert c.service == {"alice": 50, "bob": 20}
    assert [(w.queue, w.start - B, w.end - B, w.member, w.queued) for w in c.waits if w.end] == [
        ("s:shop", 0, 0, "alice", False), ("s:shop", 50, 80, "bob", True)]
    assert [x.via for x in c.holdings] == ["dispatch", "redispatch"]


def test_redispatch_in_one_step_is_not_a_transfer():  # R15
    from kefu.server.stats import Report, reconstruct
    h = _conv(state="closed", created=0, first_assigned=0, member="bob", closed_at=60, closed_by="bob",
              service_ms=60)
    c = reconstruct("c1", h, [at(0, "alice", "least_loaded"), at(40, "bob", "redispatch:sticky")], [], [])
    assert c.service == {"alice": 40, "bob": 20} and c.holdings[1].via == "redispatch"
    rep = Report({"alice": ["pre"], "bob": ["pre"]}, {"shop": ["pre"]})
    rep.add(c)
    assert rep.rows["member"]["bob"].row()["transfers_in"] == 0
    assert rep.rows["group"]["pre"].row()["served"] == 1 and rep.total.row()["service_avg_ms"] == 60


def test_trimmed_assignment_log_falls_back_to_the_transfer_list():  # R18
    from kefu.server.stats import reconstruct
    h = _conv(state="closed", created=0, first_assigned=0, member="bob", closed_at=50, closed_by="bob",
              service_ms=50)
    xf = [{"from": "alice", "to": "bob", "ts": B + 30, "kind": "member", "reason": ""}]
    c = reconstruct("c1", h, [], xf, [])
    assert c.service == {"alice": 30, "bob": 20} and c.transfers_out == ["alice"]
    assert c.holdings[1].via == "transfer"


def test_a_conversation_still_waiting_counts_as_queued_without_a_wait_time():  # R12.4
    from kefu.server.stats import Report, reconstruct
    c = reconstruct("c1", _conv(state="queued", created=0, queued_at=0), [], [], [])
    rep = Report({}, {"shop": ["pre"]})
    rep.add(c)
    row = rep.rows["group"]["pre"].row()
    assert row["queued"] == 1 and row["queue_wait_avg_ms"] is None and row["served"] == 0


def test_an_active_conversation_counts_service_only_for_ended_shares():
    from kefu.server.stats import Report, reconstruct
    h = _conv(state="active", created=0, first_assigned=0, member="bob", assigned_at=30, service_ms=30,
              transfers=1)
    xf = [{"from": "alice", "to": "bob", "ts": B + 30, "kind": "member", "reason": ""}]
    c = reconstruct("c1", h, [at(0, "alice", "least_loaded"), at(30, "bob", "transfer", "alice")], xf, [])
    rep = Report({}, {})
    rep.add(c)
    alice, bob = rep.rows["member"]["alice"].row(), rep.rows["member"]["bob"].row()
    assert (alice["service_ms"], alice["service_avg_ms"]) == (30, 30)
    assert (bob["served"], bob["service_ms"], bob["service_avg_ms"]) == (1, 0, None)
