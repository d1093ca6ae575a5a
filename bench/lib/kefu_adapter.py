"""kefu under the bench harness: start ``kefu serve`` nodes, make a throw-away seller, and the
loadgen/idle adapter that speaks kefu's msgpack protocol.

A loadgen pair is (sender ``…s{i}``, receiver ``…r{i}``). For kefu the receiver is a bot member
(online, capacity to spare) of one of many small sellers and the sender a buyer whose
conversation is addressed to that member by name (R12.1), so every buyer message is stored (append.lua), then delivered to exactly
one member connection: the end-to-end path a real buyer → agent message takes. Tokens are signed
locally with the server's secret (no argon2 logins in the measured setup).

    with Procs() as ps:
        redis = ps.redis()
        srv = kefu_adapter.start(ps, redis.url)
        shops = kefu_adapter.make_sellers(redis.url, pairs=500)
        loadgen.run_load(KefuAdapter, srv.url, rate=2000, duration=5, pairs=500,
                         adapter_options=kefu_adapter.options(shops))
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import msgspec

from kefu.clients.bots import Shop, setup_seller_redis
from kefu.server.auth import Tokens

from .loadgen import OnMessage, WsAdapter, WsConn
from .procs import Proc, Procs, free_port

SECRET = "bench-secret-" + "k" * 40  # the servers' KEFU_SECRET: lets the harness sign tokens
SUBPROTOCOL = "kefu.v1.msgpack"


def start(ps: Procs, redis_url: str, *, workers: int = 1, port: int | None = None, name: str = "kefu",
          env: dict[str, str] | None = None) -> Proc:
    """One ``kefu serve`` node (``--workers N`` processes on one port) on a shared Redis.
    ``.url`` is its WebSocket URL; ``.base`` (an attribute set here) its HTTP base."""
    port = port or free_port()
    argv = [sys.executable, "-m", "kefu.server.cli", "serve", "--port", str(port), "--redis", redis_url,
            "--workers", str(workers)]
    proc = ps.spawn(name, argv, port=port, url=f"ws://127.0.0.1:{port}/ws",
                    env={"KEFU_SECRET": SECRET, "KEFU_LOG_LEVEL": "warning", **(env or {})})
    return proc


def base(proc: Proc) -> str:
    return f"http://127.0.0.1:{proc.port}"


def make_seller(redis_url: str, *, members: int, stores: int = 1, capacity: int = 1000) -> Shop:
    """A throw-away seller with members m0..m{N-1} in group ``bots`` serving every store. Its
    policy is ``wait`` (R15): a bot member that goes offline between runs keeps its chats, so no
    re-dispatch from an earlier run lands in a measured one."""
    return asyncio.run(setup_seller_redis(redis_url, stores=stores, members=members, capacity=capacity,
                                          policy="wait"))


def make_sellers(redis_url: str, *, pairs: int, per_seller: int = 10, capacity: int = 1000) -> list[Shop]:
    """Sellers for `pairs` loadgen pairs, `per_seller` members each. Many small sellers, as in a real
    deployment: each member connection receives its seller's presence events, so one seller with
    500 members would fan out 500² presence frames while the bots connect."""

    async def go() -> list[Shop]:
        n = (pairs + per_seller - 1) // per_seller
        return [await setup_seller_redis(redis_url, members=per_seller, capacity=capacity, policy="wait")
                for _ in range(n)]

    return asyncio.run(go())


def options(shop: Shop | list[Shop], **extra: Any) -> dict[str, Any]:
    """Adapter options: pair i is served by seller i // per_seller, member m{i % per_seller}."""
    shops = shop if isinstance(shop, list) else [shop]
    return {"sellers": [(s.seller, s.stores[0]) for s in shops], "per_seller": len(shops[0].members) or 1,
            "secret": SECRET, **extra}


class _Env(msgspec.Struct):
    type: str
    id: int | str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


class _Msg(msgspec.Struct):
    kind: str
    text: str


class _Err(msgspec.Struct):
    code: str


