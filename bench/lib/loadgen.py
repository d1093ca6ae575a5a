"""Paced relay load generator: sender→receiver pairs over a pluggable transport adapter.

Each pair is two connections, a sender and a receiver, held by the same load-generator process,
so the end-to-end latency (send → receive) is read on one `time.perf_counter` clock. Messages
carry (from, seq, ts); per-sender sequence numbers give lost / duplicated / out-of-order counts.
Load is spread over several spawned processes so the generator itself is not the bottleneck;
their HdrHistograms are merged.

    from lib import loadgen
    r = loadgen.run_load(loadgen.RelayAdapter, "ws://127.0.0.1:8000/ws", rate=2000, duration=5)
    print(r.summary())

An adapter is a class with `connect(user_id) -> conn`, `send(conn, to, seq, ts)`, `close(conn)`,
constructed as `Adapter(url, on_message, **options)` where `on_message(from, seq, ts)` is called
for every delivered message. It must be importable from a module (workers are spawned).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgspec
from hdrh.histogram import HdrHistogram
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

OnMessage = Callable[[str, int, float], None]
C = TypeVar("C")

# Latencies are recorded in microseconds, 1 µs .. 60 s, 3 significant digits.
HIST_MIN, HIST_MAX, HIST_DIGITS = 1, 60_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_MIN, HIST_MAX, HIST_DIGITS)


# --------------------------------------------------------------------------- adapters


class Adapter(ABC, Generic[C]):
    """One wire protocol. `on_message(from, seq, ts)` is called for each message received."""

    name = "abstract"

    def __init__(self, url: str, on_message: OnMessage, **options: Any) -> None:
        self.url = url
        self.on_message = on_message
        self.options = options

    @abstractmethod
    async def connect(self, user_id: str) -> C: ...

    @abstractmethod
    async def send(self, conn: C, to: str, seq: int, ts: float) -> None: ...

    @abstractmethod
    async def close(self, conn: C) -> None: ...

    def stats(self) -> dict[str, int]:
        """Protocol-level counters of this worker (acks, errors by code…), summed across workers."""
        return {}


class Msg(msgspec.Struct, omit_defaults=True):
    """The baseline payload: {"to", "seq", "ts", "from", "pad"?}."""

    to: str
    seq: int
    ts: float
    frm: str = msgspec.field(name="from")
    pad: str = ""


_encode = msgspec.json.Encoder().encode
_decode_msg = msgspec.json.Decoder(Msg).decode
_decode_sio_event = msgspec.json.Decoder(tuple[str, Msg]).decode


class WsConn(asyncio.Protocol):
    """A WebSocket client connection on websockets' sans-I/O `ClientProtocol`.

    Received messages are handed to `on_frame` straight from `data_received`, and `send_text`
    writes synchronously: no reader task, future or queue per message. That costs ~20% less
    CPU per message than the asyncio client of `websockets` (measured 34–40 vs 43–46 µs per
    message sent and received), CPU that the server under test needs on a 2-core machine.
    """

    def __init__(
        self,
        user: str,
        uri: str,
        *,
        max_size: int = 1 << 20,
        subprotocols: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.user = user
        self.proto = ClientProtocol(
            parse_uri(uri), max_size=max_size, subprotocols=[Subprotocol(p) for p in subprotocols] or None
        )
        self._headers = headers or {}
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        # Until the adapter's handshake is done, messages are queued for `recv()`.
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_frame: Callable[[bytes], None] = self.inbox.put_nowait
        self._fragments: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = self.proto.connect()
        for k, v in self._headers.items():
            request.headers[k] = v
        self.proto.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        proto.receive_data(data)
        for ev in proto.events_received():
            if isinstance(ev, Frame):
                if ev.opcode in _DATA_OPCODES:
                    if ev.fin and not self._fragments:
                        self.on_frame(bytes(ev.data))
                    else:
                        self._fragments.append(bytes(ev.data))
                        if ev.fin:
                            self.on_frame(b"".join(self._fragments))
                            self._fragments.clear()
            elif not self.opened.done():  # the handshake response
                if proto.handshake_exc is not None:
                    self.opened.set_exception(proto.handshake_exc)
                else:
                    self.opened.set_result(None)
        self._flush()  # pongs, close replies

    def eof_received(self) -> None:
        self.proto.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # API
    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():  # SEND_EOF
                self.transport.write_eof()
        if self.proto.state is State.CLOSED:
            self.transport.close()

    def send_text(self, data: bytes) -> None:
        if self.proto.state is not State.OPEN:
            raise ConnectionError(f"connection {self.proto.state.name.lower()}")
        self.proto.send_text(data)
        self._flush()

    def send_binary(self, data: bytes) -> None:
        if self.proto.state is not State.OPEN:
            raise ConnectionError(f"connection {self.proto.state.name.lower()}")
        self.proto.send_binary(data)
        self._flush()

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected, once open."""
        return self.proto.subprotocol

    async def recv(self) -> bytes:
        """Next message, only while `on_frame` is still the default (during a handshake)."""
        return await self.inbox.get()

    async def close(self, timeout: float = 2.0) -> None:
        if self.transport is None:
            return
        if self.proto.state is State.OPEN:
            self.proto.send_close()
            self._flush()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        if not self.closed.done():
            self.transport.abort()  # the server never closed: don't wait any longer


