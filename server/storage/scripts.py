"""Load each Lua script once (with ``_lib.lua`` prepended) and run it by SHA.

Calls made in the same event-loop tick go to Redis in one pipeline (auto-pipelining): a node
serving thousands of sockets pays one round trip and one syscall per batch, not per message.
A NOSCRIPT reply (Redis restarted and lost its script cache) reloads the script and retries.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any, Callable

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from kefu.protocol.errors import error

NAMES = ("append", "dispatch", "close", "restart", "transfer", "connect", "disconnect", "offline",
         "status", "leave", "wo_update", "open")
MAX_BATCH = 512


def source(name: str) -> str:
    lua = Path(__file__).parent / "lua"
    return (lua / "_lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]


class Scripts:
    def __init__(self, r: Redis, observe: Callable[[str, float], None] | None = None) -> None:
        self.r = r
        self._src = {n: source(n) for n in NAMES}
        self._sha = {n: hashlib.sha1(s.encode()).hexdigest() for n, s in self._src.items()}
        self._observe = observe  # metrics: seconds per script run (Redis latency)
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
        try:
            pipe = self.r.pipeline(transaction=False)
            for name, keys, args, _ in batch:
                pipe.evalsha(self._sha[name], len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        except Exception as e:  # the whole batch failed (Redis unreachable): every caller hears it
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (name, keys, args, fut), res in zip(batch, results):
            if isinstance(res, NoScriptError):
                try:
                    await self.r.script_load(self._src[name])
                    res = await self.r.evalsha(self._sha[name], len(keys), *keys, *args)
                except Exception as e:
                    res = e
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
