"""Load each Lua script once (with ``_lib.lua`` prepended) and run it by SHA.

Calls made in the same event-loop tick go to Redis as one batch (auto-pipelining): a node serving
thousands of sockets pays one round trip and one syscall per batch, not per message. Batches go
over one dedicated ``Resp`` connection (resp.py: hiredis packing and parsing, no redis-py pipeline
on this hot path); batches of successive ticks may be in flight together, replies come in order.
Every new connection loads all scripts first, so a restarted Redis does not answer NOSCRIPT: a
NOSCRIPT retry would run that call after the later calls of its batch (a buyer's first message
appended before its conversation is opened). A NOSCRIPT reply anyway (SCRIPT FLUSH) loads the
script and retries the call.
A dropped connection re-sends the whole batch with back-off, like redis-py's
``Retry(ExponentialBackoff(cap=1.0, base=0.05), 6)`` did: every script is idempotent or refuses a
replay (see ``node.redis_client``).
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any, Callable

from redis.exceptions import DataError

from kefu.protocol.errors import error

from .resp import ConnectionLost, ReplyError, Resp, pack

NAMES = ("append", "dispatch", "close", "restart", "transfer", "connect", "disconnect", "offline",
         "status", "leave", "wo_update", "open")
MAX_BATCH = 512
RETRIES = 6                     # re-sends of a batch whose connection dropped
BACKOFF_BASE, BACKOFF_CAP = 0.05, 1.0  # sleep before re-send n: min(cap, base * 2**n)


def source(name: str) -> str:
    lua = Path(__file__).parent / "lua"
    return (lua / "_lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]


class Scripts:
    def __init__(self, r: Resp, observe: Callable[[str, float], None] | None = None) -> None:
        self.r = r  # decode=True: bulk strings come back as str, like the node's redis-py client
        self._src = {n: source(n) for n in NAMES}
        self._sha = {n: hashlib.sha1(s.encode()).hexdigest() for n, s in self._src.items()}
        self._observe = observe  # metrics: seconds per script run (Redis latency)
        r.on_connect = [("SCRIPT", "LOAD", src) for src in self._src.values()]
        self._queue: list[Call] = []
        self._scheduled = False
        self.batches = 0

    async def run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        """Run a script; an ``{"err", code}`` reply becomes the matching KefuError."""
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((name, keys, args, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_soon)
        res = await fut
        if self._observe is not None:
            self._observe(name, time.perf_counter() - t0)
        if isinstance(res, list) and res and res[0] == "err":
            raise error(res[1])
        return res

    def _flush_soon(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        for i in range(0, len(batch), MAX_BATCH):
            asyncio.ensure_future(self._execute(batch[i:i + MAX_BATCH]))

    async def _execute(self, batch: list[Call]) -> None:
        self.batches += 1
        sent: list[tuple[Call, bytes]] = []
        sha = self._sha
        for call in batch:
            name, keys, args, fut = call
            try:
                sent.append((call, pack(("EVALSHA", sha[name], len(keys), *keys, *args))))
            except TypeError as e:  # an argument Redis cannot take (None, a bool...): only this call fails
                if not fut.done():
                    fut.set_exception(DataError(f"script {name}: {e}"))
        if not sent:
            return
        try:
            results = await self._send(b"".join([p for _, p in sent]), len(sent))
        except Exception as e:  # the whole batch failed (Redis unreachable): every caller hears it
            for (*_, fut), _p in sent:
                if not fut.done():
                    fut.set_exception(e)
            return
        again: list[tuple[Call, bytes]] = []
        for item, res in zip(sent, results):
            if isinstance(res, ReplyError) and str(res).startswith("NOSCRIPT"):
                again.append(item)
                continue
            _settle(item[0][3], res)
        if again:
            await self._reload(again)

    async def _reload(self, calls: list[tuple[Call, bytes]]) -> None:
        """Load the missing scripts and run those calls again, in one round trip."""
        names = list(dict.fromkeys(call[0] for call, _ in calls))
        payload = b"".join([pack(("SCRIPT", "LOAD", self._src[n])) for n in names] + [p for _, p in calls])
        try:
            results = await self._send(payload, len(names) + len(calls))
        except Exception as e:
            results = [e] * (len(names) + len(calls))
        loaded = dict(zip(names, results))
        for (call, _), res in zip(calls, results[len(names):]):
            failed = loaded[call[0]]
            _settle(call[3], failed if isinstance(failed, BaseException) else res)

    async def _send(self, payload: bytes, n: int) -> list[Any]:
        failures = 0
        while True:
            try:
                return await self.r.send(payload, n)
            except ConnectionLost:
                failures += 1
                if failures > RETRIES:
                    raise
                await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** failures))  # retry back-off


def _settle(fut: "asyncio.Future[Any]", res: Any) -> None:
    if fut.done():
        return
    if isinstance(res, BaseException):
        fut.set_exception(res)
    else:
        fut.set_result(res)
