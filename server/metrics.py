"""Prometheus metrics for ``/metrics``: this node's counters, and cluster-wide figures read from Redis.

Per-node counters are plain ints bumped on the hot path (``metrics.messages_in += 1`` costs no lock);
a collector turns them into Prometheus families at scrape time. Every per-node series carries a
``node`` label. Cluster-wide gauges (``kefu_cluster_*`` and ``kefu_queue_length``) are the same on
every node, so aggregate them with ``max`` rather than ``sum``. No per-buyer or per-member labels;
per-seller only for queue lengths (bounded by ``MAX_SELLER_SERIES``).
"""
from __future__ import annotations

import bisect
import time
from collections import Counter
from typing import TYPE_CHECKING, Iterator, TypeVar, cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .storage import keys as K
from .storage.keys import SellerKeys

if TYPE_CHECKING:
    from .node import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_SELLER_SERIES = 1000  # beyond this many sellers, only the cluster total of queued conversations
K_ = TypeVar("K_")


class _Histogram:
    """A lock-free histogram (one event loop per process): bucket counts and a sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, v)] += 1
        self.sum += v

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for le, n in zip([*map(str, BUCKETS), "+Inf"], self.counts):
            acc += n
            out.append((le, float(acc)))
        return out


def _observe(hists: "dict[K_, _Histogram]", key: "K_", v: float) -> None:
    h = hists.get(key)
    if h is None:
        h = hists[key] = _Histogram()
    h.observe(v)


class Metrics:
    def __init__(self) -> None:
        self.node_id = ""
        self.connections = 0
        self.messages_in = 0           # frames received on WebSockets
        self.frames_out = 0            # frames queued for sending
        self.slow_consumers = 0        # connections closed 4100 because their outbound queue overflowed
        self.dropped_frames = 0        # frames discarded with them
        self.conversations_opened = 0
        self.closed = 0
        self.transfers = 0
        self.left_queue = 0
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.redis: dict[str, _Histogram] = {}
        self.loop_lag = _Histogram()   # how late the event loop ran a due timer (server/watchdog.py)
        self.gc: dict[int, _Histogram] = {}  # cyclic-GC pauses by generation
        self.cluster: list[Metric] = []
        self._node: "Node | None" = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)

    # ---- the API the rest of the server calls ---------------------------------------------
    def dispatched(self, reason: str) -> None:
        """``least_loaded``, ``transfer:sticky``, ``redispatch:queued`` … -> (reason, via)."""
        via, _, r = reason.rpartition(":")
        self.decisions[(r, via or "new")] += 1

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def redis_call(self, op: str, seconds: float) -> None:
        """One Redis round trip: a script run (``Scripts`` reports every one) or a probe."""
        _observe(self.redis, op, seconds)

    def gc_pause(self, generation: int, seconds: float) -> None:
        _observe(self.gc, generation, seconds)

    def render(self, node_id: str) -> str:
        """This node's series (and the cluster figures of the last ``scrape``), in the text format."""
        self.node_id = node_id
        return generate_latest(self.registry).decode()

    async def scrape(self, node: "Node") -> str:
        """Refresh the cluster-wide figures from Redis, then render everything."""
        self._node = node
        self.cluster = await cluster_figures(node, self)
        return self.render(node.id)


