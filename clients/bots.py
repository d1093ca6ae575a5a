"""``kefu bots``: thousands of synthetic buyers, and optional bot members, against any kefu URL.

    kefu bots --url http://127.0.0.1:8700 --setup-redis redis://127.0.0.1:6379 \\
              --buyers 2000 --members 20 --rate 0.5 --ramp 10 --duration 30 --procs 2 --reply

Each buyer opens a conversation at a store, then sends ``--rate`` messages per second (open loop) or
one message per ``--think`` seconds after each answer (closed loop). Bot members log in, go online,
take what the dispatcher gives them and (``--reply``) answer every buyer message. Every message
carries a per-sender counter and a wall-clock time stamp in its text, and every buyer checks its
conversation's ``seq``s, so a loss, a duplicate or a reordering is counted, never silent:

- buyer → member: members check each buyer's counter (0, 1, 2 …) against what the buyers had
  acknowledged (the parent merges the counts of every worker process);
- conversation stream: each buyer must see seq 1..N of its conversation exactly once, in order
  (a gap is re-checked with ``history`` at the end: only what the buyer may see counts).

Buyers reconnect (to the next ``--url``) after a 1001/41xx/abnormal close, resume with their
``cursors`` and re-send unacknowledged messages with the same ``cid`` (idempotent, R17).

Setup — the seller to test against, one of:
  ``--seller S --store ST [--member-login S:m --password P]``  an existing seller (and its members);
  ``--setup-redis URL``   a throw-away seller created directly in that Redis (cheap password hashes);
  ``--admin-login S --admin-password P``  the same through the admin HTTP API.
Tokens come from the HTTP API (``/api/login``, ``/api/buyer/session``), or are signed locally with
``--token-secret`` (the server's ``KEFU_SECRET``), which spares the server thousands of logins.

Latencies come from HdrHistograms (1 µs .. 60 s, 3 digits), merged across worker processes:
``ack`` (send → ok, one clock), ``deliver`` (buyer send → member receives; wall clocks, so hosts must
be in sync), ``roundtrip`` (buyer send → the member's reply arrives, one clock), ``push`` (a member's
``--member-rate`` message → the buyer).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import random
import secrets
import sys
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram
from kefu.clients.client import http_json, ws_url
from kefu.protocol.codec import CODECS, Codec
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

HIST = (1, 60_000_000, 3)  # µs, 1 µs .. 60 s, 3 significant digits
LATENCIES = ("ack", "deliver", "roundtrip", "push")
RESUME_CLOSE = {1001, 1006, 1011, 1012, 4100, 4101}  # going away, abnormal, overloaded: reconnect and resume


def new_hist() -> HdrHistogram:
    return HdrHistogram(*HIST)


def percentiles(h: HdrHistogram) -> dict[str, float]:
    """Milliseconds: p50, p90, p99, p99.9, max, mean (and the count)."""
    out = {k: h.get_value_at_percentile(p) / 1000 for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))}
    out.update(max=h.get_max_value() / 1000, mean=h.get_mean_value() / 1000, count=h.get_total_count())
    return out


def _record(h: HdrHistogram, seconds: float) -> None:
    h.record_value(min(max(int(seconds * 1e6), HIST[0]), HIST[1]))


class BotError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


# --------------------------------------------------------------------------- one connection


class _Proto(asyncio.Protocol):
    """A WebSocket on websockets' sans-I/O protocol: frames are handled straight from
    ``data_received`` (no reader task, queue or future per socket or message), so one process
    drives thousands of connections with the CPU left to the server under test."""

    def __init__(self, owner: Conn, uri: str, subprotocol: str) -> None:
        self.owner = owner
        self.proto = ClientProtocol(parse_uri(uri), max_size=1 << 20, subprotocols=[Subprotocol(subprotocol)])
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._frags: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proto.send_request(self.proto.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        p = self.proto
        p.receive_data(data)
        for ev in p.events_received():
            if isinstance(ev, Frame):
                if ev.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    if ev.fin and not self._frags:
                        self.owner._on_frame(bytes(ev.data))
                    else:
                        self._frags.append(bytes(ev.data))
                        if ev.fin:
                            self.owner._on_frame(b"".join(self._frags))
                            self._frags.clear()
            elif not self.opened.done():
                if p.handshake_exc is not None:
                    self.opened.set_exception(p.handshake_exc)
                else:
                    self.opened.set_result(None)
        self.flush()

    def eof_received(self) -> None:
        self.proto.receive_eof()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        rcvd = self.proto.close_rcvd
        self.owner._on_lost(rcvd.code if rcvd is not None else 1006, rcvd.reason if rcvd is not None else "")

    def flush(self) -> None:
        assert self.transport is not None
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.proto.state is State.CLOSED:
            self.transport.close()


Reply = Callable[[bool, Any], None]


class Conn:
    """One kefu connection: requests with ids and reply callbacks; events go to ``on_event``."""

    def __init__(self, codec: Codec, on_event: Callable[[str, Any], None],
                 on_close: Callable[[int, str], None] | None = None) -> None:
        self.codec = codec
        self.on_event = on_event
        self.on_close = on_close
        self.p: _Proto | None = None
        self.open = False
        self.close_code: int | None = None
        self.phase = ""  # tcp | handshake | auth | open: how far the last connect got
        self._pending: dict[int, Reply] = {}
        self._rid = 0

    async def connect(self, url: str, token: str, timeout: float = 30, local_addr: str | None = None,
                      **auth: Any) -> Any:
        """Open the socket and authenticate; returns the auth reply (raises BotError/OSError)."""
        uri = ws_url(url) if url.startswith("http") else url
        wsu = parse_uri(uri)
        if wsu.secure:
            raise ValueError("wss:// is not supported by the bots (put them next to the server)")
        loop = asyncio.get_running_loop()
        extra: dict[str, Any] = {"local_addr": (local_addr, 0)} if local_addr else {}

        async def go() -> Any:
            self.phase = "tcp"
            _, p = await loop.create_connection(lambda: _Proto(self, uri, self.codec.subprotocol),
                                                wsu.host, wsu.port, **extra)
            self.p = p
            self.phase = "handshake"
            await p.opened
            self.open, self.close_code = True, None
            self.phase = "auth"
            res = await self.request("auth", token=token, **auth)
            self.phase = "open"
            return res

        try:
            return await asyncio.wait_for(go(), timeout)
        except BaseException:
            self.abort()
            raise

    def send(self, type_: str, data: dict[str, Any], on_reply: Reply | None = None) -> None:
        """Fire a request; ``on_reply(ok, data)`` runs when its answer arrives (or the socket drops)."""
        if not self.open or self.p is None or self.p.proto.state is not State.OPEN:
            # the peer may be gone before connection_lost reaches us: the protocol already knows
            raise ConnectionError("not connected")
        self._rid += 1
        if on_reply is not None:
            self._pending[self._rid] = on_reply
        frame = self.codec.request(type_, self._rid, data)
        p = self.p
        if self.codec.binary:
            p.proto.send_binary(frame)
        else:
            p.proto.send_text(frame)
        p.flush()

    def request(self, type_: str, **data: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(ok: bool, d: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(d)
            else:
                fut.set_exception(BotError(d.get("code", "internal"), d.get("message", "")))

        self.send(type_, data, done)
        return fut

    def _on_frame(self, frame: bytes) -> None:
        env = self.codec.decode_any(frame)
        t = env.get("type")
        if t == "ok" or t == "error":
            cb = self._pending.pop(env.get("id"), None)
            if cb is not None:
                cb(t == "ok", env.get("data") or {})
            return
        self.on_event(t or "", env.get("data") or {})

    def _on_lost(self, code: int, reason: str) -> None:
        self.open = False
        self.close_code = code
        pending, self._pending = self._pending, {}
        for cb in pending.values():
            cb(False, {"code": "closed", "message": f"connection closed ({code})"})
        if self.on_close is not None:
            self.on_close(code, reason)

    def close(self) -> None:
        if self.p is not None and self.p.proto.state is State.OPEN:
            self.p.proto.send_close(1000)
            self.p.flush()

    def abort(self) -> None:
        if self.p is not None and self.p.transport is not None:
            self.p.transport.abort()


async def ahttp(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30) -> Any:
    """JSON over HTTP/1.1 on asyncio (no thread per request): buyer sessions for thousands of bots."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        return await asyncio.to_thread(http_json, method, url, body, token, timeout)
    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "") + "\r\n")

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(u.hostname, u.port or 80)
        try:
            writer.write(head.encode() + data)
            raw = await reader.read()
        finally:
            writer.close()
        headers, _, payload = raw.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in headers.lower():
            payload = _unchunk(payload)
        return int(headers.split(b" ", 2)[1]), payload

    status, payload = await asyncio.wait_for(go(), timeout)
    out = json.loads(payload or b"{}")
    if status >= 400:
        e = out.get("error", {}) if isinstance(out, dict) else {}
        raise BotError(e.get("code", f"http_{status}"), e.get("message", ""))
    return out


