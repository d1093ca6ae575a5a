"""HTTP and WebSocket routes: login, buyer sessions, the admin API, health, static apps."""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from kefu.protocol.errors import BadRequest, ErrorCode, Forbidden, KefuError, NotFound, RateLimited, Unauthorized

from . import gateway
from .accounts import Member
from .auth import otp_ok
from .dashboard import snapshot
from .dispatcher import explanation
from .logs import RequestIdMiddleware
from .node import Node
from .settings import Settings
from .storage.keys import SellerKeys

log = logging.getLogger("kefu.app")
STATUS = {"invalid": 400, "bad_frame": 400, "unknown_type": 400, "too_large": 413, "unauthorized": 401,
          "token_expired": 401, "bad_credentials": 401, "otp_required": 401, "bad_otp": 401,
          "account_disabled": 403, "account_expired": 403, "forbidden": 403, "not_found": 404,
          "rate_limited": 429, "overloaded": 503, "internal": 500}
MAX_BODY = 64 * 1024
LOGIN_FAILURES = 10     # failed logins per account ...
LOGIN_WINDOW = 15 * 60  # ... within this many seconds, then 429 until it expires


def err(e: KefuError) -> JSONResponse:
    return JSONResponse({"error": e.to_payload()}, status_code=STATUS.get(e.code.value, 409))