_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class WsAdapter(Adapter[WsConn]):
    """Base for adapters over a WebSocket (`WsConn`).

    Options: `pad` (bytes of padding per message), `local_addrs` (source IPs to spread
    connections over, e.g. ["127.0.0.2", "127.0.0.3"], when ephemeral ports run out),
    `open_timeout` (seconds). Subclasses override `uri`, `headers`, `subprotocols`,
    `handshake`, `encode` and `on_frame` for their protocol.
    """

    subprotocols: Sequence[str] = ()

    def __init__(self, url: str, on_message: OnMessage, **options: Any) -> None:
        super().__init__(url, on_message, **options)
        self.pad = "x" * int(options.get("pad", 0))
        self.local_addrs: Sequence[str] = options.get("local_addrs") or ()
        self.open_timeout = float(options.get("open_timeout", 30.0))
        self._n = 0

    def uri(self, user_id: str) -> str:
        return f"{self.url}{'&' if '?' in self.url else '?'}user={quote(user_id)}"

    def headers(self, user_id: str) -> dict[str, str]:
        """Extra HTTP headers for the opening handshake (e.g. Authorization)."""
        return {}

    async def handshake(self, conn: WsConn) -> None:
        """Protocol-level opening after the WebSocket handshake, using `await conn.recv()`."""

    def on_frame(self, conn: WsConn, frame: bytes) -> None:
        """Handle one received message (may reply with conn.send_text)."""
        m = _decode_msg(frame)
        self.on_message(m.frm, m.seq, m.ts)

    def encode(self, user: str, to: str, seq: int, ts: float) -> bytes:
        return _encode(Msg(to=to, seq=seq, ts=ts, frm=user, pad=self.pad))

    async def connect(self, user_id: str) -> WsConn:
        uri = self.uri(user_id)
        wsuri = parse_uri(uri)
        if wsuri.secure:
            raise ValueError("wss:// is not supported: benchmarks run on loopback")
        extra: dict[str, Any] = {}
        if self.local_addrs:
            extra["local_addr"] = (self.local_addrs[self._n % len(self.local_addrs)], 0)
            self._n += 1
        loop = asyncio.get_running_loop()

        async def open_() -> WsConn:
            _, conn = await loop.create_connection(
                lambda: WsConn(user_id, uri, subprotocols=self.subprotocols, headers=self.headers(user_id)),
                wsuri.host,
                wsuri.port,
                **extra,
            )
            try:
                await conn.opened
                await self.handshake(conn)
            except BaseException:
                if conn.transport:
                    conn.transport.abort()
                raise
            return conn

        conn = await asyncio.wait_for(open_(), self.open_timeout)
        conn.on_frame = lambda frame: self.on_frame(conn, frame)
        # Messages that arrived during the handshake, in order.
        while not conn.inbox.empty():
            self.on_frame(conn, conn.inbox.get_nowait())
        return conn

    async def send(self, conn: WsConn, to: str, seq: int, ts: float) -> None:
        conn.send_text(self.encode(conn.user, to, seq, ts))
        if not conn.writable.is_set():  # kernel buffer full: the server is not reading
            await conn.writable.wait()

    async def close(self, conn: WsConn) -> None:
        await conn.close()