class _Collector(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m, node = self.m, self.m.node_id
        yield _gauge("kefu_connections", "open WebSocket connections on this node", m.connections, node)
        if m._node is not None:
            hub = m._node.hub
            kinds = Counter(c.kind for c in hub.conns)
            g = GaugeMetricFamily("kefu_sessions", "authenticated connections on this node by kind",
                                  labels=["node", "kind"])
            for kind in ("member", "buyer"):
                g.add_metric([node, kind], kinds.get(kind, 0))
            yield g
            yield _counter("kefu_pubsub_received", "pub/sub events received by this node", hub.received, node)
            yield _counter("kefu_pubsub_delivered", "pub/sub events handed to local connections", hub.delivered, node)
        for name, doc, v in (
            ("kefu_messages_in", "WebSocket frames received", m.messages_in),
            ("kefu_messages_out", "WebSocket frames queued for sending", m.frames_out),
            ("kefu_slow_consumer_closes", "connections closed: outbound queue overflowed (4100)", m.slow_consumers),
            ("kefu_outbound_dropped_frames", "frames discarded with slow consumers", m.dropped_frames),
            ("kefu_conversations_opened", "buyer conversations opened", m.conversations_opened),
            ("kefu_conversations_closed", "conversations closed by members", m.closed),
            ("kefu_transfers", "conversations transferred", m.transfers),
            ("kefu_queue_left", "buyers who left a queue before being served", m.left_queue),
        ):
            yield _counter(name, doc, v, node)
        c = CounterMetricFamily("kefu_dispatch_decisions", "dispatch decisions by reason (R12) and by how the "
                                "conversation came to the dispatcher", labels=["node", "reason", "via"])
        for (reason, via), v in sorted(m.decisions.items()):
            c.add_metric([node, reason, via], v)
        yield c
        c = CounterMetricFamily("kefu_errors", "error replies by code", labels=["node", "code"])
        for code, v in sorted(m.errors.items()):
            c.add_metric([node, code], v)
        yield c
        h = HistogramMetricFamily("kefu_redis_latency_seconds", "Redis round trips: each atomic script by "
                                  "name, and the PING of each scrape", labels=["node", "op"])
        for op, hist in sorted(m.redis.items()):
            h.add_metric([node, op], hist.buckets(), hist.sum)
        yield h
        h = HistogramMetricFamily("kefu_loop_lag_seconds", "how late the event loop ran a timer: a slow "
                                  "callback or GC pause delays every socket of the node", labels=["node"])
        h.add_metric([node], m.loop_lag.buckets(), m.loop_lag.sum)
        yield h
        h = HistogramMetricFamily("kefu_gc_pause_seconds", "cyclic garbage-collector pauses by generation",
                                  labels=["node", "generation"])
        for gen, hist in sorted(m.gc.items()):
            h.add_metric([node, str(gen)], hist.buckets(), hist.sum)
        yield h
        yield from m.cluster


def _gauge(name: str, doc: str, v: float, node: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["node"])
    g.add_metric([node], v)
    return g


def _counter(name: str, doc: str, v: float, node: str) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=["node"])
    c.add_metric([node], v)
    return c


async def cluster_figures(node: "Node", m: Metrics) -> list[Metric]:
    """Redis latency and the figures of every seller: queues, members per status, active conversations."""
    r = node.r
    t0 = time.perf_counter()
    await r.ping()
    ping = time.perf_counter() - t0
    m.redis_call("ping", ping)
    sellers = sorted(cast(set[str], await r.smembers(K.SELLERS)))
    pipe = r.pipeline(transaction=False)
    pipe.zcard(K.NODES)
    for s in sellers:
        k = SellerKeys(s)
        pipe.hkeys(k.stores)
        pipe.hkeys(k.groups)
        pipe.hvals(k.status)
        pipe.hlen(k.names)
        pipe.zcard(k.held)
    res = await pipe.execute()
    nodes, rest = res[0], res[1:]
    queues: list[tuple[str, str]] = []
    status: Counter[str] = Counter()
    active = 0
    for i, s in enumerate(sellers):
        stores, groups, st, n_members, held = rest[5 * i: 5 * i + 5]
        queues += [(s, f"s:{x}") for x in stores] + [(s, f"g:{x}") for x in groups]
        status.update(st)
        status["offline"] += n_members - len(st)  # members who never connected have no status yet
        active += held
    pipe = r.pipeline(transaction=False)
    for s, q in queues:
        pipe.zcard(SellerKeys(s).queue(q))
        pipe.zrange(SellerKeys(s).queue(q), 0, 0, withscores=True)
    res = await pipe.execute() if queues else []
    per_seller: Counter[str] = Counter({s: 0 for s in sellers})
    oldest = 0.0
    for i, (s, _) in enumerate(queues):
        per_seller[s] += res[2 * i]
        if res[2 * i + 1]:
            head = float(res[2 * i + 1][0][1])
            oldest = head if not oldest else min(oldest, head)
    now = node.now_ms()
    out: list[Metric] = []
    g = GaugeMetricFamily("kefu_redis_ping_seconds", "Redis PING round trip measured at this scrape", labels=["node"])
    g.add_metric([node.id], ping)
    out.append(g)
    for name, doc, v in (
        ("kefu_cluster_nodes", "live kefu nodes (heartbeating)", nodes),
        ("kefu_cluster_sellers", "sellers", len(sellers)),
        ("kefu_cluster_queued_conversations", "conversations waiting in any queue", sum(per_seller.values())),
        ("kefu_cluster_queue_oldest_wait_seconds", "wait of the oldest queued conversation",
         max(0.0, (now - oldest) / 1000) if oldest else 0.0),
        ("kefu_cluster_active_conversations", "conversations being served", active),
    ):
        out.append(GaugeMetricFamily(name, doc, value=v))
    g = GaugeMetricFamily("kefu_cluster_members", "members by status (R5)", labels=["status"])
    for st_ in ("online", "idle", "offline"):
        g.add_metric([st_], status.get(st_, 0))
    out.append(g)
    if len(sellers) <= MAX_SELLER_SERIES:
        g = GaugeMetricFamily("kefu_queue_length", "conversations waiting in a seller's queues", labels=["seller"])
        for s, v in sorted(per_seller.items()):
            g.add_metric([s], v)
        out.append(g)
    return out