def _unchunk(b: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        j = b.index(b"\r\n", i)
        n = int(b[i:j].split(b";")[0], 16)
        if n == 0:
            return b"".join(out)
        out.append(b[j + 2:j + 2 + n])
        i = j + 2 + n + 2


# --------------------------------------------------------------------------- configuration


@dataclass
class BotsConfig:
    """Everything a worker needs (picklable). ``members`` are (member id, login) pairs."""

    urls: list[str]
    seller: str
    stores: list[str]
    buyers: int = 100
    members: list[tuple[str, str]] = field(default_factory=list)
    password: str = ""                 # the members' password (HTTP login), unless token_secret
    token_secret: str = ""             # sign tokens locally with the server's KEFU_SECRET
    codec: str = "msgpack"
    rate: float = 0.2                  # messages/s per buyer (open loop); 0 with think > 0: closed loop
    think: float = 0.0                 # closed loop: mean pause after each answer
    size: int = 0                      # padding characters per message
    ramp: float = 5.0
    duration: float = 30.0
    drain: float = 10.0
    procs: int = 1
    reply: bool = False                # bot members answer each buyer message
    member_rate: float = 0.0           # bot members also push messages/s into their conversations
    address: bool = False              # buyer i addresses member i % M by name (R12.1)
    reconnect: bool = True
    echo: bool = True                  # False: own messages come back in the send reply only (auth echo)
    connect_timeout: float = 30.0
    connect_concurrency: int = 200
    first_url: int | None = None       # every buyer starts on urls[first_url] (failover tests)
    local_addrs: list[str] = field(default_factory=list)  # source IPs, when ephemeral ports run out
    buyer_prefix: str = ""
    progress_every: float = 1.0


@dataclass
class _Shared:
    """Figures of one worker process, returned to the parent."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    unacked: int = 0
    resent: int = 0
    delivered: int = 0
    member_dup: int = 0
    member_ooo: int = 0
    replies_sent: int = 0
    replies_received: int = 0
    replies_skipped: int = 0
    pushes_sent: int = 0
    pushes_received: int = 0
    seq_lost: int = 0
    seq_dup: int = 0
    seq_ooo: int = 0
    notes_skipped: int = 0
    connected: int = 0
    connected_peak: int = 0
    members_connected: int = 0
    members_connected_peak: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    convs_active: int = 0
    convs_queued: int = 0
    errors: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------- bots


class _Bucket:
    """Token bucket that keeps a bot under the server's per-connection rate limit (50/s, burst 200)."""

    def __init__(self, rate: float = 45.0, burst: float = 150.0) -> None:
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Buyer:
    """One synthetic buyer: a conversation, a per-sender counter, seq checks and resume."""

    def __init__(self, w: Worker, idx: int) -> None:
        self.w, self.idx = w, idx
        self.id = f"{w.cfg.buyer_prefix}b{idx}"
        self.store = w.cfg.stores[idx % len(w.cfg.stores)]
        nurl = len(w.cfg.urls)
        self.url_i = w.cfg.first_url if w.cfg.first_url is not None else idx % nurl
        self.token = ""
        self.conn = Conn(w.codec, self._on_event, self._on_close)
        self.conv = ""
        self.n = 0                                   # next counter
        self.unacked: dict[int, tuple[str, str, float]] = {}  # counter -> (cid, text, sent at)
        self.failed: set[int] = set()                # refused by the server: never stored
        self.cursor: dict[str, int] = {}
        self.missing: dict[str, set[int]] = {}
        self.down_at = 0.0
        self.resume: list[float] = []                # [down, back, resumed target seq]
        self.reconnects: list[tuple[float, float, float]] = []
        self.answered = asyncio.Event()
        self.lost_conn = asyncio.Event()
        self.up = False                              # counted as connected
        self.stage = ""                              # where a reconnect is (stragglers in the report)
        self.trail: list[str] = []                   # connects and closes, for stragglers in the report

    # events
    def _saw(self, conv: str, seq: int) -> bool:
        """One message of the conversation stream arrived; False for a duplicate."""
        w = self.w
        cur = self.cursor.get(conv, 0)
        if seq <= cur:
            miss = self.missing.get(conv)
            if miss and seq in miss:
                miss.discard(seq)
                w.s.seq_ooo += 1
                return True
            w.s.seq_dup += 1
            return False
        if seq > cur + 1:
            self.missing.setdefault(conv, set()).update(range(cur + 1, seq))
        self.cursor[conv] = seq
        return True

    def _on_event(self, t: str, d: Any) -> None:
        w = self.w
        if t == "msg":
            if not self._saw(d["conv"], d["seq"]):
                return
            if d.get("kind") == "member":
                text = d.get("text", "")
                if text.startswith("r "):
                    w.s.replies_received += 1
                    _record(w.h["roundtrip"], time.time() - float(text.split(" ", 3)[2]))
                    self.answered.set()
                elif text.startswith("p "):
                    w.s.pushes_received += 1
                    _record(w.h["push"], time.time() - float(text.split(" ", 3)[2]))
            if self.resume and self.cursor.get(self.conv, 0) >= self.resume[2]:
                self._resumed()
        elif t == "conv.state" and d.get("conv") == self.conv and d.get("state") == "closed":
            self.conv = ""  # the next message opens a new conversation

    def _resumed(self) -> None:
        down, back, _ = self.resume
        self.reconnects.append((down, back, time.time()))
        self.resume = []

    def _on_close(self, code: int, reason: str) -> None:
        w = self.w
        self.trail.append(f"{time.time() - w.start_at:.2f} close {code} up={self.up}")
        if self.up:
            self.up = False
            w.s.connected -= 1
            if not w.stopping:
                w.s.errors[f"close:{code}"] += 1
                self.down_at = time.time()
        self.lost_conn.set()

    async def connect(self) -> None:
        w, cfg = self.w, self.w.cfg
        if not self.token:
            self.token = await w.buyer_token(self)
        url = cfg.urls[self.url_i % len(cfg.urls)]
        cursors = {c: s for c, s in self.cursor.items()}
        local = cfg.local_addrs[self.idx % len(cfg.local_addrs)] if cfg.local_addrs else None
        auth = await self.conn.connect(url, self.token, cfg.connect_timeout, local, echo=cfg.echo,
                                       **({"cursors": cursors} if cursors else {}))
        self.id = auth.get("buyer", self.id)  # the server names HTTP-session buyers
        self.trail.append(f"{time.time() - w.start_at:.2f} connected {url} open={self.conn.open} down_at={self.down_at > 0}")
        self.lost_conn.clear()
        self.up = True
        w.s.connected += 1
        w.s.connected_peak = max(w.s.connected_peak, w.s.connected)
        if self.down_at:  # a reconnect: resumed once the cursor reaches what the stream held at this point
            w.s.reconnects += 1
            back = time.time()
            if self.conv:
                view = await self.conn.request("conv.get", conv=self.conv)
                self.resume = [self.down_at, back, int(view.get("seq", 0))]
                if self.cursor.get(self.conv, 0) >= self.resume[2]:
                    self._resumed()
            self.down_at = 0.0
        if not self.conv:
            await self.open_conv()
        for n, (cid, text, _) in sorted(self.unacked.items()):  # same cid: stored at most once (R17)
            w.s.resent += 1
            self._send(n, cid, text)

    async def open_conv(self) -> None:
        w = self.w
        to = w.cfg.members[self.idx % len(w.cfg.members)][0] if w.cfg.address and w.cfg.members else None
        view = await self.conn.request("conv.open", **({"to": to} if to else {}))
        self.conv = view["conv"]
        self.cursor.setdefault(self.conv, int(view.get("seq", 0)))
        if view.get("state") == "queued":
            w.s.convs_queued += 1
        else:
            w.s.convs_active += 1

    def send_next(self) -> None:
        n = self.n
        self.n += 1
        cid = f"k{n}"
        text = f"b {n} {time.time():.6f}" + (" " + "x" * self.w.cfg.size if self.w.cfg.size else "")
        self.unacked[n] = (cid, text, time.perf_counter())
        self.w.s.sent += 1
        self._send(n, cid, text)

    def _send(self, n: int, cid: str, text: str) -> None:
        w = self.w

        def reply(ok: bool, d: Any) -> None:
            ent = self.unacked.get(n)
            if ok:
                if d.get("echo") is False and not d.get("dup"):  # no msg event will follow: the reply is it
                    self._saw(d["conv"], int(d["seq"]))
                if ent is not None:
                    del self.unacked[n]
                    w.s.acked += 1
                    _record(w.h["ack"], time.perf_counter() - ent[2])
            elif d.get("code") != "closed":  # a dropped socket leaves it unacked: re-sent on resume
                self.unacked.pop(n, None)
                self.failed.add(n)
                w.s.failed += 1
                w.s.errors[d.get("code", "internal")] += 1
                if d.get("code") in ("conv_closed", "not_found"):
                    self.conv = ""
            self.answered.set()

        if not self.conv:
            # no open conversation (closed meanwhile): the server opens one for a send without conv
            self.conn.send("send", {"cid": cid, "text": text}, reply)
        else:
            self.conn.send("send", {"cid": cid, "text": text, "conv": self.conv}, reply)

    async def run(self, start_at: float) -> None:
        w, cfg = self.w, self.w.cfg
        await asyncio.sleep(max(0.0, start_at - time.time()))
        backoff = 0.2
        while not w.stopping:
            try:
                self.stage = "queued"
                async with w.connect_sem:
                    self.stage = "connecting"
                    await self.connect()
                self.stage = "up"
                backoff = 0.2
            except (TimeoutError, OSError, BotError, ConnectionError) as e:
                code = e.code if isinstance(e, BotError) else type(e).__name__
                w.s.connect_failures += 1
                w.s.errors[f"connect:{code}"] += 1
                self.conn.abort()
                if not cfg.reconnect or (isinstance(e, BotError) and e.code in ("unauthorized", "token_expired")):
                    return
                self.url_i += 1
                self.stage = "backoff"
                await asyncio.sleep(backoff * (0.5 + random.random()))  # jittered back-off: no thundering herd
                backoff = min(backoff * 2, 5.0)
                continue
            await self._send_loop()
            if w.stopping or not cfg.reconnect:
                return
            if (self.conn.close_code or 1006) not in RESUME_CLOSE:
                return  # 40xx: do not reconnect with the same credentials
            self.url_i += 1  # another node
            await asyncio.sleep(random.random() * 0.2)

    async def _send_loop(self) -> None:
        w, cfg = self.w, self.w.cfg
        rng = random.Random(self.idx)
        if cfg.rate > 0:
            period = 1.0 / cfg.rate
            nxt = time.monotonic() + rng.random() * period  # random phase: no synchronised bursts
            while self.conn.open and not w.stopping:
                delay = nxt - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.lost_conn.wait(), delay)
                    continue
                if time.time() >= w.stop_at:
                    break
                try:
                    self.send_next()  # left unacked if the socket is gone: re-sent with its cid on resume
                except ConnectionError:
                    break
                nxt += period
                if nxt < time.monotonic() - period:  # fell far behind (overload): don't burst to catch up
                    nxt = time.monotonic()
        elif cfg.think > 0:
            while self.conn.open and not w.stopping and time.time() < w.stop_at:
                self.answered.clear()
                try:
                    self.send_next()
                except ConnectionError:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.answered.wait(), 30)
                if cfg.reply:  # wait for the member's answer too
                    self.answered.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.answered.wait(), 30)
                await asyncio.sleep(rng.expovariate(1.0 / cfg.think))
        if self.conn.open:
            await self.lost_conn.wait()  # hold the connection until the end of the run