async def body(req: Request) -> dict[str, Any]:
    raw = await req.body()
    if len(raw) > MAX_BODY:
        raise BadRequest(ErrorCode.TOO_LARGE, "body too large")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise BadRequest(ErrorCode.BAD_FRAME, "body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(ErrorCode.INVALID, "body must be a JSON object")
    return data


def api(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(req: Request) -> Response:
        try:
            out = await fn(req)
            return out if isinstance(out, Response) else JSONResponse(out)
        except KefuError as e:
            req.app.state.node.metrics.error(e.code.value)
            return err(e)
    wrapped.__name__ = fn.__name__
    return wrapped


async def caller(req: Request, perm: str | None = None) -> Member:
    node: Node = req.app.state.node
    auth = req.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        raise Unauthorized(ErrorCode.UNAUTHORIZED, "Authorization: Bearer <token> required")
    assert node.tokens is not None
    ident = node.tokens.decode(auth[7:].strip())
    if ident.kind != "member":
        raise Forbidden(ErrorCode.FORBIDDEN, "members only")
    m = await node.accounts.for_token(ident, node.now_ms())
    if perm:
        m.require(perm)
    return m


# ---- auth -------------------------------------------------------------------------------------

@api
async def login(req: Request) -> Any:
    """R4: account + password, then the one-time code when the seller requires it."""
    node: Node = req.app.state.node
    b = await body(req)
    login_, password, otp = str(b.get("login", "")), str(b.get("password", "")), str(b.get("otp", ""))
    seller, mid = await node.accounts.find_login(login_)
    fails_key = SellerKeys(seller).login_failures(mid) if seller else ""
    if fails_key and int(await node.r.get(fails_key) or 0) >= LOGIN_FAILURES:
        raise RateLimited(ErrorCode.RATE_LIMITED, "too many failed logins: try again in 15 minutes")
    try:
        m: Member | None = await node.accounts.get(seller, mid) if seller and mid else None
        hashed = await node.r.hget(SellerKeys(seller).member(mid), "pw") if m else None
    except (NotFound, BadRequest):
        m, hashed = None, None
    if not await node.passwords.verify(hashed, password) or m is None:
        if fails_key:  # brute force: count failures per account, for a while
            pipe = node.r.pipeline(transaction=True)
            pipe.incr(fails_key)
            pipe.expire(fails_key, LOGIN_WINDOW)
            await pipe.execute()
        raise Unauthorized(ErrorCode.BAD_CREDENTIALS, "wrong account or password")
    if fails_key:
        await node.r.delete(fails_key)
    if m.disabled:
        raise Unauthorized(ErrorCode.ACCOUNT_DISABLED, "account disabled")
    if m.expired(node.now_ms()):
        raise Unauthorized(ErrorCode.ACCOUNT_EXPIRED, "account expired")
    info = await node.accounts.seller_info(seller)
    if info.get("require_otp") == "1":
        secret = m.otp or await node.r.hget(SellerKeys(seller).member(seller), "otp") or ""
        if not otp:
            raise Unauthorized(ErrorCode.OTP_REQUIRED, "enter the verification code")
        if not otp_ok(secret, otp):
            raise Unauthorized(ErrorCode.BAD_OTP, "wrong verification code")
    assert node.tokens is not None
    return {"token": node.tokens.member_token(seller, mid, m.version), "seller": seller,
            "member": m.public(), "stores": await node.accounts.servable_stores(m),
            "store_names": {s: v["name"] for s, v in (await node.accounts.stores(seller)).items()},
            "expires_in": int(node.settings.token_ttl)}


@api
async def buyer_session(req: Request) -> Any:
    """An anonymous buyer id for a store (or the same one again, given its still-valid token)."""
    node: Node = req.app.state.node
    b = await body(req)
    seller, store = str(b.get("seller", "")), str(b.get("store", ""))
    if not await node.accounts.store_exists(seller, store):
        raise NotFound(ErrorCode.NOT_FOUND, "no such store")
    assert node.tokens is not None
    buyer = ""
    if b.get("token"):
        try:
            ident = node.tokens.decode(str(b["token"]))
            if ident.kind == "buyer" and ident.seller == seller:
                buyer = ident.user
        except KefuError:
            pass
    buyer = buyer or "a-" + secrets.token_hex(8)
    k = SellerKeys(seller)
    return {"token": node.tokens.buyer_token(seller, store, buyer), "buyer": buyer, "seller": seller,
            "store": store, "store_name": await node.r.hget(k.stores, store)}


@api
async def stores_public(req: Request) -> Any:
    node: Node = req.app.state.node
    seller = req.path_params["seller"]
    try:
        stores = await node.accounts.stores(seller)
    except BadRequest:
        stores = {}
    return {"seller": seller, "stores": [{"store": s, "name": v["name"]} for s, v in stores.items()]}


@api
async def me(req: Request) -> Any:
    m = await caller(req)
    return {"member": m.public(), "seller": m.seller}


# ---- admin API (R1–R4, every call checked against the caller's seller and permissions) --------

@api
async def members(req: Request) -> Any:
    node: Node = req.app.state.node
    if req.method == "GET":
        m = await caller(req, "dashboard")
        return {"members": [x.public() for x in await node.accounts.list(m.seller)],
                "quota": int((await node.accounts.seller_info(m.seller)).get("quota", 0))}
    m = await caller(req, "manage")
    b = await body(req)
    fields = {f: b[f] for f in ("name", "role", "grants", "revokes", "groups", "stores", "capacity", "expires")
              if f in b}
    new = await node.accounts.create_member(m.seller, str(b.get("member", "")), str(b.get("password", "")), **fields)
    await node.accounts.compute_route(new)
    return JSONResponse({"member": new.public()}, status_code=201)


@api
async def member(req: Request) -> Any:
    node: Node = req.app.state.node
    mid = req.path_params["member"]
    if req.method == "GET":
        m = await caller(req, "dashboard")
        return {"member": (await node.accounts.get(m.seller, mid)).public()}
    m = await caller(req, "manage")
    if req.method == "DELETE":
        await node.accounts.delete_member(m.seller, mid)
        node.kick(m.seller, mid, "account deleted")
        return {"deleted": mid}
    b = await body(req)
    if "status" in b:
        raise BadRequest(ErrorCode.INVALID, "use POST /api/admin/members/{m}/status")
    before = await node.accounts.get(m.seller, mid)
    upd = await node.accounts.update_member(m.seller, mid, **b)
    await node.accounts.compute_route(upd)
    if upd.version != before.version:
        node.kick(m.seller, mid, "account changed: log in again")  # R1: disabled/expired -> disconnected at once
    await node.dispatcher.drain_for(m.seller, mid)
    return {"member": upd.public()}


@api
async def member_status(req: Request) -> Any:
    """R9: the seller (or a supervisor with manage) suspends/resumes a member from the live view."""
    node: Node = req.app.state.node
    m = await caller(req, "manage")
    b = await body(req)
    status = str(b.get("status", "toggle"))
    if status not in ("online", "idle", "toggle"):
        raise BadRequest(ErrorCode.INVALID, "status is online, idle or toggle")
    return await node.presence.set_status(m, req.path_params["member"], status)


@api
async def groups(req: Request) -> Any:
    node: Node = req.app.state.node
    if req.method == "GET":
        m = await caller(req, "dashboard")
        return {"groups": list((await node.accounts.groups(m.seller)).values())}
    m = await caller(req, "manage")
    b = await body(req)
    await node.accounts.create_group(m.seller, str(b.get("group", "")), str(b.get("name", "")))
    return JSONResponse({"group": b.get("group")}, status_code=201)


@api
async def stores(req: Request) -> Any:
    node: Node = req.app.state.node
    if req.method == "GET":
        m = await caller(req, "dashboard")
        return {"stores": list((await node.accounts.stores(m.seller)).values())}
    m = await caller(req, "manage")
    b = await body(req)
    groups_ = b.get("groups") or []
    if not isinstance(groups_, list):
        raise BadRequest(ErrorCode.INVALID, "groups must be a list")
    secret = await node.accounts.create_store(m.seller, str(b.get("store", "")), str(b.get("name", "")), groups_)
    await node.accounts.recompute_all(m.seller)
    return JSONResponse({"store": b.get("store"), "secret": secret}, status_code=201)


@api
async def store(req: Request) -> Any:
    node: Node = req.app.state.node
    m = await caller(req, "manage")
    b = await body(req)
    await node.accounts.update_store(m.seller, req.path_params["store"], name=b.get("name"), groups=b.get("groups"))
    await node.accounts.recompute_all(m.seller)
    for q in await node.dispatcher.all_queues(m.seller):
        await node.dispatcher.drain(m.seller, [q])
    return {"store": req.path_params["store"]}


@api
async def seller(req: Request) -> Any:
    node: Node = req.app.state.node
    if req.method == "GET":
        m = await caller(req, "dashboard")
        info = await node.accounts.seller_info(m.seller)
        return {"seller": m.seller, **{k: v for k, v in info.items() if k != "otp"}}
    m = await caller(req, "manage")
    if not m.main:
        raise Forbidden(ErrorCode.FORBIDDEN, "only the main account changes seller settings")
    info = await node.accounts.update_seller(m.seller, **(await body(req)))
    return {"seller": m.seller, **info}


@api
async def live(req: Request) -> Any:
    node: Node = req.app.state.node
    m = await caller(req, "dashboard")
    return await snapshot(node, m.seller)


@api
async def explain(req: Request) -> Any:
    node: Node = req.app.state.node
    m = await caller(req, "dashboard")
    h = await node.conversations.get(m.seller, req.path_params["conv"])
    xfers = await node.r.lrange(SellerKeys(m.seller).transfers(req.path_params["conv"]), 0, -1)
    return {**explanation(req.path_params["conv"], h), "transfers": [json.loads(x) for x in xfers]}


# ---- operations -------------------------------------------------------------------------------

async def healthz(req: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(req: Request) -> Response:
    node: Node = req.app.state.node
    try:
        ok = node.ready and await node.r.ping()
    except Exception:
        ok = False
    return PlainTextResponse("ready" if ok else "not ready", status_code=200 if ok else 503)


async def metrics(req: Request) -> Response:
    node: Node = req.app.state.node
    tok = node.settings.metrics_token
    client = req.client.host if req.client else ""
    if tok:
        if not hmac.compare_digest(req.headers.get("authorization", "").encode(), f"Bearer {tok}".encode()):
            return PlainTextResponse("forbidden", status_code=403)
    elif client not in ("127.0.0.1", "::1", "localhost", "testclient"):
        return PlainTextResponse("forbidden", status_code=403)
    from .metrics import CONTENT_TYPE
    return Response(await node.metrics.scrape(node), media_type=CONTENT_TYPE)


def web_dir() -> Path:
    import kefu.clients
    return Path(kefu.clients.__file__).parent / "web"


class Front:
    """The ASGI entry point. ``/ws`` goes straight to the gateway: a socket lives for hours, and the
    middleware stack would keep its frames alive per socket and wrap every frame sent (memory, CPU).
    Everything else (HTTP, lifespan) goes through Starlette."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # a plain function returning the coroutine: no frame of ours stays alive under each socket
        if scope["type"] == "websocket" and scope.get("path") == "/ws":
            scope["app"] = self.app
            return gateway.endpoint(WebSocket(scope, receive, send))
        return self.app(scope, receive, send)


def create_app(settings: Settings, redis_url: str) -> Front:
    node = Node(settings, redis_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    routes: list[Any] = [
        WebSocketRoute("/ws", gateway.endpoint),
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/buyer/session", buyer_session, methods=["POST"]),
        Route("/api/sellers/{seller}/stores", stores_public),
        Route("/api/me", me),
        Route("/api/admin/seller", seller, methods=["GET", "PATCH"]),
        Route("/api/admin/members", members, methods=["GET", "POST"]),
        Route("/api/admin/members/{member}", member, methods=["GET", "PATCH", "DELETE"]),
        Route("/api/admin/members/{member}/status", member_status, methods=["POST"]),
        Route("/api/admin/groups", groups, methods=["GET", "POST"]),
        Route("/api/admin/stores", stores, methods=["GET", "POST"]),
        Route("/api/admin/stores/{store}", store, methods=["PATCH"]),
        Route("/api/admin/live", live),
        Route("/api/admin/conversations/{conv}", explain),
    ]
    from . import stats, work_orders
    routes += work_orders.http_routes() + stats.http_routes()
    web = web_dir()
    if web.is_dir():
        routes.append(Route("/", lambda r: RedirectResponse("/web/console/")))
        routes.append(Mount("/web", StaticFiles(directory=str(web), html=True), name="web"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)  # X-Request-Id, echoed and in every log line
    app.state.node = node
    return Front(app)