class RelayAdapter(WsAdapter):
    """bare_relay.py: raw JSON text frames; url like ws://127.0.0.1:P/ws."""

    name = "bare-relay"


class PlainWsAdapter(WsAdapter):
    """bare_ws.py: connections only (idle benchmark); incoming frames are ignored."""

    name = "bare-ws"

    def on_frame(self, conn: WsConn, frame: bytes) -> None:
        pass


class SocketIOAdapter(WsAdapter):
    """Socket.IO server over raw Engine.IO v4 on WebSocket; url like ws://127.0.0.1:P/socket.io/.

    Framing: server opens with "0{...}", we join the default namespace with "40" and wait for
    its "40{...}" ack; server pings "2" are answered "3"; events are `42["m",{...}]`.
    """

    name = "socket.io"

    def uri(self, user_id: str) -> str:
        return f"{self.url}?EIO=4&transport=websocket&user={quote(user_id)}"

    async def handshake(self, conn: WsConn) -> None:
        opened = await conn.recv()
        if not opened.startswith(b"0"):
            raise ConnectionError(f"expected Engine.IO open packet, got {opened[:80]!r}")
        conn.send_text(b"40")
        while True:
            frame = await conn.recv()
            if frame.startswith(b"40"):
                return
            if frame == b"2":
                conn.send_text(b"3")
            elif frame.startswith(b"44"):
                raise ConnectionError(f"Socket.IO connect refused: {frame[:200]!r}")

    def on_frame(self, conn: WsConn, frame: bytes) -> None:
        if frame.startswith(b"42"):
            _, m = _decode_sio_event(memoryview(frame)[2:])
            self.on_message(m.frm, m.seq, m.ts)
        elif frame == b"2":
            conn.send_text(b"3")

    def encode(self, user: str, to: str, seq: int, ts: float) -> bytes:
        return b'42["m",' + super().encode(user, to, seq, ts) + b"]"


ADAPTERS: dict[str, type[Adapter[Any]]] = {
    "bare-relay": RelayAdapter,
    "bare-ws": PlainWsAdapter,
    "socket.io": SocketIOAdapter,
}


# --------------------------------------------------------------------------- receive-side accounting


class _SeqState:
    __slots__ = ("next", "missing")

    def __init__(self) -> None:
        self.next = 0  # 1 + highest seq seen
        self.missing: set[int] = set()  # gaps below `next` not (yet) filled


class Tracker:
    """Latency histogram plus per-sender sequence accounting for messages received."""

    def __init__(self, senders: Sequence[str]) -> None:
        self.hist = new_histogram()
        self.seqs = {s: _SeqState() for s in senders}
        self.unique = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.stray = 0  # from a sender we don't know (another run, another process)
        self.last_at = 0.0
        self.t0 = 0.0  # set when sending starts; `timeline` is indexed by whole seconds since
        self.timeline: list[list[int]] = []  # per second: [delivered, max latency µs]
        self._now = time.perf_counter

    def on_message(self, frm: str, seq: int, ts: float) -> None:
        now = self._now()
        st = self.seqs.get(frm)
        if st is None:
            self.stray += 1
            return
        if seq == st.next:
            st.next += 1
        elif seq > st.next:
            st.missing.update(range(st.next, seq))
            st.next = seq + 1
        elif seq in st.missing:
            st.missing.discard(seq)
            self.out_of_order += 1
        else:
            self.duplicates += 1
            return
        self.unique += 1
        self.last_at = now
        us = min(max(int((now - ts) * 1e6), HIST_MIN), HIST_MAX)
        self.hist.record_value(us)
        sec = int(now - self.t0)
        while len(self.timeline) <= sec:
            self.timeline.append([0, 0])
        slot = self.timeline[sec]
        slot[0] += 1
        if us > slot[1]:
            slot[1] = us

    def lost(self, sent: dict[str, int]) -> int:
        return sum(len(st.missing) + sent[s] - st.next for s, st in self.seqs.items())


