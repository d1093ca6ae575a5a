"""Bare relay: the floor of kefu's stack (Starlette + uvicorn + redis-py/hiredis pub/sub).

Baseline protocol (shared by every baseline):
  * connect to ws://host:port/ws?user=<id>; the node subscribes channel ``u:<id>``;
  * a client text frame is JSON ``{"to": "<id>", "seq": n, "ts": t, ...}``; the node PUBLISHes
    the frame unchanged to ``u:<to>``;
  * whatever arrives on ``u:<id>`` is sent to that user's socket(s).
No storage, no auth, no acks: any cost kefu adds on top of this is the price of its features.

Usage: python bench/baselines/bare_relay.py --port P --redis redis://127.0.0.1:6379 [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import msgspec
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

REDIS_ENV = "BARE_RELAY_REDIS"


class _Envelope(msgspec.Struct):
    to: str  # the only field the relay reads; the rest of the frame is passed through untouched


_decode = msgspec.json.Decoder(_Envelope).decode


class Relay:
    """Per-process state: one multiplexed pub/sub connection and the local sockets by channel."""

    def __init__(self, url: str) -> None:
        # Blocking pool: a burst of concurrent PUBLISHes waits for a connection instead of failing.
        self.redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10)
        )
        self.pubsub = self.redis.pubsub()
        self.local: dict[bytes, set[WebSocket]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A per-process channel keeps the pub/sub connection open while no user is connected,
        # so the reader can block on it from the start.
        await self.pubsub.subscribe(f"_relay:{os.getpid()}")
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.redis.aclose()

    async def join(self, channel: bytes, ws: WebSocket) -> None:
        sockets = self.local.get(channel)
        if sockets is None:
            self.local[channel] = {ws}
            await self.pubsub.subscribe(channel)
        else:
            sockets.add(ws)

    async def leave(self, channel: bytes, ws: WebSocket) -> None:
        sockets = self.local.get(channel)
        if sockets is None:
            return
        sockets.discard(ws)
        if not sockets:
            del self.local[channel]
            await self.pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while True:
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if msg is None or msg["type"] != "message":
                continue
            sockets = self.local.get(msg["channel"])
            if not sockets:
                continue
            text = msg["data"].decode()
            for ws in tuple(sockets):
                # Awaiting here means one stalled socket stalls this node: deliberate, this is the
                # minimal relay (kefu adds bounded per-connection queues).
                with contextlib.suppress(Exception):
                    await ws.send_text(text)


relay: Relay | None = None


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global relay
    relay = Relay(os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379"))
    await relay.start()
    try:
        yield
    finally:
        await relay.stop()


async def ws_endpoint(websocket: WebSocket) -> None:
    assert relay is not None
    user = websocket.query_params.get("user")
    if not user:
        await websocket.close(code=1008)
        return
    channel = f"u:{user}".encode()
    await relay.join(channel, websocket)  # subscribe before accept: no message lost at start
    try:
        await websocket.accept()
        publish = relay.redis.publish
        while True:
            event = await websocket.receive()
            if event["type"] == "websocket.disconnect":
                break
            frame = event.get("text") or event.get("bytes")
            if not frame:
                continue
            try:
                to = _decode(frame).to
            except msgspec.DecodeError:
                continue  # not ours to validate; the baseline just drops malformed frames
            await publish(b"u:" + to.encode(), frame)
    finally:
        await relay.leave(channel, websocket)


app = Starlette(routes=[WebSocketRoute("/ws", ws_endpoint)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--redis", default="redis://127.0.0.1:6379")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    os.environ[REDIS_ENV] = a.redis  # inherited by uvicorn's worker processes
    uvicorn.run(
        "bare_relay:app",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host=a.host,
        port=a.port,
        workers=a.workers,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
