"""One WebSocket: identity, a bounded outbound queue, and per-conversation delivery cursors.

Cursors make delivery exactly-once and in order per connection (R17): an event whose seq is the
next one is sent; an older one is a duplicate and dropped; a newer one means something was missed
(pub/sub is at-most-once), so the gap is read back from the conversation's stream first.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from redis.exceptions import RedisError

from kefu.protocol.codec import Codec
from kefu.protocol.errors import CloseCode

from .storage.keys import SellerKeys
from .wire import open_for_writes, wire_of, write

if TYPE_CHECKING:
    from .accounts import Member
    from .node import Node

log = logging.getLogger("kefu.conn")
_EMPTY: deque[bytes] = deque(maxlen=0)  # shared placeholder queue of connections that sent nothing yet
_tasks: set[asyncio.Task[Any]] = set()


def spawn(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    """A fire-and-forget task that is kept referenced and whose failure is logged."""
    t = asyncio.ensure_future(coro)
    _tasks.add(t)
    t.add_done_callback(_done)
    return t


def _done(t: asyncio.Task[Any]) -> None:
    _tasks.discard(t)
    if not t.cancelled() and t.exception() is not None:
        log.error("task failed", exc_info=t.exception())


class Connection:
    __slots__ = ("node", "codec", "_send", "_close", "id", "kind", "seller", "user", "store", "member",
                 "cursors", "_q", "_flushing", "closed", "_filling", "qpos", "channels", "tokens",
                 "last_refill", "bad_frames", "version", "watch", "_room", "_pre", "echo", "own_cid", "own_held", "_held", "_wire", "__weakref__")

    def __init__(self, node: "Node", codec: Codec, send: Callable[[dict[str, Any]], Awaitable[None]],
                 close: Callable[[int, str], Awaitable[None]], conn_id: str) -> None:
        self.node = node
        self.codec = codec
        self._send = send
        self._wire = wire_of(send)     # uvicorn's protocol: frames go straight to its transport (wire.py)
        self._close = close
        self.id = conn_id
        self.kind = ""                 # "member" | "buyer" once authenticated
        self.seller = ""
        self.user = ""
        self.store = ""
        self.member: "Member | None" = None
        self.version = 0
        self.cursors: dict[str, int] = {}
        self._q: deque[bytes] = _EMPTY  # a real deque on the first push: idle sockets stay small
        self._flushing = False
        self.closed = False
        self._filling: dict[str, list[dict[str, Any]]] = {}
        self.qpos: dict[str, list[Any]] = {}   # buyers: conv -> [queue, position, version]
        self.channels: list[str] = []
        self.tokens = node.settings.burst
        self.last_refill = time.monotonic()
        self.bad_frames = 0
        self.watch = False             # a dashboard-only connection: no presence, no chats
        self.echo = True               # False: the sender's own messages are not sent back as events
        self.own_cid: str | None = None  # echo off: the cid of our send in flight (one at a time)
        self.own_held = False            # ... whose event came before its reply and was swallowed
        self._held: list[dict[str, Any]] | None = None  # events after it, until the reply is out
        self._room: asyncio.Event | None = None  # set by the flusher when the queue has room again
        self._pre: list[dict[str, Any]] | None = []  # messages that arrive before the resume cursors are set

    # ---- outbound -------------------------------------------------------------------------
    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(self._q) >= self.node.settings.send_queue:
            self.node.metrics.slow_consumers += 1
            self.node.metrics.dropped_frames += len(self._q) + 1
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume")
            return
        self.node.metrics.frames_out += 1
        if not self._flushing and self._wire is not None and open_for_writes(self._wire):
            try:  # nothing queued: out now, no task and no loop turn in between (wire.py)
                write(self._wire, frame, self.codec.binary)
            except Exception as e:
                log.debug("write failed on %s: %r", self.id, e)
                self.closed = True
            return
        if self._q is _EMPTY:
            self._q = deque()
        self._q.append(frame)
        if not self._flushing:
            self._flushing = True
            spawn(self._flush())  # not writable now (paused by a slow reader, closing) or not uvicorn's

    async def _flush(self) -> None:
        key = "text" if not self.codec.binary else "bytes"
        try:
            while self._q and not self.closed:
                f = self._q.popleft()
                await self._send({"type": "websocket.send", key: f.decode() if key == "text" else f})
                if self._room is not None and len(self._q) <= self.node.settings.send_queue // 4:
                    self._room.set()
            if not self._q:
                self._q = _EMPTY  # drained: an idle socket keeps no deque
        except Exception as e:
            log.debug("send failed on %s: %r", self.id, e)
            self.closed = True
        finally:
            self._flushing = False
            if self._room is not None:
                self._room.set()

    async def room(self, timeout: float = 30) -> None:
        """Backpressure for bulk replays: wait until the outbound queue is half empty."""
        limit = self.node.settings.send_queue // 2
        while len(self._q) >= limit and not self.closed:
            self._room = asyncio.Event()
            try:
                await asyncio.wait_for(self._room.wait(), timeout)
            except asyncio.TimeoutError:
                self.node.metrics.slow_consumers += 1
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume")
            finally:
                self._room = None

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._q = _EMPTY
        spawn(self._close(code, reason))

    def event(self, typ: str, data: Any) -> None:
        self.push(self.codec.event(typ, data))

    # ---- inbound events (from the hub) ---------------------------------------------------
    def on_event(self, typ: str, d: dict[str, Any], cache: dict[str, bytes]) -> None:
        if self.closed:
            return
        if typ == "msg":
            self._on_msg(d, cache)
            return
        if typ == "conv.assigned":
            self.cursors[d["conv"]] = d["seq"]
        elif typ == "conv.removed":
            self.cursors.pop(d["conv"], None)
        elif typ == "conv.state" and self.kind == "buyer":
            conv = d["conv"]
            if d["state"] == "queued":
                q = d.get("queue", "")
                self.qpos[conv] = [q, d.get("position", 0), d.get("ver", 0)]
                if SellerKeys(self.seller).ch_queue(q) not in self.channels:
                    spawn(self._follow_queue(conv, q))  # queued again (group transfer, re-dispatch)
            else:
                self.qpos.pop(conv, None)
            self.push(self.codec.event(typ, {k: v for k, v in d.items() if k not in ("queue", "ver")}))
            return
        elif typ == "queue.moved":
            self._on_queue_moved(d)
            return
        elif typ == "kick":
            self.close(CloseCode.KICKED, d.get("reason", "signed out"))
            return
        frame = cache.get(self.codec.name)
        if frame is None:
            frame = cache[self.codec.name] = self.codec.event(typ, d)
        self.push(frame)

    def first_pending(self, conv: str) -> int | None:
        """The lowest seq of ``conv`` that arrived live before the resume cursors were set."""
        seqs = [d["seq"] for d in self._pre or () if d["conv"] == conv]
        return min(seqs) if seqs else None

    def resumed(self) -> None:
        """The cursors are set: handle what arrived meanwhile, in order."""
        pre, self._pre = self._pre, None
        for d in pre or ():
            self._on_msg(d, None)

    def replied(self) -> None:
        """The reply to a send is out: what was held behind our own message follows it, in order."""
        held, self._held = self._held, None
        self.own_cid, self.own_held = None, False
        for d in held or ():
            self._on_msg(d, None)

    def _on_msg(self, d: dict[str, Any], cache: dict[str, bytes] | None) -> None:
        if self._pre is not None:
            self._pre.append(d)
            return
        if self._held is not None:
            self._held.append(d)
            return
        conv, seq = d["conv"], d["seq"]
        pending = self._filling.get(conv)
        if pending is not None:
            pending.append(d)
            return
        cur = self.cursors.get(conv)
        if cur is not None and seq <= cur:
            return  # duplicate
        if cur is not None and seq > cur + 1:
            self._filling[conv] = [d]
            spawn(self._fill(conv))
            return
        self.cursors[conv] = seq
        if self.own_cid is not None and d["cid"] == self.own_cid and d["from"] == self.user:
            self.own_held, self._held = True, []  # the send reply will carry it; hold what follows
            return
        if self.kind == "buyer" and d["kind"] == "note":
            return  # internal system notes are for members only
        if cache is None:
            self.push(self.codec.event("msg", d))
            return
        frame = cache.get(self.codec.name)
        if frame is None:
            frame = cache[self.codec.name] = self.codec.event("msg", d)
        self.push(frame)

    async def _fill(self, conv: str) -> None:
        """Read what this connection missed from the stream, in order, then what queued meanwhile."""
        try:
            while True:
                cur = self.cursors.get(conv, 0)
                msgs = await self._read_after(conv, cur)
                for m in msgs:
                    await self.room()
                    if self.closed:
                        return
                    if m["seq"] > self.cursors.get(conv, 0):
                        self.cursors[conv] = m["seq"]
                        if not (self.kind == "buyer" and m["kind"] == "note"):
                            self.push(self.codec.event("msg", m))
                if len(msgs) < 500:
                    break
        except Exception as e:
            log.warning("gap fill failed for %s: %s", conv, e)
        finally:
            for d in self._filling.pop(conv, []):
                self._on_msg(d, None)

    async def _read_after(self, conv: str, cur: int) -> list[dict[str, Any]]:
        for attempt in range(5):  # the stream is the truth: keep trying through a Redis blip
            try:
                return await self.node.conversations.read_after(self.seller, conv, cur, 500)
            except (ConnectionError, OSError, RedisError):
                if attempt == 4 or self.closed:
                    raise
                await asyncio.sleep(0.1 * 2 ** attempt)  # back-off before a retry
        return []

    def resync(self) -> None:
        """After a pub/sub outage: fetch everything after each cursor."""
        for conv in list(self.cursors):
            if conv not in self._filling:
                self._filling[conv] = []
                spawn(self._fill(conv))

    def _on_queue_moved(self, d: dict[str, Any]) -> None:
        for conv, st in self.qpos.items():
            q, pos, ver = st
            if q != d["queue"] or d["ver"] <= ver:
                continue
            if d["ver"] == ver + 1:
                st[2] = d["ver"]
                if 0 <= d["rank"] < pos - 1:
                    st[1] = pos - 1
                    self.event("queue.position", {"conv": conv, "position": pos - 1})
            else:
                spawn(self._requeue(conv))

    async def _follow_queue(self, conv: str, queue: str) -> None:
        """Subscribe to a queue's moves, then read the position afresh (moves before it are in it)."""
        ch = SellerKeys(self.seller).ch_queue(queue)
        if ch not in self.channels:
            self.channels.append(ch)
            await self.node.hub.subscribe(self, ch)
        await self._requeue(conv, force=True)

    async def _requeue(self, conv: str, force: bool = False) -> None:
        st = self.qpos.get(conv)
        if st is None:
            return
        pos, ver = await self.node.dispatcher.position(self.seller, st[0], conv)
        if pos and conv in self.qpos:
            changed = force or pos != st[1]
            self.qpos[conv] = [st[0], pos, ver]
            if changed:
                self.event("queue.position", {"conv": conv, "position": pos})

    # ---- rate limit ----------------------------------------------------------------------
    def allow(self) -> bool:
        now = time.monotonic()
        s = self.node.settings
        self.tokens = min(s.burst, self.tokens + (now - self.last_refill) * s.rate)
        self.last_refill = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