# --------------------------------------------------------------------------- worker process


@dataclass
class _WorkerConfig:
    adapter: type[Adapter[Any]]
    url: str
    options: dict[str, Any]
    pairs: list[int]
    prefix: str
    rate: float  # this worker's share
    duration: float
    max_messages: int  # this worker's share
    connect_timeout: float
    drain_timeout: float
    connect_concurrency: int
    settle: float = 0.0  # seconds between "all connected" and sending (let the server finish set-up work)


async def _connect_all(adapter: Adapter[Any], users: list[str], limit: int, timeout: float) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(u: str) -> Any:
        async with sem:
            return await adapter.connect(u)

    tasks = [asyncio.create_task(one(u)) for u in users]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*tasks), timeout))
    except BaseException:
        for t in tasks:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(adapter.close(c) for c in done if not isinstance(c, BaseException)), return_exceptions=True
        )
        raise


async def _worker(cfg: _WorkerConfig, start: Any, drained: Any) -> dict[str, Any]:
    senders = [f"{cfg.prefix}s{i}" for i in cfg.pairs]
    receivers = [f"{cfg.prefix}r{i}" for i in cfg.pairs]
    tracker = Tracker(senders)
    adapter = cfg.adapter(cfg.url, tracker.on_message, **cfg.options)
    barrier_timeout = cfg.connect_timeout + 60

    t_conn = time.perf_counter()
    # Receivers first, so the first messages have somewhere to go.
    rconns = await _connect_all(adapter, receivers, cfg.connect_concurrency, cfg.connect_timeout)
    sconns = await _connect_all(adapter, senders, cfg.connect_concurrency, cfg.connect_timeout)
    connect_s = time.perf_counter() - t_conn
    if cfg.settle:
        await asyncio.sleep(cfg.settle)  # e.g. presence fan-out of the connections just made
    await asyncio.to_thread(start.wait, barrier_timeout)

    n, rate, send = len(senders), cfg.rate, adapter.send
    seqs = [0] * n
    sent = send_errors = 0
    max_lag = 0.0
    cpu0 = time.process_time()
    t0 = tracker.t0 = time.perf_counter()
    end = t0 + cfg.duration
    # Open-loop pacing: at each wake-up send every message due by now, round-robin over pairs.
    while sent < cfg.max_messages:
        now = time.perf_counter()
        if now >= end:
            break
        due = min(cfg.max_messages, int((now - t0) * rate) + 1)
        if due > sent:
            max_lag = max(max_lag, now - (t0 + sent / rate))
        while sent < due:
            k = sent % n
            try:
                await send(sconns[k], receivers[k], seqs[k], time.perf_counter())
                seqs[k] += 1
            except Exception:
                send_errors += 1
            sent += 1
        # Sleep at least 1 ms: shorter timers just spin the event loop (burning the CPU the
        # server under test needs) and the next wake-up catches up with everything due.
        await asyncio.sleep(max(0.001, t0 + sent / rate - time.perf_counter()))
    send_s = time.perf_counter() - t0
    total = sum(seqs)

    deadline = time.perf_counter() + cfg.drain_timeout
    while tracker.unique < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    cpu_s = time.process_time() - cpu0
    await asyncio.to_thread(drained.wait, barrier_timeout)

    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(adapter.close(c) for c in rconns + sconns), return_exceptions=True), 10)
    sent_by = dict(zip(senders, seqs, strict=True))
    return {
        "sent": total,
        "delivered": tracker.unique,
        "lost": tracker.lost(sent_by),
        "duplicates": tracker.duplicates,
        "out_of_order": tracker.out_of_order,
        "stray": tracker.stray,
        "send_errors": send_errors,
        "send_s": send_s,
        "last_delivery_s": max(0.0, tracker.last_at - t0),
        "max_lag_s": max_lag,
        "connect_s": connect_s,
        "cpu_s": cpu_s,
        "hist": tracker.hist.encode(),
        "timeline": tracker.timeline,
        "adapter_stats": adapter.stats(),
    }


def _worker_main(cfg: _WorkerConfig, start: Any, drained: Any, out: Any) -> None:
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        out.put(runner(_worker(cfg, start, drained)))
    except BaseException:
        start.abort()
        drained.abort()
        out.put({"error": traceback.format_exc()})


