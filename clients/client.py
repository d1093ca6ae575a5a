"""A Python async client for kefu (used by the tests, the bots, and your own integrations).

    async with await Client.login("http://127.0.0.1:8700", "demo:alice", "demo1234") as c:
        await c.request("status.set", status="online")
        ev = await c.next_event("conv.assigned")

It keeps a cursor per conversation and de-duplicates by ``seq``, so ``reconnect()`` resumes
exactly where it stopped (R17).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from collections import defaultdict
from typing import Any, Callable

import websockets
from websockets.asyncio.client import ClientConnection, connect

from kefu.protocol.codec import CODECS, Codec
from kefu.protocol.errors import KefuError, error


def http_json(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10) -> Any:
    """Blocking helper (run in a thread from async code). Raises KefuError for an error reply."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        payload = json.loads(e.read() or b"{}").get("error", {})
        raise error(payload.get("code", "internal"), payload.get("message", ""), status=e.code) from None


async def ahttp(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    return await asyncio.to_thread(http_json, method, url, body, token)


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/ws"


class Client:
    def __init__(self, base: str, token: str, codec: str = "msgpack", echo: bool = False) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.codec: Codec = CODECS[codec]
        self.echo = echo  # False: our own messages are recorded from the send replies (one frame less)
        self.ws: ClientConnection | None = None
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cursors: dict[str, int] = {}
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.duplicates = 0
        self.out_of_order = 0
        self.auth: dict[str, Any] = {}
        self.closed: tuple[int, str] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.on_event: Callable[[str, Any], None] | None = None
        self.gen = 0  # connection generation: a "closed" event of an earlier connection is stale

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    async def login(cls, base: str, login: str, password: str, otp: str = "", codec: str = "msgpack",
                    **auth: Any) -> "Client":
        body = {"login": login, "password": password, **({"otp": otp} if otp else {})}
        r = await ahttp("POST", base.rstrip("/") + "/api/login", body)
        c = cls(base, r["token"], codec)
        await c.connect(**auth)
        return c

    @classmethod
    async def buyer(cls, base: str, seller: str, store: str, codec: str = "msgpack", token: str = "") -> "Client":
        r = await ahttp("POST", base.rstrip("/") + "/api/buyer/session",
                        {"seller": seller, "store": store, **({"token": token} if token else {})})
        c = cls(base, r["token"], codec)
        await c.connect()
        return c

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *a: Any) -> None:
        await self.close()

    # ---- connection -------------------------------------------------------------------------
    async def connect(self, resume: bool = True, **auth: Any) -> dict[str, Any]:
        self.closed = None
        self.gen += 1
        self.ws = await connect(ws_url(self.base), subprotocols=[self.codec.subprotocol],  # type: ignore[list-item]
                                max_size=2**20, open_timeout=10, ping_interval=None)
        self._reader = asyncio.create_task(self._read(self.ws, self.gen))
        payload = {"token": self.token, "echo": self.echo, **auth}
        if resume and self.cursors:
            payload["cursors"] = dict(self.cursors)
        self.auth = await self.request("auth", **payload)
        return self.auth

    async def reconnect(self, **auth: Any) -> dict[str, Any]:
        await self.close()
        return await self.connect(**auth)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        self.ws = None

    async def _read(self, ws: ClientConnection, gen: int) -> None:
        try:
            async for frame in ws:
                self._on_frame(self.codec.decode_any(frame))
        except websockets.ConnectionClosed:
            pass
        finally:
            rc = ws.close_code if ws.close_code is not None else 1006
            self.closed = (rc, ws.close_reason or "")
            for f in self._pending.values():
                if not f.done():
                    f.set_exception(ConnectionError(f"closed {rc}"))
            self._pending.clear()
            self.events.put_nowait(("closed", {"code": rc, "reason": ws.close_reason or "", "gen": gen}))

    def _on_frame(self, env: dict[str, Any]) -> None:
        t = env.get("type")
        if t in ("ok", "error") and env.get("id") in self._pending:
            f = self._pending.pop(env["id"])
            if not f.done():
                if t == "ok":
                    f.set_result(env.get("data"))
                else:
                    d = env.get("data") or {}
                    f.set_exception(error(d.get("code", "internal"), d.get("message", "")))
            return
        d = env.get("data")
        if t == "msg":
            conv, seq = d["conv"], d["seq"]
            cur = self.cursors.get(conv, 0)
            if seq <= cur:
                self.duplicates += 1
                return
            if self.messages[conv] and seq < self.messages[conv][-1]["seq"]:
                self.out_of_order += 1
            self.cursors[conv] = seq
            self.messages[conv].append(d)
        elif t == "conv.assigned":
            self.cursors.setdefault(d["conv"], d["seq"])
        if self.on_event:
            self.on_event(t or "", d)
        self.events.put_nowait((t or "", d))

    # ---- requests and events ----------------------------------------------------------------
    async def request(self, type_: str, timeout: float = 10, **data: Any) -> Any:
        if self.ws is None:
            raise ConnectionError("not connected")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        frame = self.codec.request(type_, rid, {k: v for k, v in data.items() if v is not None})
        await self.ws.send(frame if self.codec.binary else frame.decode())
        return await asyncio.wait_for(fut, timeout)

    async def send_raw(self, frame: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def next_event(self, type_: str | None = None, timeout: float = 10,
                         pred: Callable[[Any], bool] | None = None) -> Any:
        """The next event of that type (others are dropped) — waits for the event, with a timeout."""
        async def wait() -> Any:
            while True:
                t, d = await self.events.get()
                if (type_ is None or t == type_) and (pred is None or pred(d)):
                    return d
                if t == "closed" and type_ != "closed" and d.get("gen") == self.gen:
                    raise ConnectionError(f"closed {d}")
        return await asyncio.wait_for(wait(), timeout)

    async def send(self, text: str, conv: str | None = None, cid: str | None = None, **kw: Any) -> Any:
        cid = cid or f"c{next(self._ids)}-{id(self)}"
        r = await self.request("send", conv=conv, cid=cid, text=text, **kw)
        if r.get("echo") is False:  # no event follows: this reply is our message's delivery
            c, seq = r["conv"], r["seq"]
            if seq > self.cursors.get(c, 0):
                self.cursors[c] = seq
                me = self.auth.get("member", {}).get("member") or self.auth.get("buyer", "")
                self.messages[c].append({"conv": c, "seq": seq, "kind": self.auth.get("kind", ""), "from": me,
                                         "text": text, "cid": cid, "own": True})
        return r

    def texts(self, conv: str, kinds: tuple[str, ...] = ("buyer", "member")) -> list[str]:
        return [m["text"] for m in self.messages[conv] if m["kind"] in kinds]


__all__ = ["Client", "KefuError", "ahttp", "http_json"]
