"""Who is connected to this node, and the one pub/sub connection that feeds them.

Redis pub/sub only wakes nodes up; messages are already stored when published (persist, then
publish). Each event is decoded once here and encoded at most once per codec, and the same bytes
are handed to every local recipient.

The subscriber is a ``Resp`` connection (storage/resp.py): hiredis parses, and each
``[b"message", channel, data]`` goes straight to ``_on_message`` — redis-py's pub/sub reader cost
~10% of a busy node's CPU. When it drops: back off, reconnect, resubscribe every channel, and only
once every subscription is confirmed run ``on_reconnect`` (read back what was published meanwhile).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from .storage.resp import Resp, RespConn

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("kefu.hub")
_decode = msgspec.msgpack.Decoder().decode
HEALTH_INTERVAL = 10.0  # an idle subscriber is PINGed; no byte for two more intervals: the link is dead


class Hub:
    def __init__(self, redis_url: str, node_channel: str) -> None:
        # the subscriber: a resp.py connection (hiredis), every reply handed to _on_push as parsed
        self.sub = Resp(redis_url, push=self._on_push)
        self.subs: dict[bytes, "Connection | set[Connection]"] = {}  # channel -> its local socket(s)
        self.conns: set["Connection"] = set()
        # per channel, the SUBSCRIBEs sent and not yet confirmed, in order: Redis confirms each one, so
        # the n-th confirmation answers the n-th SUBSCRIBE (after a quick unsubscribe/subscribe, the
        # first confirmation must not release the second subscriber early)
        self._pending: dict[bytes, deque[list[asyncio.Future[None]]]] = {}
        self._node_channel = node_channel.encode()
        self._task: asyncio.Task[None] | None = None
        self.on_reconnect: list[Any] = []
        self.on_node_event: Any = None
        self._awaiting: set[bytes] | None = None  # after a reconnect: confirmations still to come
        self.received = 0
        self.delivered = 0

    async def start(self) -> None:
        await self.sub.connect()
        fut = self._expect(self._node_channel)
        self.sub.write("SUBSCRIBE", self._node_channel)
        await asyncio.wait_for(fut, 10)
        self._task = asyncio.create_task(self._run(), name="hub-reader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self.sub.aclose()

    async def subscribe(self, conn: "Connection", channel: str) -> None:
        """Subscribe ``conn`` and return once Redis confirmed the subscription (no message falls between)."""
        ch = channel.encode()
        s = self.subs.get(ch)
        fut: asyncio.Future[None] | None = None
        if s is not None:
            if isinstance(s, set):
                s.add(conn)
            elif s is not conn:
                self.subs[ch] = {s, conn}
            waiting = self._pending.get(ch)
            if waiting:  # its SUBSCRIBE is on its way: wait for the same confirmation
                fut = asyncio.get_running_loop().create_future()
                waiting[-1].append(fut)
        else:
            self.subs[ch] = conn  # most channels have one socket: no set for them (memory per idle buyer)
            fut = self._expect(ch)
            # not connected: the reconnect subscribes every channel of self.subs, and confirms this one
            self.sub.write("SUBSCRIBE", ch)
        if fut is not None and not fut.done():
            await asyncio.wait_for(asyncio.shield(fut), 10)

    def _expect(self, ch: bytes) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(ch, deque()).append([fut])
        return fut

    async def unsubscribe(self, conn: "Connection", channel: str) -> None:
        ch = channel.encode()
        s = self.subs.get(ch)
        if s is None:
            return
        if isinstance(s, set):
            s.discard(conn)
            if len(s) == 1:
                self.subs[ch] = next(iter(s))
            return
        if s is conn:
            del self.subs[ch]
            self.sub.write("UNSUBSCRIBE", ch)  # not connected: the reconnect will not subscribe it again

    def _on_push(self, m: Any) -> None:
        """Every reply of the subscriber connection, as hiredis parsed it (bytes, not decoded)."""
        try:
            kind = m[0]
        except (TypeError, IndexError, KeyError):
            log.warning("unexpected reply on the pub/sub connection: %r", m)
            return
        if kind == b"message":
            self._on_message(m[1], m[2])
        elif kind == b"subscribe":
            ch = m[1]
            waiting = self._pending.get(ch)
            if waiting:
                for fut in waiting.popleft():
                    if not fut.done():
                        fut.set_result(None)
                if not waiting:
                    del self._pending[ch]
            if self._awaiting is not None:
                self._awaiting.discard(ch)
                if not self._awaiting:
                    # subscribed again everywhere: now read back what was published meanwhile
                    self._awaiting = None
                    for cb in self.on_reconnect:
                        cb()

    async def _run(self) -> None:
        """Watch the subscriber; when it drops: back off, reconnect, resubscribe everything."""
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while True:
            c = self.sub.conn
            if c is not None:
                since = loop.time()
                await self._watch(c)
                log.warning("pub/sub connection lost (%s); resubscribing", c.error)
                if loop.time() - since > 2.0:
                    backoff = 0.05  # it had been up a while: a fresh outage
            await asyncio.sleep(backoff)  # retry back-off, not synchronisation
            backoff = min(backoff * 2, 2.0)
            try:
                await self._resubscribe()
            except Exception as e:  # Redis still down: loop and retry
                log.warning("resubscribe failed: %s", e)

    async def _watch(self, c: RespConn) -> None:
        """Return when ``c`` is lost; PING it when idle, and drop it if even that gets no answer."""
        seen, pinged = -1, False
        while not c.lost.done():
            await asyncio.wait({c.lost}, timeout=HEALTH_INTERVAL)
            if c.lost.done():
                return
            if c.received != seen:
                seen, pinged = c.received, False
            elif not pinged:
                pinged = c.write(b"*1\r\n$4\r\nPING\r\n")  # answered [b"pong", b""] in subscriber mode
            else:
                c.abort("no answer to PING on the pub/sub connection")
                await c.lost

    async def _resubscribe(self) -> None:
        await self.sub.connect()
        chans = [self._node_channel, *self.subs.keys()]
        # what the lost connection never confirmed is answered by this one SUBSCRIBE per channel
        pending, self._pending = self._pending, {}
        for ch, waiting in pending.items():
            futs = [f for group in waiting for f in group]
            if ch in self.subs or ch == self._node_channel:
                self._pending[ch] = deque([futs])
            else:
                for f in futs:  # unsubscribed meanwhile: nobody waits for it any more
                    if not f.done():
                        f.set_result(None)
        self._awaiting = set(chans)
        self.sub.write("SUBSCRIBE", *chans)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        self.received += 1
        conns = self.subs.get(channel)
        if not conns:
            if channel == self._node_channel and self.on_node_event:
                self.on_node_event(_decode(data))
            return
        try:
            ev = _decode(data)
            typ, d = ev["type"], ev["data"]
        except (msgspec.DecodeError, KeyError, TypeError):
            log.error("undecodable event on %r", channel)
            return
        cache: dict[str, bytes] = {}
        if isinstance(conns, set):
            for c in tuple(conns):
                c.on_event(typ, d, cache)
            self.delivered += len(conns)
        else:
            conns.on_event(typ, d, cache)
            self.delivered += 1