_env = msgspec.msgpack.Decoder(_Env).decode
_msg = msgspec.msgpack.Decoder(_Msg).decode
_err = msgspec.msgpack.Decoder(_Err).decode
_enc = msgspec.msgpack.Encoder().encode


class KefuAdapter(WsAdapter):
    """loadgen adapter for kefu. Options: ``seller``, ``store``, ``secret`` (see ``options``);
    ``auth_only=True`` for idle buyers (B2: authenticated, nothing else)."""

    name = "kefu"
    subprotocols = (SUBPROTOCOL,)

    def __init__(self, url: str, on_message: OnMessage, **opts: Any) -> None:
        super().__init__(url, on_message, **opts)
        self.sellers: list[tuple[str, str]] = [tuple(x) for x in opts["sellers"]]
        self.per_seller = int(opts["per_seller"])
        self.auth_only = bool(opts.get("auth_only"))
        self.tokens = Tokens(opts.get("secret", SECRET), 24 * 3600, 24 * 3600)
        self.conv: dict[WsConn, str] = {}
        self.counts: Counter[str] = Counter()

    def uri(self, user_id: str) -> str:
        return self.url

    @staticmethod
    def _role(user_id: str) -> tuple[str, int]:
        """loadgen names users ``<prefix>s<i>`` / ``<prefix>r<i>``; idle.py ``<prefix><i>``."""
        tail = user_id.rsplit("-", 1)[-1]
        if tail[:1] in ("s", "r") and tail[1:].isdigit():
            return tail[0], int(tail[1:])
        return "s", -1

    async def _request(self, conn: WsConn, rid: int, typ: str, data: dict[str, Any]) -> Any:
        conn.send_binary(_enc({"type": typ, "id": rid, "data": data}))
        while True:  # events may come first (presence, conv.state…): wait for our reply
            env = _env(await conn.recv())
            if env.id == rid:
                body = msgspec.msgpack.decode(env.data) if env.data else {}
                if env.type != "ok":
                    raise ConnectionError(f"{typ} refused: {body}")
                return body

    async def handshake(self, conn: WsConn) -> None:
        role, i = self._role(conn.user)
        seller, store = self.sellers[max(i, 0) // self.per_seller % len(self.sellers)]
        member = f"m{i % self.per_seller}"
        if role == "r":
            tok = self.tokens.member_token(seller, member, 0)
            await self._request(conn, 1, "auth", {"token": tok, "status": "online"})
            return
        # echo off: an SDK/bot sender takes its own message from the send reply (one frame less each)
        await self._request(conn, 1, "auth", {"token": self.tokens.buyer_token(seller, store, conn.user),
                                              "echo": False})
        if self.auth_only:
            return
        view = await self._request(conn, 2, "conv.open", {"to": member})
        if view.get("state") != "active":
            raise ConnectionError(f"conversation not assigned to {seller}:{member}: {view}")
        self.conv[conn] = view["conv"]

    def on_frame(self, conn: WsConn, frame: bytes) -> None:
        env = _env(frame)
        t = env.type
        if t == "msg":
            m = _msg(env.data)
            if m.kind == "buyer" and conn in self.conv:
                self.counts["echo"] += 1  # the buyer's own message, fanned out to its other tabs
                return
            if m.kind == "buyer":
                frm, seq, ts = m.text.split(" ", 2)
                self.on_message(frm, int(seq), float(ts))
        elif t == "ok":
            self.counts["ack"] += 1
        elif t == "error":
            self.counts["error:" + _err(env.data).code] += 1

    async def send(self, conn: WsConn, to: str, seq: int, ts: float) -> None:
        conn.send_binary(_enc({"type": "send", "id": seq + 10, "data": {
            "cid": f"c{seq}", "text": f"{conn.user} {seq} {ts!r}", "conv": self.conv[conn]}}))
        if not conn.writable.is_set():  # kernel buffer full: the server is not reading
            await conn.writable.wait()

    def stats(self) -> dict[str, int]:
        return dict(self.counts)
