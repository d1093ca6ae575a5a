"""The WebSocket endpoint: sub-protocol negotiation, authentication, the request loop.

Each request gets ``ok`` or ``error`` (stable code); a malformed frame gets an error and the
connection stays usable; abuse (floods, endless garbage) closes it with a documented code.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from kefu.protocol import messages as M
from kefu.protocol.codec import JSON, SUBPROTOCOLS, Codec
from kefu.protocol.errors import BadRequest, CloseCode, Conflict, ErrorCode, Forbidden, KefuError, Unauthorized

from .connection import Connection
from .conversations import conv_view
from .dispatcher import explanation
from .logs import conn_id, request_id
from .storage.keys import SellerKeys
from .wire import wire_of

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("kefu.gateway")
Handler = Callable[["Node", Connection, Any], Awaitable[Any]]
MEMBER: dict[str, Handler] = {}
BUYER: dict[str, Handler] = {}


def handles(type_: str, member: bool = True, buyer: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        if member:
            MEMBER[type_] = fn
        if buyer:
            BUYER[type_] = fn
        return fn
    return deco


def pick_codec(ws: WebSocket) -> Codec:
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    for p in offered:
        if p in SUBPROTOCOLS:
            return SUBPROTOCOLS[p]
    return JSON


def origin_ok(node: "Node", ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if not origin:
        return True  # not a browser
    allowed = [o.strip() for o in node.settings.origins.split(",") if o.strip()]
    if "*" in allowed or origin in allowed:
        return True
    host = ws.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def endpoint(ws: WebSocket) -> None:
    node: "Node" = ws.app.state.node
    if not origin_ok(node, ws):
        await ws.close(CloseCode.POLICY)
        return
    codec = pick_codec(ws)
    offered = ws.headers.get("sec-websocket-protocol")
    await ws.accept(subprotocol=codec.subprotocol if offered and codec.subprotocol in offered else None)
    send, receive = ws._send, ws._receive  # the raw ASGI callables: no checks or wrappers per frame
    proto = wire_of(send)
    if proto is not None:
        proto.request = proto.response = None  # the handshake's headers, never read again (memory per socket)

    async def close(code: int, reason: str) -> None:
        try:
            await send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:
            pass

    c = node.conn(codec, send, close, node.new_conn_id())
    conn_id.set(c.id)  # tags every log line of this connection
    node.metrics.connections += 1
    try:
        authenticated = await _authenticated(node, ws, c)
        ws.scope["headers"] = []  # read for the origin, codec and auth checks only; uvicorn keeps the scope
        ws = None  # type: ignore[assignment]  # an idle socket keeps no Starlette objects
        if authenticated:
            await _requests(node, c, receive)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("connection %s failed", c.id)
    finally:
        node.metrics.connections -= 1
        c.closed = True
        await _cleanup(node, c)


async def _authenticated(node: "Node", ws: WebSocket, c: Connection) -> bool:
    """The first frame must be a valid ``auth`` within the deadline; then resume (R17)."""
    try:
        msg = await asyncio.wait_for(ws.receive(), node.settings.auth_timeout)
    except asyncio.TimeoutError:
        await ws.close(CloseCode.AUTH_FAILED, "no auth")
        return False
    if msg["type"] == "websocket.disconnect":
        return False
    frame = msg.get("bytes") or msg.get("text") or b""
    try:
        typ, rid, req = c.codec.decode(frame)
        if typ != "auth":
            raise Unauthorized(ErrorCode.UNAUTHORIZED, "first frame must be auth")
        data = await authenticate(node, c, req)
    except KefuError as e:
        node.metrics.error(e.code.value)
        log.info("auth refused: %s", e.code.value)
        await ws.send_bytes(c.codec.error(c.codec.peek_id(frame), e.to_payload())) if c.codec.binary else \
            await ws.send_text(c.codec.error(c.codec.peek_id(frame), e.to_payload()).decode())
        await ws.close(CloseCode.AUTH_FAILED, e.code.value)
        return False
    c.push(c.codec.ok(rid, data))
    try:
        await _resume(node, c, req.cursors)
    finally:
        c.resumed()
    return True


async def _requests(node: "Node", c: Connection, receive: Any) -> None:
    """The request loop: one reply per request, in order; it lives as long as the socket."""
    table = MEMBER if c.kind == "member" else BUYER
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if c.closed:
            return
        frame = msg.get("bytes") or msg.get("text") or b""
        node.metrics.messages_in += 1
        rid: Any = None
        try:
            if not c.allow():
                rid = c.codec.peek_id(frame)
                c.bad_frames += 1
                if c.bad_frames > node.settings.max_bad_frames:
                    c.close(CloseCode.FLOOD, "flood")
                    return
                raise KefuError(ErrorCode.RATE_LIMITED, "slow down")
            try:
                typ, rid, req = c.codec.decode(frame)
            except BadRequest as e:
                rid = e.detail.pop("id", None) if "id" in e.detail else c.codec.peek_id(frame)
                c.bad_frames += 1
                if c.bad_frames > node.settings.max_bad_frames:
                    c.close(CloseCode.FLOOD, "too many bad frames")
                    return
                raise
            request_id.set("" if rid is None else str(rid)[:64])
            log.debug("request %s", typ)  # the type only: never the data (tokens, message bodies)
            h = table.get(typ)
            if h is None:
                raise Forbidden(ErrorCode.FORBIDDEN, f"{typ!r} is not for {c.kind}s")
            if not c.echo and typ == "send":
                c.own_cid = req.cid  # its own event will be swallowed: the reply carries it
            try:
                c.push(c.codec.ok(rid, await h(node, c, req)))
            finally:
                if c.own_cid is not None:
                    c.replied()
        except KefuError as e:
            node.metrics.error(e.code.value)
            if e.code not in (ErrorCode.RATE_LIMITED,):
                log.info("request error %s on %s", e.code.value, c.id)
            c.push(c.codec.error(rid, e.to_payload()))
        except Exception:
            log.exception("request failed on %s", c.id)
            node.metrics.error("internal")
            c.push(c.codec.error(rid, {"code": "internal", "message": "internal error"}))


async def authenticate(node: "Node", c: Connection, req: M.Auth) -> dict[str, Any]:
    assert node.tokens is not None
    tok = req.token
    secrets_cache: dict[tuple[str, str], str | None] = {}
    import jwt as _jwt
    try:
        claims = _jwt.decode(tok, options={"verify_signature": False})
        if claims.get("iss") == "store":
            key = (str(claims.get("sel", "")), str(claims.get("st", "")))
            secrets_cache[key] = await node.accounts.store_secret(*key)
    except _jwt.PyJWTError:
        raise Unauthorized(ErrorCode.UNAUTHORIZED, "invalid token") from None
    ident = node.tokens.decode(tok, lambda s, st: secrets_cache.get((s, st)))
    c.seller, c.user = ident.seller, ident.user
    c.echo = req.echo
    k = SellerKeys(c.seller)
    hub = node.hub
    if ident.kind == "member":
        m = await node.accounts.for_token(ident, node.now_ms())
        c.kind, c.member = "member", m
        servable = await node.accounts.servable_stores(m)
        if req.app == "dashboard":  # watching only: presence and routing stay as the console set them
            m.require("dashboard")
            c.watch = True
            chans = [k.ch_presence, k.ch_dash]
            for ch in chans:
                await hub.subscribe(c, ch)
            c.channels = chans
            hub.conns.add(c)
            status = await node.r.hget(k.status, c.user) or "offline"
            return {"kind": "member", "app": "dashboard", "seller": c.seller, "member": m.public(),
                    "status": status, "stores": servable, "serving": [], "node": node.id}
        if req.stores is not None:
            bad = [s for s in req.stores if s not in servable]
            if bad:
                raise Forbidden(ErrorCode.FORBIDDEN, f"you cannot serve {bad}")
        await node.accounts.compute_route(m, req.stores if req.stores is not None else servable)
        chans = [k.ch_member(c.user), k.ch_presence] + ([k.ch_dash] if m.can("dashboard") else [])
        for ch in chans:
            await hub.subscribe(c, ch)
        c.channels = chans
        hub.conns.add(c)
        status = await node.presence.member_connected(c, req.status)
        return {"kind": "member", "seller": c.seller, "member": m.public(), "status": status,
                "stores": servable, "store_names": await r_store_names(node, c.seller), "serving": req.stores if req.stores is not None else servable,
                "node": node.id}
    # buyer
    if not await node.accounts.store_exists(ident.seller, ident.store):
        raise Unauthorized(ErrorCode.UNAUTHORIZED, "unknown store")
    c.kind, c.store = "buyer", ident.store
    ch = k.ch_buyer(c.user)
    await hub.subscribe(c, ch)
    c.channels = [ch]
    hub.conns.add(c)
    await node.presence.buyer_connected(c)
    store_name = await node.r.hget(k.stores, c.store)
    return {"kind": "buyer", "seller": c.seller, "buyer": c.user, "store": c.store, "store_name": store_name,
            "node": node.id}


async def r_store_names(node: "Node", seller: str) -> dict[str, str]:
    return dict(await node.r.hgetall(SellerKeys(seller).stores))


async def _resume(node: "Node", c: Connection, cursors: dict[str, int]) -> None:
    """Set a cursor for every conversation this connection follows; replay what the client missed (R17)."""
    k = SellerKeys(c.seller)
    r = node.r
    if c.watch:
        return
    if c.kind == "member":
        raw = await r.zrangebylex(k.held, f"[{c.user}\0", f"[{c.user}\0\xff")
        convs = [e.split("\0", 1)[1] for e in raw] + list(await r.smembers(k.internals_of(c.user)))
    else:
        conv = await r.get(k.open_conv(c.user, c.store))
        convs = [conv] if conv else []
    if not convs:
        return
    pipe = r.pipeline(transaction=False)
    for conv in convs:
        pipe.hgetall(k.conv(conv))
    views = await pipe.execute()
    for conv, h in zip(convs, views):
        if not h:
            continue
        seq = int(h.get("seq") or 0)
        cur = cursors.get(conv)
        if cur is None:
            # "from now" = from the subscription: what was published since then is delivered live
            first = c.first_pending(conv)
            c.cursors.setdefault(conv, seq if first is None else min(seq, first - 1))
        elif cur >= seq:
            c.cursors.setdefault(conv, seq)
        else:
            c.cursors[conv] = cur
            c.resync()
        if c.kind == "buyer":
            c.event("conv.state", _buyer_state(conv, h, await r.hget(k.names, h.get("member", "") or "-")))
            if h.get("state") == "queued":
                await _track_queue(node, c, conv, h.get("queue", ""))


def _buyer_state(conv: str, h: dict[str, str], agent: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"conv": conv, "state": h.get("state", "")}
    if h.get("state") == "active" and agent:
        out["agent"] = agent
    return out


async def _track_queue(node: "Node", c: Connection, conv: str, queue: str) -> None:
    await node.conversations.buyer_subscribe_queue(c, queue)
    pos, ver = await node.dispatcher.position(c.seller, queue, conv)
    if pos:
        c.qpos[conv] = [queue, pos, ver]
        c.event("queue.position", {"conv": conv, "position": pos})


async def _cleanup(node: "Node", c: Connection) -> None:
    node.hub.conns.discard(c)
    for ch in c.channels:
        await node.hub.unsubscribe(c, ch)
    if c.kind and not c.watch:
        try:
            await node.presence.disconnected(c)
        except Exception as e:
            log.warning("disconnect bookkeeping failed for %s: %s", c.id, e)


# ---- request handlers -------------------------------------------------------------------------

@handles("ping", buyer=True)
async def _ping(node: "Node", c: Connection, req: M.Ping) -> Any:
    return {"ts": node.now_ms()}


@handles("send", buyer=True)
async def _send(node: "Node", c: Connection, req: M.Send) -> Any:
    conv = req.conv
    out = None
    if c.kind == "buyer" and conv is None:
        for _ in range(3):  # the open conversation may close between the lookup and the append
            conv, out, created = await node.conversations.open_for_buyer(c, req.to or "", (req.cid, req.text))
            if created:
                if out is not None and out.result == "queued":
                    await _track_queue(node, c, conv, f"s:{c.store}")
                assert out is not None
                seq, dup = out.first_seq, False  # stored by open_for_buyer, before the dispatch
                break
            try:
                seq, dup = await node.conversations.append(c, conv, req.cid, req.text)
                break
            except Conflict as e:
                if e.code != ErrorCode.CONV_CLOSED:
                    raise
        else:
            raise Conflict(ErrorCode.CONFLICT, "conversation keeps closing; retry")
    elif conv is None:
        raise BadRequest(ErrorCode.INVALID, "conv is required")
    else:
        seq, dup = await node.conversations.append(c, conv, req.cid, req.text)
    echo = True
    if not c.echo and not dup:
        if c.own_held:  # its event came first and was swallowed: this reply delivers it
            echo = False
        elif c.cursors.get(conv) == seq - 1:
            c.cursors[conv] = seq  # its event, when it comes, is dropped as seen
            echo = False
    reply: dict[str, Any] = {"conv": conv, "seq": seq, "dup": dup, "echo": echo}
    if out is not None:
        reply["dispatch"] = out.public() if c.kind == "member" else {"state": out.public()["state"],
                                                                     "position": out.position}
    return reply


@handles("conv.open", member=False, buyer=True)
async def _conv_open(node: "Node", c: Connection, req: M.ConvOpen) -> Any:
    conv, out, created = await node.conversations.open_for_buyer(c, req.to or "")
    if created and out is not None and out.result == "assigned":
        # just made and served: the view is known without reading it back (the hot path of a new chat)
        return {"conv": conv, "state": "active", "kind": "buyer", "store": c.store, "buyer": c.user,
                "seq": 0, "unread": 0, "agent": out.name or out.member}
    h = await node.conversations.get(c.seller, conv)
    if created and out is not None and out.result == "queued":
        await _track_queue(node, c, conv, h.get("queue", ""))
    view = conv_view(conv, h, for_buyer=True)
    if h.get("state") == "active":
        view["agent"] = await node.r.hget(SellerKeys(c.seller).names, h.get("member", ""))
    if h.get("state") == "queued":
        view["position"] = (await node.dispatcher.position(c.seller, h.get("queue", ""), conv))[0]
    return view


@handles("history", buyer=True)
async def _history(node: "Node", c: Connection, req: M.History) -> Any:
    return await node.conversations.history(c, req.conv, req.before, req.after, req.limit)


@handles("read", buyer=True)
async def _read(node: "Node", c: Connection, req: M.Read) -> Any:
    await node.conversations.mark_read(c, req.conv, req.seq)
    return {}


@handles("conv.list", buyer=True)
async def _conv_list(node: "Node", c: Connection, req: M.ConvList) -> Any:
    return {"convs": await node.conversations.list_for(c, req.state, req.before, req.limit)}


@handles("conv.get", buyer=True)
async def _conv_get(node: "Node", c: Connection, req: M.ConvGet) -> Any:
    return conv_view(req.conv, await node.conversations.visible(c, req.conv), c.kind == "buyer", c.user)


@handles("conv.close")
async def _conv_close(node: "Node", c: Connection, req: M.ConvClose) -> Any:
    await node.conversations.close(c, req.conv)
    return {"conv": req.conv, "state": "closed"}


@handles("conv.restart")
async def _conv_restart(node: "Node", c: Connection, req: M.ConvRestart) -> Any:
    await node.conversations.restart(c, req.conv)
    return {"conv": req.conv, "state": "active"}


@handles("conv.transfer")
async def _conv_transfer(node: "Node", c: Connection, req: M.ConvTransfer) -> Any:
    return await node.conversations.transfer(c, req.conv, req.to_member, req.to_group, req.reason)


@handles("conv.transfers")
async def _conv_transfers(node: "Node", c: Connection, req: M.ConvTransfers) -> Any:
    return {"conv": req.conv, "transfers": await node.conversations.transfers_of(c, req.conv)}


@handles("conv.explain")
async def _conv_explain(node: "Node", c: Connection, req: M.ConvExplain) -> Any:
    return explanation(req.conv, await node.conversations.visible(c, req.conv))


@handles("conv.leave", member=False, buyer=True)
async def _conv_leave(node: "Node", c: Connection, req: M.ConvLeave) -> Any:
    conv = req.conv or await node.r.get(SellerKeys(c.seller).open_conv(c.user, c.store))
    if not conv:
        raise KefuError(ErrorCode.NOT_FOUND, "no open conversation")
    await node.conversations.leave(c.seller, c.user, conv)
    return {"conv": conv, "state": "closed"}


@handles("status.set")
async def _status_set(node: "Node", c: Connection, req: M.StatusSet) -> Any:
    assert c.member is not None
    return await node.presence.set_status(c.member, req.member, req.status)


@handles("status.toggle")
async def _status_toggle(node: "Node", c: Connection, req: M.StatusToggle) -> Any:
    assert c.member is not None
    return await node.presence.set_status(c.member, req.member, "toggle")


@handles("contacts")
async def _contacts(node: "Node", c: Connection, req: M.Contacts) -> Any:
    return {"members": await node.presence.contacts(c), "groups": await node.presence.groups(c.seller)}


@handles("internal.open")
async def _internal_open(node: "Node", c: Connection, req: M.InternalOpen) -> Any:
    return {"conv": await node.conversations.open_internal(c, req.member), "with": req.member}


@handles("dash.snapshot")
async def _dash(node: "Node", c: Connection, req: M.DashSnapshot) -> Any:
    assert c.member is not None
    c.member.require("dashboard")
    from .dashboard import snapshot
    return await snapshot(node, c.seller)


from . import work_orders as _work_orders  # noqa: E402,F401  (registers the wo.* handlers)
