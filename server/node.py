"""One kefu node: its Redis clients, scripts, hub and services, and its background duties.

Nodes are stateless apart from their open sockets: everything else is in Redis, so any number
of nodes can share one Redis behind a plain load balancer.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from typing import Any

import msgspec
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from .accounts import Accounts
from .auth import Passwords, Tokens
from .connection import Connection, spawn
from .conversations import Conversations
from .dispatcher import Dispatcher
from .hub import Hub
from .metrics import Metrics
from .presence import Presence
from .settings import Settings
from .storage import keys as K
from .storage.keys import SellerKeys
from .storage.resp import Resp
from .storage.scripts import Scripts
from .watchdog import Watchdog

log = logging.getLogger("kefu.node")
_pack = msgspec.msgpack.Encoder().encode


def redis_client(url: str, decode: bool, max_connections: int = 64) -> Redis:
    # Retry on a dropped connection (a Redis restart): every write is idempotent or refused on replay.
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), 6)
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10,
                                           decode_responses=decode, health_check_interval=30, retry=retry,
                                           retry_on_error=[RedisConnectionError, RedisTimeoutError])
    return Redis(connection_pool=pool)


NODES: list["Node"] = []  # the nodes of this process (one), for the server's shutdown hook


class Node:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.id = settings.node_id
        self.redis_url = redis_url
        self.r = redis_client(redis_url, decode=True)
        self.metrics = Metrics()
        # the scripts' own connection (resp.py, hiredis): background commands never queue ahead of the hot path
        self.rs = Resp(redis_url, decode=True)
        self.scripts = Scripts(self.rs, self.metrics.redis_call)
        self.passwords = Passwords(settings.argon2_time, settings.argon2_memory)
        self.accounts = Accounts(self.r, self.passwords)
        self.hub = Hub(redis_url, f"kefu:node:{self.id}:ch")
        self.presence = Presence(self)
        self.dispatcher = Dispatcher(self)
        self.conversations = Conversations(self)
        self.tokens: Tokens | None = None
        self._tick: asyncio.Task[None] | None = None
        self.ready = False
        self.clock_offset_ms = 0
        self.frozen_ms: int | None = None  # tests only (settings.test_clock): a stopped clock
        self.watchdog = Watchdog(self.metrics, settings.stall_trace_ms)

    def now_ms(self) -> int:
        if self.frozen_ms is not None:
            return self.frozen_ms
        return int(time.time() * 1000) + self.clock_offset_ms

    def pack_event(self, typ: str, data: Any) -> bytes:
        return _pack({"type": typ, "data": data})

    async def start(self) -> None:
        await self.r.ping()
        secret = self.settings.secret
        if not secret:  # one signing key shared by every node on this Redis
            await self.r.set(K.SECRET, secrets.token_urlsafe(48), nx=True)
            secret = await self.r.get(K.SECRET)
        self.tokens = Tokens(secret, self.settings.token_ttl, self.settings.buyer_token_ttl)
        await self.hub.start()
        self.hub.on_reconnect.append(self._resync)
        await self.presence.tick()
        self._tick = asyncio.create_task(self._ticker(), name="node-tick")
        # Latency: full cyclic-GC passes over a big heap stalled the loop 100+ ms (bench/RESULTS.md).
        # Start-up objects are frozen out of collection; young collections run less often.
        if self.settings.gc_tune:
            gc.freeze()
            gc.set_threshold(50_000, 50, 100)
        self.watchdog.start()
        self.ready = True
        NODES.append(self)
        log.info("node %s up on %s", self.id, self.redis_url)

    def _resync(self) -> None:
        for c in tuple(self.hub.conns):
            c.resync()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)  # a periodic duty, not synchronisation
            try:
                await self.presence.tick()
                self._expire_members()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("tick failed: %s", e)

    def _expire_members(self) -> None:
        now = self.now_ms()
        for c in tuple(self.hub.conns):
            if c.member is not None and c.member.expired(now):
                c.close(4003, "account expired")

    async def stop(self) -> None:
        self.ready = False
        self.watchdog.stop()
        if self._tick:
            self._tick.cancel()
            try:
                await self._tick
            except (asyncio.CancelledError, Exception):
                pass
        await self.close_all(1001, "server shutting down")
        if self in NODES:
            NODES.remove(self)
        await self.hub.stop()
        try:
            await self.r.zrem(K.NODES, self.id)
        except Exception:
            pass
        await self.r.aclose()
        await self.rs.aclose()

    async def close_all(self, code: int, reason: str) -> None:
        """Close every socket of this node and give the close frames a moment to leave."""
        conns = tuple(self.hub.conns)
        for c in conns:
            c.close(code, reason)
        if conns:
            from .connection import _tasks
            pending = [t for t in _tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=2)

    def new_conn_id(self) -> str:
        return secrets.token_hex(6)

    def conn(self, *a: Any) -> Connection:
        return Connection(self, *a)

    def kick(self, seller: str, member: str, reason: str) -> None:
        spawn(self.r.publish(SellerKeys(seller).ch_member(member), self.pack_event("kick", {"reason": reason})))
