"""Load each Lua script once (with ``_lib.lua`` prepended) and run it by SHA.

redis-py's Script objects reload on NOSCRIPT, so a Redis restart (which empties the script
cache) costs one extra round trip, not an error.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from kefu.protocol.errors import error

NAMES = ("append", "dispatch", "close", "restart", "transfer", "connect", "disconnect", "offline",
         "status", "leave", "wo_update")


def source(name: str) -> str:
    lua = Path(__file__).parent / "lua"
    return (lua / "_lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class Scripts:
    def __init__(self, r: Redis, observe: Callable[[str, float], None] | None = None) -> None:
        self._s: dict[str, AsyncScript] = {n: r.register_script(source(n)) for n in NAMES}
        self._observe = observe  # metrics: seconds per script run (Redis latency)

    async def run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        """Run a script; an ``{"err", code}`` reply becomes the matching KefuError."""
        t0 = time.perf_counter()
        res = await self._s[name](keys=keys, args=args, client=client)
        if self._observe is not None:
            self._observe(name, time.perf_counter() - t0)
        if isinstance(res, list) and res and res[0] == "err":
            raise error(res[1])
        return res