# --------------------------------------------------------------------------- driver


@dataclass
class LoadResult:
    adapter: str
    target_rate: float
    duration: float
    pairs: int
    procs: int
    sent: int
    delivered: int
    lost: int
    duplicates: int
    out_of_order: int
    stray: int
    send_errors: int
    send_s: float
    last_delivery_s: float
    max_lag_ms: float
    connect_s: float
    gen_cpu_s: list[float]
    latency_ms: dict[str, float]
    timeline: list[tuple[int, float]]  # per second since start: (delivered, max latency ms)
    histogram: bytes = field(repr=False)  # merged HdrHistogram, encoded (decode to aggregate further)
    extra: dict[str, Any] = field(default_factory=dict)  # caller's figures (server CPU, RSS, ...)

    @property
    def offered_rate(self) -> float:
        return self.sent / self.send_s if self.send_s else 0.0

    @property
    def delivered_rate(self) -> float:
        span = max(self.send_s, self.last_delivery_s)
        return self.delivered / span if span else 0.0

    def sustained(self, min_ratio: float = 0.95, max_p99_ms: float = 200.0) -> bool:
        """Kept up: delivered ≥ min_ratio × target rate, p99 within bound, nothing lost."""
        return (
            self.delivered_rate >= min_ratio * self.target_rate
            and self.latency_ms["p99"] <= max_p99_ms
            and self.lost == 0
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("histogram")
        d.update(offered_rate=self.offered_rate, delivered_rate=self.delivered_rate)
        return d

    def summary(self) -> str:
        lat = self.latency_ms
        return (
            f"{self.adapter}: target {self.target_rate:,.0f}/s offered {self.offered_rate:,.0f}/s "
            f"delivered {self.delivered_rate:,.0f}/s ({self.delivered}/{self.sent}; lost {self.lost}, "
            f"dup {self.duplicates}, ooo {self.out_of_order}) | latency ms p50 {lat['p50']:.2f} "
            f"p90 {lat['p90']:.2f} p99 {lat['p99']:.2f} p99.9 {lat['p99.9']:.2f} max {lat['max']:.2f} "
            f"| gen lag max {self.max_lag_ms:.1f} ms, gen cpu {sum(self.gen_cpu_s):.1f}s"
        )


def latency_summary(hist: HdrHistogram) -> dict[str, float]:
    pct = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
    out = {k: hist.get_value_at_percentile(p) / 1000 for k, p in pct.items()}
    out["max"] = hist.get_max_value() / 1000
    out["mean"] = hist.get_mean_value() / 1000
    return out


def _merge_timelines(timelines: list[list[list[int]]]) -> list[tuple[int, float]]:
    merged: list[tuple[int, float]] = []
    for sec in range(max((len(t) for t in timelines), default=0)):
        slots = [t[sec] for t in timelines if sec < len(t)]
        merged.append((sum(s[0] for s in slots), max(s[1] for s in slots) / 1000))
    return merged


def _wait_barrier(barrier: Any, timeout: float, workers: Sequence[Any]) -> None:
    """barrier.wait(), but broken as soon as a worker process dies (e.g. failed to start)."""
    err: list[BaseException] = []

    def wait() -> None:
        try:
            barrier.wait(timeout)
        except BaseException as e:
            err.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    while waiter.is_alive():
        waiter.join(0.1)
        if waiter.is_alive() and any(not p.is_alive() for p in workers):
            barrier.abort()
    if err:
        raise err[0]


def run_load(
    adapter: type[Adapter[Any]],
    url: str,
    *,
    rate: float,
    duration: float,
    pairs: int = 100,
    procs: int = 2,
    max_messages: int | None = None,
    adapter_options: dict[str, Any] | None = None,
    connect_timeout: float = 60.0,
    drain_timeout: float = 5.0,
    connect_concurrency: int = 100,
    settle: float = 0.0,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> LoadResult:
    """Drive `pairs` sender→receiver pairs at an aggregate `rate` msg/s for at most `duration`
    seconds (and `max_messages`), from `procs` spawned processes; block until done.

    `on_start`/`on_stop` run in this process just as sending starts (all connected) and once
    every worker has drained, e.g. to bracket a CpuMeter around the measured phase only.
    """
    procs = max(1, min(procs, pairs))
    max_messages = max_messages if max_messages is not None else int(rate * duration) + 1
    ctx = mp.get_context("spawn")  # no fork of a parent that may hold event loops or threads
    start, drained = ctx.Barrier(procs + 1), ctx.Barrier(procs + 1)
    out: Any = ctx.Queue()
    prefix = f"lg{os.getpid()}x{int(time.time() * 1000) % 10**8}-"
    shares = [list(range(w, pairs, procs)) for w in range(procs)]
    workers = [
        ctx.Process(
            target=_worker_main,
            args=(
                _WorkerConfig(
                    adapter, url, dict(adapter_options or {}), share, prefix,
                    rate * len(share) / pairs, duration, max(1, max_messages * len(share) // pairs),
                    connect_timeout, drain_timeout, connect_concurrency, settle,
                ),
                start, drained, out,
            ),
            daemon=True,
            name=f"loadgen-{w}",
        )
        for w, share in enumerate(shares)
    ]  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        for p in workers:
            p.start()
        try:
            _wait_barrier(start, connect_timeout + 60, workers)
            if on_start:
                on_start()
            _wait_barrier(drained, duration + drain_timeout + 60, workers)
            if on_stop:
                on_stop()
        except threading.BrokenBarrierError:
            pass  # a worker failed: its traceback is on the queue
        for _ in workers:
            try:
                results.append(out.get(timeout=30))
            except queue.Empty:
                break
    finally:
        for p in workers:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    errors = [r["error"] for r in results if "error" in r]
    if errors or len(results) != procs:
        raise RuntimeError("load generator failed:\n" + ("\n".join(errors) or "a worker died silently"))

    hist = new_histogram()
    adapter_stats: dict[str, int] = {}
    for r in results:
        hist.decode_and_add(r["hist"])
        for k, v in r.get("adapter_stats", {}).items():
            adapter_stats[k] = adapter_stats.get(k, 0) + v

    def total(key: str) -> int:
        return sum(int(r[key]) for r in results)

    return LoadResult(
        adapter=getattr(adapter, "name", adapter.__name__),
        target_rate=rate,
        duration=duration,
        pairs=pairs,
        procs=procs,
        sent=total("sent"),
        delivered=total("delivered"),
        lost=total("lost"),
        duplicates=total("duplicates"),
        out_of_order=total("out_of_order"),
        stray=total("stray"),
        send_errors=total("send_errors"),
        send_s=max(r["send_s"] for r in results),
        last_delivery_s=max(r["last_delivery_s"] for r in results),
        max_lag_ms=max(r["max_lag_s"] for r in results) * 1000,
        connect_s=max(r["connect_s"] for r in results),
        gen_cpu_s=[r["cpu_s"] for r in results],
        latency_ms=latency_summary(hist),
        timeline=_merge_timelines([r["timeline"] for r in results]),
        histogram=hist.encode(),
        extra={"adapter": adapter_stats} if adapter_stats else {},
    )


def find_max_rate(
    run: Callable[[float], LoadResult],
    rates: Sequence[float],
    *,
    budget_s: float = 120.0,
    min_ratio: float = 0.95,
    max_p99_ms: float = 200.0,
    log: Callable[[str], None] = print,
    describe: Callable[[LoadResult], str] = LoadResult.summary,
) -> tuple[float, list[LoadResult]]:
    """Step through increasing `rates` with `run(rate)` until one is not sustained (or the time
    budget is spent); return the highest sustained rate and every result."""
    results: list[LoadResult] = []
    best = 0.0
    deadline = time.monotonic() + budget_s
    for rate in rates:
        if time.monotonic() >= deadline:
            log(f"  time budget spent before {rate:,.0f}/s")
            break
        r = run(rate)
        results.append(r)
        ok = r.sustained(min_ratio, max_p99_ms)
        log(f"  {'ok  ' if ok else 'FAIL'} {describe(r)}")
        if not ok:
            break
        best = rate
    return best, results
