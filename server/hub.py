"""Who is connected to this node, and the one pub/sub connection that feeds them.

Redis pub/sub only wakes nodes up; messages are already stored when published (persist, then
publish). Each event is decoded once here and encoded at most once per codec, and the same bytes
are handed to every local recipient.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("kefu.hub")
_decode = msgspec.msgpack.Decoder().decode


class Hub:
    def __init__(self, r: Redis, node_channel: str) -> None:
        self.r = r
        self.subs: dict[bytes, "Connection | set[Connection]"] = {}  # channel -> its local socket(s)
        self.conns: set["Connection"] = set()
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._node_channel = node_channel.encode()
        self._ps = r.pubsub()
        self._task: asyncio.Task[None] | None = None
        self.on_reconnect: list[Any] = []
        self.on_node_event: Any = None
        self._awaiting: set[bytes] | None = None  # after a reconnect: confirmations still to come
        self.received = 0
        self.delivered = 0

    async def start(self) -> None:
        await self._ps.subscribe(self._node_channel)
        self._task = asyncio.create_task(self._run(), name="hub-reader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self._ps.aclose()
        except Exception:
            pass

    async def subscribe(self, conn: "Connection", channel: str) -> None:
        """Subscribe ``conn`` and return once Redis confirmed the subscription (no message falls between)."""
        ch = channel.encode()
        s = self.subs.get(ch)
        if s is not None:
            if isinstance(s, set):
                s.add(conn)
            elif s is not conn:
                self.subs[ch] = {s, conn}
            fut = self._pending.get(ch)
        else:
            self.subs[ch] = conn  # most channels have one socket: no set for them (memory per idle buyer)
            fut = asyncio.get_running_loop().create_future()
            self._pending[ch] = fut
            await self._ps.subscribe(ch)
        if fut is not None and not fut.done():
            await asyncio.wait_for(asyncio.shield(fut), 10)

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
            self._pending.pop(ch, None)
            try:
                await self._ps.unsubscribe(ch)
            except (RedisConnectionError, RedisTimeoutError):
                pass

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                async for m in self._ps.listen():
                    backoff = 0.05
                    t = m["type"]
                    if t == b"message" or t == "message":
                        self._on_message(m["channel"], m["data"])
                    elif t == b"subscribe" or t == "subscribe":
                        fut = self._pending.pop(m["channel"], None)
                        if fut is not None and not fut.done():
                            fut.set_result(None)
                        if self._awaiting is not None:
                            self._awaiting.discard(m["channel"])
                            if not self._awaiting:
                                # subscribed again everywhere: now read back what was published meanwhile
                                self._awaiting = None
                                for cb in self.on_reconnect:
                                    cb()
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                log.warning("pub/sub connection lost (%s); resubscribing", e)
                await asyncio.sleep(backoff)  # retry back-off, not synchronisation
                backoff = min(backoff * 2, 2.0)
                try:
                    await self._resubscribe()
                except Exception as e2:  # Redis still down: loop and retry
                    log.warning("resubscribe failed: %s", e2)
                    continue

    async def _resubscribe(self) -> None:
        try:
            await self._ps.aclose()
        except Exception:
            pass
        self._ps = self.r.pubsub()
        chans = [self._node_channel, *self.subs.keys()]
        self._awaiting = set(chans)
        await self._ps.subscribe(*chans)

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