class MemberBot:
    """A bot member: online, takes conversations, checks each buyer's counter, optionally answers."""

    def __init__(self, w: Worker, idx: int, member: str, login: str) -> None:
        self.w, self.idx, self.member, self.login = w, idx, member, login
        self.conn = Conn(w.codec, self._on_event, self._on_close)
        self.held: list[str] = []
        self.next: dict[str, int] = {}              # buyer -> 1 + highest counter seen
        self.missing: dict[str, set[int]] = {}
        self.bucket = _Bucket()
        self.down = asyncio.Event()
        self.up = False
        self.k = 0

    def _count(self, frm: str, text: str, live: bool) -> int | None:
        """Check one buyer message's counter; returns it, or None for a duplicate."""
        w = self.w
        n = int(text.split(" ", 2)[1])
        nxt = self.next.get(frm, 0)
        if n == nxt:
            self.next[frm] = n + 1
        elif n > nxt:
            self.missing.setdefault(frm, set()).update(range(nxt, n))
            self.next[frm] = n + 1
        elif n in self.missing.get(frm, ()):
            self.missing[frm].discard(n)
            w.s.member_ooo += live  # a history backfill racing live messages is not a reordering
        else:
            w.s.member_dup += 1
            return None
        w.s.delivered += 1
        return n

    def _on_event(self, t: str, d: Any) -> None:
        w = self.w
        if t == "msg":
            text: str = d.get("text", "")
            if d.get("kind") != "buyer" or not text.startswith("b "):
                return
            n = self._count(d["from"], text, True)
            if n is None:
                return
            ts_s = text.split(" ", 3)[2]
            _record(w.h["deliver"], time.time() - float(ts_s))
            if w.cfg.reply and self.conn.open and not w.stopping:
                if self.bucket.take():
                    with contextlib.suppress(ConnectionError):  # gone meanwhile: the reply is skipped
                        self.conn.send("send", {"cid": f"r{d['from']}.{n}", "text": f"r {n} {ts_s}", "conv": d["conv"]},
                                       w.count_error)
                        w.s.replies_sent += 1
                else:
                    w.s.replies_skipped += 1
        elif t == "conv.assigned":
            self.held.append(d["conv"])
            if d.get("seq", 0) > 0:  # it waited in a queue, or came from another member: read what is stored
                asyncio.ensure_future(self._backfill(d["conv"], int(d["seq"])))
        elif t == "conv.removed":
            with contextlib.suppress(ValueError):
                self.held.remove(d["conv"])

    async def _backfill(self, conv: str, upto: int) -> None:
        after = 0
        with contextlib.suppress(BotError, ConnectionError):
            while after < upto:
                h = await self.conn.request("history", conv=conv, after=after, limit=200)
                for m in h["messages"]:
                    if m["seq"] <= upto and m["kind"] == "buyer" and m["text"].startswith("b "):
                        self._count(m["from"], m["text"], False)
                if not h.get("more") or not h["messages"]:
                    break
                after = h["messages"][-1]["seq"]

    def _on_close(self, code: int, reason: str) -> None:
        if self.up:
            self.up = False
            self.w.s.members_connected -= 1
            if not self.w.stopping:
                self.w.s.errors[f"member_close:{code}"] += 1
        self.down.set()

    async def run(self) -> None:
        w, cfg = self.w, self.w.cfg
        while not w.stopping:
            try:
                token = await w.member_token(self.member, self.login)
                # members sit on the node(s) buyers do not start on when first_url is set (failover tests)
                i = self.idx if cfg.first_url is None else cfg.first_url + 1
                await self.conn.connect(cfg.urls[i % len(cfg.urls)], token, cfg.connect_timeout, status="online")
                self.up = True
                w.s.members_connected += 1
                w.s.members_connected_peak = max(w.s.members_connected_peak, w.s.members_connected)
                self.down.clear()
                view = await self.conn.request("conv.list", state="active")
                self.held = [c["conv"] for c in view.get("convs", []) if c.get("kind") == "buyer"]
            except (TimeoutError, OSError, BotError, ConnectionError) as e:
                w.s.errors[f"member_connect:{e.code if isinstance(e, BotError) else type(e).__name__}"] += 1
                self.conn.abort()
                await asyncio.sleep(1.0)
                continue
            w.members_ready += 1
            if cfg.member_rate > 0:
                await self._push_loop()
            await self.down.wait()
            w.members_ready -= 1

    async def _push_loop(self) -> None:
        """Proactive member messages (e.g. to check replay to reconnecting buyers)."""
        w = self.w
        period = 1.0 / self.w.cfg.member_rate
        while self.conn.open and not w.stopping and time.time() < w.stop_at:
            await asyncio.sleep(period)
            if self.held and self.conn.open and self.bucket.take():
                conv = self.held[self.k % len(self.held)]
                self.k += 1
                try:
                    self.conn.send("send", {"cid": f"p{self.k}", "text": f"p {self.k} {time.time():.6f}", "conv": conv},
                                   w.count_error)
                except ConnectionError:
                    break
                w.s.pushes_sent += 1


