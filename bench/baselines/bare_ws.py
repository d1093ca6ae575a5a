"""Bare WebSocket holder: the memory floor for one idle connection (benchmark B2).

A `websockets` asyncio server that accepts any path and just holds the connection open: no
application state, no Redis. Frames received are discarded.

Usage: python bench/baselines/bare_ws.py --port P [--host 127.0.0.1] [--workers N]

One process holds at most RLIMIT_NOFILE connections (the hard limit here is 20,000 and cannot
be raised without CAP_SYS_RESOURCE); --workers N runs N processes on one SO_REUSEPORT port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import resource
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve


async def hold(ws: ServerConnection) -> None:
    # Drain (and discard) anything the client sends, until it goes away.
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def run(host: str, port: int, reuse_port: bool) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # Same settings as the other baselines: no deflate, default keepalive pings.
    async with serve(hold, host, port, compression=None, backlog=4096, reuse_port=reuse_port):
        await stop.wait()


def serve_forever(host: str, port: int, reuse_port: bool = False) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one fd per connection
    try:
        import uvloop  # same event loop as the uvicorn baseline
    except ImportError:
        asyncio.run(run(host, port, reuse_port))
    else:
        uvloop.run(run(host, port, reuse_port))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    if a.workers <= 1:
        serve_forever(a.host, a.port)
        return
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=serve_forever, args=(a.host, a.port, True)) for _ in range(a.workers)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        pass
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.join(5)


if __name__ == "__main__":
    main()
