"""Bare WebSocket holder: the memory floor for one idle connection (benchmark B2).

A `websockets` asyncio server that accepts any path and just holds the connection open: no
application state, no Redis. Frames received are discarded.

Usage: python bench/baselines/bare_ws.py --port P [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal

from websockets.asyncio.server import ServerConnection, serve


async def hold(ws: ServerConnection) -> None:
    # Drain (and discard) anything the client sends, until it goes away.
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def run(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # Same settings as the other baselines: no deflate, default keepalive pings.
    async with serve(hold, host, port, compression=None, backlog=4096):
        await stop


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    a = p.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one fd per connection
    try:
        import uvloop  # same event loop as the uvicorn baseline
    except ImportError:
        asyncio.run(run(a.host, a.port))
    else:
        uvloop.run(run(a.host, a.port))


if __name__ == "__main__":
    main()