# --------------------------------------------------------------------------- worker process


class Worker:
    def __init__(self, cfg: BotsConfig, wid: int, buyer_ids: list[int], members: list[tuple[str, str]],
                 start_at: float, stop_at: float, progress: Any) -> None:
        self.cfg, self.wid = cfg, wid
        self.codec = CODECS[cfg.codec]
        self.s = _Shared()
        self.h = {k: new_hist() for k in LATENCIES}
        self.start_at, self.stop_at = start_at, stop_at
        self.stopping = False
        self.progress = progress
        self.members_ready = 0
        self.connect_sem = asyncio.Semaphore(cfg.connect_concurrency)
        self.buyers = [Buyer(self, i) for i in buyer_ids]
        self.mbots = [MemberBot(self, i, m, login) for i, (m, login) in enumerate(members)]
        self._tokens: Any = None
        if cfg.token_secret:
            from kefu.server.auth import (
                Tokens,  # signing locally needs the server package (same distribution)
            )
            self._tokens = Tokens(cfg.token_secret, 24 * 3600, 24 * 3600)

    def count_error(self, ok: bool, d: Any) -> None:
        if not ok and d.get("code") != "closed":
            self.s.errors[d.get("code", "internal")] += 1

    async def buyer_token(self, b: Buyer) -> str:
        if self._tokens is not None:
            return str(self._tokens.buyer_token(self.cfg.seller, b.store, b.id))
        url = self.cfg.urls[b.url_i % len(self.cfg.urls)].rstrip("/") + "/api/buyer/session"
        return str((await ahttp("POST", url, {"seller": self.cfg.seller, "store": b.store}))["token"])

    async def member_token(self, member: str, login: str) -> str:
        if self._tokens is not None:
            return str(self._tokens.member_token(self.cfg.seller, member, 0))
        url = self.cfg.urls[0].rstrip("/") + "/api/login"
        return str((await ahttp("POST", url, {"login": login, "password": self.cfg.password}))["token"])

    def snapshot(self) -> dict[str, Any]:
        d = asdict(self.s)
        d["errors"] = dict(self.s.errors)
        d["wid"] = self.wid
        return d

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        cpu0 = time.process_time()
        tasks = [asyncio.create_task(m.run()) for m in self.mbots]
        # members first: buyers' conversations should find someone online
        deadline = time.time() + cfg.connect_timeout
        while self.members_ready < len(self.mbots) and time.time() < deadline:
            await asyncio.sleep(0.05)
        n_all = max(1, cfg.buyers)
        tasks += [asyncio.create_task(b.run(self.start_at + cfg.ramp * b.idx / n_all)) for b in self.buyers]
        reporter = asyncio.create_task(self._report())
        await asyncio.sleep(max(0.0, self.stop_at - time.time()))
        # drain: acknowledgements, then quiet (nothing delivered for a second) or the drain timeout
        end = time.time() + cfg.drain
        last, quiet_since = -1, time.time()
        while time.time() < end:
            busy = self.s.delivered + self.s.replies_received + self.s.acked + self.s.pushes_received
            if busy != last:
                last, quiet_since = busy, time.time()
            elif time.time() - quiet_since >= 1.0 and not any(b.unacked for b in self.buyers):
                break
            await asyncio.sleep(0.1)
        await self._verify()
        self.stopping = True
        for b in self.buyers:
            b.conn.close()
            b.lost_conn.set()
        for m in self.mbots:
            m.conn.close()
            m.down.set()
        await asyncio.wait(tasks, timeout=10)
        for t in tasks:
            t.cancel()
        reporter.cancel()
        self.s.unacked = sum(len(b.unacked) for b in self.buyers)
        behind = [b for b in self.buyers if b.resume or b.down_at]  # not back and caught up
        out = self.snapshot()
        out.update(
            cpu_s=time.process_time() - cpu0,
            hist={k: h.encode() for k, h in self.h.items()},
            # for the cross-process loss check: what each buyer had acknowledged / what members got
            expected={b.id: [b.n, sorted(b.failed | set(b.unacked))] for b in self.buyers},
            received={frm: [nxt, sorted(m.missing.get(frm, ()))] for m in self.mbots for frm, nxt in m.next.items()},
            reconnect_times=[r for b in self.buyers for r in b.reconnects],
            not_resumed=len(behind),
            # why: where each buyer not back yet is (stage/connection phase), e.g. {"connecting/auth": 1}
            straggler_trails=[b.trail for b in behind[:5]],
            stragglers=dict(collections.Counter(f"{b.stage}/{b.conn.phase}" + ("/resuming" if b.resume else "")
                                                for b in behind)),
        )
        return out

    async def _verify(self) -> None:
        """Buyers: compare what arrived with the conversation's stream (a gap the buyer may see is a loss)."""
        sem = asyncio.Semaphore(50)

        async def one(b: Buyer) -> None:
            if not b.conn.open or not b.cursor:
                return
            async with sem:
                for conv, cur in list(b.cursor.items()):
                    try:
                        view = await b.conn.request("conv.get", conv=conv)
                        final = int(view.get("seq", 0))
                        gaps = set(b.missing.get(conv, ())) | set(range(cur + 1, final + 1))
                        if gaps:  # notes are not for buyers: count only what history shows them
                            after = min(gaps) - 1
                            seen: set[int] = set()
                            while True:
                                h = await b.conn.request("history", conv=conv, after=after, limit=200)
                                seen |= {m["seq"] for m in h["messages"]}
                                if not h.get("more") or not h["messages"]:
                                    break
                                after = h["messages"][-1]["seq"]
                            self.s.seq_lost += len(gaps & seen)
                            self.s.notes_skipped += len(gaps - seen)
                    except (BotError, ConnectionError) as e:
                        self.s.errors[f"verify:{getattr(e, 'code', type(e).__name__)}"] += 1

        await asyncio.gather(*(one(b) for b in self.buyers))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.progress_every)
            with contextlib.suppress(Exception):
                self.progress.put(self.snapshot())


