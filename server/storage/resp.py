"""A small asyncio Redis (RESP2) client on hiredis, for a node's two hot Redis paths.

Why it exists: a py-spy profile of a node relaying 5,000 chat messages/s put ~17% of busy CPU in
redis-py's pipeline machinery behind ``Scripts`` (pool checkout, Retry, command packing in
Python, the encoder, writelines, read_response) and ~10% in its pub/sub reader behind ``Hub``
(listen, parse_response, handle_message, push handlers, timeout contexts). Here instead:

* a batch of commands is packed by ``hiredis.pack_command`` (C) and sent with one
  ``transport.write``; replies are parsed by ``hiredis.Reader`` right in ``data_received`` and
  matched FIFO to one future per batch. Redis answers in order, so one connection carries any
  number of batches in flight: no pool.
* error replies come back as ``ReplyError`` objects in a batch's results, not raised, so one
  failing command does not spoil the others.
* a subscriber connection hands every reply, as parsed, to a ``push`` callback.

A lost connection fails every pending batch with ``ConnectionLost``; the next call reconnects,
never sooner than a bounded back-off after a failed attempt (a node whose Redis is gone must not
burn CPU). Retrying is the caller's business (``Scripts`` re-sends a batch, ``Hub`` resubscribes).

Only what kefu needs: RESP2, ``redis://[[user]:password@]host[:port][/db]`` and
``unix://[[user]:password@]/path[?db=N]``, AUTH and SELECT from the URL; no TLS.
"""
from __future__ import annotations

import asyncio
import builtins
import logging
from collections import deque
from typing import Any, Callable, NamedTuple, Sequence, cast
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
import redis.exceptions

log = logging.getLogger("kefu.resp")

pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command  # one command -> RESP bytes (C)
_MORE = object()  # hiredis: no complete reply buffered yet


class ConnectionLost(redis.exceptions.ConnectionError, builtins.ConnectionError):
    """Redis unreachable, or the connection dropped (both redis-py's and Python's ConnectionError)."""


class ReplyError(redis.exceptions.ResponseError):
    """An error reply (``ERR ...``, ``NOSCRIPT ...``): an item of a batch's results; raised by ``execute``."""


class _ProtocolError(Exception):
    pass


class Address(NamedTuple):
    path: str | None  # a unix socket, or None for TCP
    host: str
    port: int
    username: str | None
    password: str | None
    db: int


def parse_url(url: str) -> Address:
    u = urlparse(url)
    q = parse_qs(u.query)
    db = int(q["db"][0]) if "db" in q else 0
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password is not None else None
    if u.scheme == "unix":
        if not u.path:
            raise ValueError(f"no socket path in {url!r}")
        return Address(unquote(u.path), "", 0, user, password, db)
    if u.scheme != "redis":
        raise ValueError(f"unsupported Redis URL {url!r} (redis:// or unix://)")
    if u.path.strip("/"):
        db = int(u.path.strip("/"))
    return Address(None, u.hostname or "localhost", u.port or 6379, user, password, db)


class _Batch:
    __slots__ = ("fut", "n", "replies")

    def __init__(self, fut: asyncio.Future[list[Any]], n: int) -> None:
        self.fut = fut
        self.n = n
        self.replies: list[Any] = []