def _worker_main(cfg: BotsConfig, wid: int, buyer_ids: list[int], members: list[tuple[str, str]],
                 start_at: float, stop_at: float, progress: Any, out: Any) -> None:
    with contextlib.suppress(Exception):  # thousands of sockets: lift the soft fd limit to the hard one
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> dict[str, Any]:
        return await Worker(cfg, wid, buyer_ids, members, start_at, stop_at, progress).run()

    try:
        out.put(runner(main()))
    except BaseException:
        out.put({"error": traceback.format_exc(), "wid": wid})


# --------------------------------------------------------------------------- the run and its report


@dataclass
class Report:
    config: dict[str, Any]
    elapsed_s: float
    connections: dict[str, int]
    messages: dict[str, int]
    checks: dict[str, int]
    rates: dict[str, float]
    latency_ms: dict[str, dict[str, float]]
    errors: dict[str, int]
    resume: dict[str, Any]
    loadgen_cpu_s: float
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        c, m, k = self.connections, self.messages, self.checks
        lines = [
            f"kefu bots: {self.config['buyers']} buyers, {self.config['members']} bot members, "
            f"{len(self.config['urls'])} url(s), {self.config['procs']} process(es), {self.elapsed_s:.1f}s",
            f"connections  buyers {c['buyers_connected_peak']}/{c['buyers']} (failed attempts {c['connect_failures']}, "
            f"reconnects {c['reconnects']}), members {c['members_connected_peak']}/{c['members']}; "
            f"conversations active {c['convs_active']}, queued {c['convs_queued']}",
            f"messages     sent {m['sent']} acked {m['acked']} refused {m['failed']} unacked {m['unacked']} "
            f"re-sent {m['resent']} | delivered to members {m['delivered']} | replies {m['replies_sent']} sent, "
            f"{m['replies_received']} received, {m['replies_skipped']} skipped | pushes {m['pushes_sent']}/"
            f"{m['pushes_received']}",
            f"rates        sent {self.rates['sent_per_s']:,.0f}/s, delivered {self.rates['delivered_per_s']:,.0f}/s "
            f"(steady window)",
            f"checks       buyer→member lost {k['lost']} duplicated {k['duplicated']} out-of-order {k['out_of_order']}"
            f" | stream at buyers lost {k['seq_lost']} duplicated {k['seq_dup']} out-of-order {k['seq_ooo']}",
        ]
        for name, p in self.latency_ms.items():
            if p.get("count"):
                lines.append(f"latency {name:<9} p50 {p['p50']:.2f} p90 {p['p90']:.2f} p99 {p['p99']:.2f} "
                             f"p99.9 {p['p99.9']:.2f} max {p['max']:.2f} ms  (n={int(p['count'])})")
        if self.resume.get("reconnects"):
            r = self.resume
            lines.append(f"resume       {int(r['reconnects'])} reconnects: back within p50 {r['back_p50_s']:.2f}s "
                         f"max {r['back_max_s']:.2f}s, caught up max {r['resumed_max_s']:.2f}s; "
                         f"not resumed {int(r['not_resumed'])}")
        lines.append("errors       " + (", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"))
        lines.append(f"verdict      {'OK' if self.ok else 'FAILED'} (loadgen CPU {self.loadgen_cpu_s:.1f}s)")
        return "\n".join(lines)


def _split(n: int, procs: int) -> list[list[int]]:
    return [list(range(w, n, procs)) for w in range(procs)]


def run(cfg: BotsConfig, on_progress: Callable[[dict[str, Any]], None] | None = None,
        start_delay: float = 1.5) -> Report:
    """Run the bots in ``cfg.procs`` processes; ``on_progress(totals)`` each second (in this process)."""
    procs = max(1, cfg.procs)
    if not cfg.buyer_prefix:
        cfg.buyer_prefix = f"k{secrets.token_hex(3)}"
    ctx = mp.get_context("spawn")  # never fork a parent that may hold event loops or threads
    progress: Any = ctx.Queue()
    out: Any = ctx.Queue()
    # Spawned interpreters take a while to import; the schedule is absolute wall-clock time.
    start_at = time.time() + start_delay + 0.5 * procs
    stop_at = start_at + cfg.ramp + cfg.duration
    buyers = _split(cfg.buyers, procs)
    members = [cfg.members[w::procs] for w in range(procs)]
    workers = [ctx.Process(target=_worker_main, args=(cfg, w, buyers[w], members[w], start_at, stop_at, progress, out),
                           daemon=True, name=f"bots-{w}") for w in range(procs)]
    latest: dict[int, dict[str, Any]] = {}
    samples: list[tuple[float, dict[str, Any]]] = []
    results: list[dict[str, Any]] = []
    t0 = time.time()
    try:
        for p in workers:
            p.start()
        while len(results) < procs:
            try:
                results.append(out.get(timeout=0.2))
                if "error" in results[-1]:
                    break
            except queue_mod.Empty:
                if all(not p.is_alive() for p in workers) and out.empty():
                    break
            while True:
                try:
                    snap = progress.get_nowait()
                except queue_mod.Empty:
                    break
                latest[snap["wid"]] = snap
                tot = _totals(latest.values())
                samples.append((time.time(), tot))
                if on_progress is not None:
                    on_progress(tot)
    finally:
        for p in workers:
            p.join(timeout=15)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors or len(results) != procs:
        raise RuntimeError("bots failed:\n" + ("\n".join(errors) or "a worker died silently"))
    return _report(cfg, results, samples, start_at, stop_at, time.time() - t0)


_SUMMED = [f for f in _Shared.__dataclass_fields__ if f != "errors"]


def _totals(snaps: Any) -> dict[str, Any]:
    tot: dict[str, Any] = {f: 0 for f in _SUMMED}
    errs: Counter[str] = Counter()
    for s in snaps:
        for f in _SUMMED:
            tot[f] += s.get(f, 0)
        errs.update(s.get("errors", {}))
    tot["errors"] = dict(errs)
    tot["t"] = time.time()
    return tot