class RespConn(asyncio.Protocol):
    """One socket: writes packed batches, parses replies, hands them FIFO to batches (or to ``push``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, decode: bool) -> None:
        self._loop = loop
        self._reader = hiredis.Reader(notEnoughData=_MORE, protocolError=_ProtocolError, replyError=ReplyError,
                                      encoding="utf-8" if decode else None)
        self._waiting: deque[_Batch] = deque()
        self.push: Callable[[Any], None] | None = None  # set: every reply goes there (subscriber)
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None  # why it is unusable (closed or closing)
        self.lost: asyncio.Future[None] = loop.create_future()
        self.received = 0  # data_received calls: the subscriber's liveness check reads it
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = f"Redis connection lost: {exc!r}" if exc else "Redis closed the connection"
        while self._waiting:
            b = self._waiting.popleft()
            if not b.fut.done():
                b.fut.set_exception(ConnectionLost(self.error))
        self.resume_writing()  # wake writers: they see the error
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        d, self._drained = self._drained, None
        if d is not None and not d.done():
            d.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received += 1
        reader = self._reader
        reader.feed(data)
        push, waiting = self.push, self._waiting
        while True:
            try:
                reply = reader.gets()
            except _ProtocolError as e:
                self.abort(f"Redis protocol error: {e}")
                return
            except UnicodeDecodeError as e:  # this reply was consumed: only its caller gets the error
                reply = e
            if reply is _MORE:
                return
            if push is not None:
                try:
                    push(reply)
                except Exception:  # a handler bug must not drop the connection (and every subscription)
                    log.exception("pub/sub handler failed on %r", reply)
                continue
            if not waiting:
                self.abort("Redis sent a reply nobody asked for")
                return
            b = waiting[0]
            b.replies.append(reply)
            if len(b.replies) == b.n:
                waiting.popleft()
                if not b.fut.done():  # the caller may have been cancelled
                    b.fut.set_result(b.replies)

    # ---- use ----------------------------------------------------------------------------
    async def request(self, payload: bytes, n: int) -> list[Any]:
        """Send ``n`` packed commands in one write; their ``n`` replies, in order."""
        while self._paused and self.error is None:  # flow control: the kernel buffer is full
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)
        if self.error is not None or self.transport is None:
            raise ConnectionLost(self.error or "not connected")
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        self._waiting.append(_Batch(fut, n))
        self.transport.write(payload)
        return await fut

    def write(self, payload: bytes) -> bool:
        """Write without waiting for a reply (a subscriber's commands); False if unusable."""
        if self.error is not None or self.transport is None:
            return False
        self.transport.write(payload)
        return True

    def abort(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows and fails what is pending


class Resp:
    """A Redis connection that reconnects on demand. ``push``: a subscriber; every reply goes there."""

    def __init__(self, url: str, *, decode: bool = False, push: Callable[[Any], None] | None = None,
                 connect_timeout: float = 5.0, backoff_cap: float = 1.0) -> None:
        self.url = url
        self._addr = parse_url(url)
        self._decode = decode
        self._push = push
        self._connect_timeout = connect_timeout
        self._backoff_cap = backoff_cap
        self._conn: RespConn | None = None
        self._connecting: asyncio.Task[RespConn] | None = None
        self._delay = 0.0      # back-off after a failed attempt: 0.05 s doubling up to backoff_cap
        self._next_try = 0.0   # loop time before which no new attempt starts
        self._closed = False
        self.connects = 0      # connections made (tests, logs)
        # sent on every new connection before anything else; replies not checked (Scripts: SCRIPT LOAD)
        self.on_connect: list[tuple[Any, ...]] = []

    @property
    def conn(self) -> RespConn | None:
        """The live connection, if any."""
        c = self._conn
        return c if c is not None and c.error is None else None

    async def connect(self) -> RespConn:
        """The live connection, or a new one. Concurrent callers share one attempt."""
        c = self._conn
        if c is not None and c.error is None:
            return c
        if self._closed:
            raise ConnectionLost("client closed")
        t = self._connecting
        if t is None:
            t = self._connecting = asyncio.ensure_future(self._open())
            t.add_done_callback(self._opened)
        return await asyncio.shield(t)

    def _opened(self, t: asyncio.Task[RespConn]) -> None:
        if self._connecting is t:
            self._connecting = None
        if not t.cancelled():
            t.exception()  # retrieved: its waiters may all have been cancelled

    async def _open(self) -> RespConn:
        loop = asyncio.get_running_loop()
        wait = self._next_try - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # back-off after a failed attempt, not synchronisation
        try:
            c = await asyncio.wait_for(self._dial(loop), self._connect_timeout)
        except (OSError, asyncio.TimeoutError, ReplyError) as e:
            self._delay = min(self._backoff_cap, self._delay * 2 or 0.05)
            self._next_try = loop.time() + self._delay
            raise ConnectionLost(f"cannot connect to Redis at {self.url}: {e!r}") from e
        self._delay = 0.0
        if self._closed:
            c.abort("client closed")
            raise ConnectionLost("client closed")
        self._conn = c
        self.connects += 1
        return c

    async def _dial(self, loop: asyncio.AbstractEventLoop) -> RespConn:
        a = self._addr
        decode = self._decode

        def factory() -> RespConn:
            return RespConn(loop, decode)
        if a.path is not None:
            _, c = await loop.create_unix_connection(factory, a.path)
        else:
            _, c = await loop.create_connection(factory, a.host, a.port)
        hello: list[tuple[Any, ...]] = []
        if a.password is not None:
            hello.append(("AUTH", a.username, a.password) if a.username else ("AUTH", a.password))
        if a.db:
            hello.append(("SELECT", a.db))
        hello.append(("PING",))  # a server that accepts then drops us (maxclients) fails here: back-off
        extra = self.on_connect
        try:
            replies = await c.request(b"".join(map(pack, [*hello, *extra])), len(hello) + len(extra))
            for r in replies[:len(hello)]:
                if isinstance(r, Exception):
                    raise r
        except BaseException:
            c.abort("handshake failed")
            raise
        c.push = self._push
        return c

    async def send(self, payload: bytes, n: int) -> list[Any]:
        """``n`` packed commands in one write (connecting if needed); replies in order, errors as ``ReplyError``."""
        c = self._conn
        if c is None or c.error is not None:
            c = await self.connect()
        return await c.request(payload, n)

    async def batch(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        return await self.send(b"".join([pack(tuple(cmd)) for cmd in commands]), len(commands))

    async def execute(self, *args: Any) -> Any:
        """One command; an error reply is raised."""
        (r,) = await self.send(pack(args), 1)
        if isinstance(r, Exception):
            raise r
        return r

    def write(self, *args: Any) -> bool:
        """Write one command, no reply awaited (SUBSCRIBE on a subscriber); False when not connected."""
        c = self.conn
        return c is not None and c.write(pack(args))

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        c, self._conn = self._conn, None
        if c is not None and c.transport is not None and not c.lost.done():
            if c.error is None:
                c.error = "client closed"
            c.transport.close()  # flushes what is buffered, then connection_lost
            done, _ = await asyncio.wait({c.lost}, timeout=1)
            if not done:
                c.transport.abort()