def _report(cfg: BotsConfig, results: list[dict[str, Any]], samples: list[tuple[float, dict[str, Any]]],
            start_at: float, stop_at: float, elapsed: float) -> Report:
    tot = _totals(results)
    hists = {k: new_hist() for k in LATENCIES}
    for r in results:
        for k, enc in r["hist"].items():
            hists[k].decode_and_add(enc)
    # buyer → member: every acknowledged counter must have reached a member exactly once
    received: dict[str, set[int]] = {}
    for r in results:
        for frm, (nxt, missing) in r["received"].items():
            received.setdefault(frm, set()).update(set(range(nxt)) - set(missing))
    lost = 0
    expect_members = bool(cfg.members)
    for r in results:
        for buyer, (n, unknown) in r["expected"].items():
            want = set(range(n)) - set(unknown)
            if expect_members:
                lost += len(want - received.get(buyer, set()))
    # steady rate: between the end of the ramp and the end of sending
    t1, t2 = start_at + cfg.ramp, stop_at
    win = [(t, s) for t, s in samples if t1 <= t <= t2 + 0.5]
    rates = {"sent_per_s": 0.0, "delivered_per_s": 0.0, "acked_per_s": 0.0}
    if len(win) >= 2:
        (ta, a), (tb, b) = win[0], win[-1]
        span = tb - ta
        if span > 0:
            rates = {"sent_per_s": (b["sent"] - a["sent"]) / span, "delivered_per_s": (b["delivered"] - a["delivered"]) / span,
                     "acked_per_s": (b["acked"] - a["acked"]) / span}
    rt = sorted(r for res in results for r in res["reconnect_times"])
    back = sorted(b - d for d, b, _ in rt)
    stragglers: collections.Counter[str] = collections.Counter()
    for r in results:
        stragglers.update(r.get("stragglers", {}))
    resume = {"reconnects": float(tot["reconnects"]), "not_resumed": float(sum(r["not_resumed"] for r in results)),
              "stragglers": dict(stragglers), "straggler_trails": [t for r in results for t in r.get("straggler_trails", [])][:5],
              "back_p50_s": back[len(back) // 2] if back else 0.0, "back_max_s": back[-1] if back else 0.0,
              "resumed_max_s": max((z - d for d, _, z in rt), default=0.0),
              "first_down": min((d for d, _, _ in rt), default=0.0), "last_back": max((b for _, b, _ in rt), default=0.0),
              "last_resumed": max((z for _, _, z in rt), default=0.0)}
    checks = {"lost": lost, "duplicated": tot["member_dup"], "out_of_order": tot["member_ooo"],
              "seq_lost": tot["seq_lost"], "seq_dup": tot["seq_dup"], "seq_ooo": tot["seq_ooo"],
              "notes_skipped": tot["notes_skipped"]}
    connections = {"buyers": cfg.buyers, "buyers_connected_peak": tot["connected_peak"], "members": len(cfg.members),
                   "members_connected_peak": tot["members_connected_peak"],
                   "connect_failures": tot["connect_failures"], "reconnects": tot["reconnects"],
                   "convs_active": tot["convs_active"], "convs_queued": tot["convs_queued"]}
    messages = {k: tot[k] for k in ("sent", "acked", "failed", "unacked", "resent", "delivered", "replies_sent",
                                     "replies_received", "replies_skipped", "pushes_sent", "pushes_received")}
    ok = (lost == 0 and all(checks[k] == 0 for k in ("duplicated", "out_of_order", "seq_lost", "seq_dup", "seq_ooo"))
          and tot["unacked"] == 0 and resume["not_resumed"] == 0)
    conf = {k: v for k, v in asdict(cfg).items() if k not in ("password", "token_secret", "members")}
    conf["members"] = len(cfg.members)
    return Report(config=conf, elapsed_s=elapsed, connections=connections, messages=messages, checks=checks,
                  rates=rates, latency_ms={k: percentiles(h) for k, h in hists.items()}, errors=dict(tot["errors"]),
                  resume=resume, loadgen_cpu_s=sum(r["cpu_s"] for r in results), ok=ok)


# --------------------------------------------------------------------------- setup


@dataclass
class Shop:
    seller: str
    stores: list[str]
    members: list[tuple[str, str]]  # (member id, login)
    password: str


async def setup_seller_redis(redis_url: str, *, stores: int = 1, members: int = 10, capacity: int = 50,
                             seller: str = "", password: str = "", policy: str = "redispatch") -> Shop:
    """A throw-away seller straight in Redis: one group ``bots`` serving every store, ``members``
    members of capacity ``capacity``. Password hashes are deliberately cheap (argon2 t=1, 64 KiB):
    load-test accounts only."""
    from kefu.server.accounts import Accounts
    from kefu.server.auth import Passwords
    from kefu.server.node import redis_client
    seller = seller or f"bots-{secrets.token_hex(4)}"
    password = password or secrets.token_urlsafe(12)
    r = redis_client(redis_url, decode=True)
    try:
        acc = Accounts(r, Passwords(1, 64))
        await acc.create_seller(seller, password, quota=members + 10)
        await acc.update_seller(seller, policy=policy)  # R15: "wait" keeps an offline member's chats
        await acc.create_group(seller, "bots")
        names = [f"st{i}" for i in range(stores)]
        for st in names:
            await acc.create_store(seller, st, st, ["bots"])
        mids = [f"m{i}" for i in range(members)]
        for mid in mids:  # one at a time: create_member WATCHes the member set (quota check)
            await acc.create_member(seller, mid, password, groups=["bots"], capacity=capacity)
        await acc.recompute_all(seller)
    finally:
        await r.aclose()
    return Shop(seller, names, [(m, f"{seller}:{m}") for m in mids], password)


async def setup_seller_admin(base: str, login: str, password: str, *, stores: int = 1, members: int = 10,
                             capacity: int = 50) -> Shop:
    """The same through the admin HTTP API, as the seller's main account (needs ``manage``)."""
    tok = (await ahttp("POST", base + "/api/login", {"login": login, "password": password}))["token"]
    seller = login.split(":", 1)[0]
    tag = secrets.token_hex(3)
    info = await ahttp("GET", base + "/api/admin/members", token=tok)
    need = len(info["members"]) + members
    if need > int(info.get("quota", 0)):
        await ahttp("PATCH", base + "/api/admin/seller", {"quota": need + 1}, token=tok)
    group = f"bots{tag}"
    await ahttp("POST", base + "/api/admin/groups", {"group": group, "name": "load test"}, token=tok)
    names = [f"bst{tag}{i}" for i in range(stores)]
    for st in names:
        await ahttp("POST", base + "/api/admin/stores", {"store": st, "groups": [group]}, token=tok)
    pw = secrets.token_urlsafe(12)
    mids = [f"bm{tag}{i}" for i in range(members)]
    for m in mids:
        await ahttp("POST", base + "/api/admin/members", {"member": m, "password": pw, "groups": [group],
                                                           "capacity": capacity}, token=tok)
    return Shop(seller, names, [(m, f"{seller}:{m}") for m in mids], pw)


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kefu bots", description="Load-test kefu with synthetic buyers and bot members.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", action="append", default=[], help="kefu base URL (repeat to spread over nodes)")
    p.add_argument("--buyers", type=int, default=100)
    p.add_argument("--members", type=int, default=10, help="bot members (with --setup-redis / --admin-login)")
    p.add_argument("--stores", type=int, default=1, help="stores to create (setup modes)")
    p.add_argument("--capacity", type=int, default=0, help="members' capacity (setup modes; 0: enough for all buyers)")
    p.add_argument("--rate", type=float, default=0.2, help="messages per second per buyer (open loop)")
    p.add_argument("--think", type=float, default=0.0, help="closed loop instead: mean seconds between answer and next message")
    p.add_argument("--size", type=int, default=0, help="padding characters per message")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which buyers connect")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of sending after the ramp")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for late deliveries")
    p.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="worker processes")
    p.add_argument("--codec", choices=sorted(CODECS), default="msgpack")
    p.add_argument("--reply", action="store_true", help="bot members answer every buyer message")
    p.add_argument("--member-rate", type=float, default=0.0, help="bot members also send N msg/s each")
    p.add_argument("--address", action="store_true", help="buyer i addresses bot member i %% M by name (R12.1)")
    p.add_argument("--no-reconnect", action="store_true")
    p.add_argument("--no-echo", action="store_true", help="buyers take their own messages from the send reply")
    p.add_argument("--source-ip", action="append", default=[], help="local addresses to spread sockets over")
    g = p.add_argument_group("seller")
    g.add_argument("--seller", help="an existing seller")
    g.add_argument("--store", action="append", default=[], help="its store(s) buyers talk to")
    g.add_argument("--member-login", action="append", default=[], help="existing member logins seller:m (bot members)")
    g.add_argument("--password", default="", help="their password")
    g.add_argument("--setup-redis", metavar="URL", help="create a throw-away seller directly in this Redis")
    g.add_argument("--admin-login", help="create stores/members through the admin API as this account")
    g.add_argument("--admin-password", default="")
    g.add_argument("--token-secret", default=os.environ.get("KEFU_SECRET", ""),
                   help="sign tokens locally with the server's secret instead of logging in [KEFU_SECRET]")
    o = p.add_argument_group("output")
    o.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write the report as JSON (- = stdout)")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    a = p.parse_args(list(argv))
    if not a.url:
        p.error("give at least one --url")
    if not (a.seller or a.setup_redis or a.admin_login):
        p.error("give --seller/--store, --setup-redis URL or --admin-login")
    if a.rate > 40:
        p.error("--rate above 40/s per buyer hits the server's per-connection limit (50/s): use more buyers")
    return a


def _progress_printer(quiet: bool, stream: Any) -> Callable[[dict[str, Any]], None]:
    last: dict[str, Any] = {}
    tty = stream.isatty()

    def show(tot: dict[str, Any]) -> None:
        if quiet:
            return
        dt = tot["t"] - last.get("t", tot["t"] - 1) or 1
        line = (f"connected {tot['connected']:>6} members {tot['members_connected']:>3} | sent "
                f"{(tot['sent'] - last.get('sent', 0)) / dt:>8,.0f}/s delivered "
                f"{(tot['delivered'] - last.get('delivered', 0)) / dt:>8,.0f}/s acked {tot['acked']:>9,} | errors "
                f"{sum(tot['errors'].values()):>5}")
        stream.write(("\r" + line) if tty else line + "\n")
        stream.flush()
        last.update(tot)

    return show


def main(args: list[str]) -> None:
    a = parse_args(args)
    urls = [u.rstrip("/") for u in a.url]
    cap = a.capacity or max(5, math.ceil(a.buyers / max(1, a.members)) + 5)
    if a.setup_redis:
        shop = asyncio.run(setup_seller_redis(a.setup_redis, stores=a.stores, members=a.members, capacity=cap))
        print(f"created seller {shop.seller}: {len(shop.stores)} store(s), {len(shop.members)} members "
              f"(capacity {cap})", file=sys.stderr)
    elif a.admin_login:
        shop = asyncio.run(setup_seller_admin(urls[0], a.admin_login, a.admin_password, stores=a.stores,
                                              members=a.members, capacity=cap))
        print(f"created {len(shop.stores)} store(s) and {len(shop.members)} members at {shop.seller}", file=sys.stderr)
    else:
        if not a.store:
            raise SystemExit("kefu bots: --seller needs --store")
        mem = [(login.split(":", 1)[1] if ":" in login else login, login) for login in a.member_login]
        shop = Shop(a.seller, a.store, mem, a.password)
    cfg = BotsConfig(urls=urls, seller=shop.seller, stores=shop.stores, buyers=a.buyers, members=shop.members,
                     password=shop.password, token_secret=a.token_secret, codec=a.codec, rate=a.rate if not a.think else 0,
                     think=a.think, size=a.size, ramp=a.ramp, duration=a.duration, drain=a.drain, procs=a.procs,
                     reply=a.reply, member_rate=a.member_rate, address=a.address, reconnect=not a.no_reconnect, echo=not a.no_echo,
                     local_addrs=a.source_ip)
    rep = run(cfg, _progress_printer(a.quiet, sys.stderr))
    if not a.quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    if a.json == "-":
        print(json.dumps(rep.as_dict(), indent=2))
    else:
        print(rep.text())
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rep.as_dict(), f, indent=2)
    if not rep.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
