"""Sellers, members (sub-accounts), groups, stores and permissions (R1–R4).

A seller's main account is the member whose id equals the seller name (login ``acme``);
sub-accounts log in as ``acme:bob``. Member ids are immutable (R1). Routing data used by the
dispatcher (the ``route`` hash: which queues a member may take from) is derived here whenever
anything that affects it changes.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from redis.asyncio import Redis
from redis.exceptions import WatchError

from kefu.protocol.errors import BadRequest, Conflict, ErrorCode, Forbidden, NotFound, Unauthorized

from .auth import Passwords, new_otp_secret
from .storage import keys as K
from .storage.keys import SellerKeys

SELLER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")

# R2: every action is checked against these.
PERMS = ("serve", "transfer", "dashboard", "manage", "wo_create", "wo_cancel", "wo_export")
ROLES: dict[str, frozenset[str]] = {
    "agent": frozenset({"serve", "transfer", "wo_create"}),
    "supervisor": frozenset({"serve", "transfer", "wo_create", "dashboard", "wo_cancel", "wo_export"}),
    "manager": frozenset(PERMS),
    "viewer": frozenset({"dashboard"}),
}
DEFAULT_QUOTA = 20
DEFAULT_CAPACITY = 5


def check_name(kind: str, value: str, rx: re.Pattern[str] = NAME_RE) -> str:
    if not isinstance(value, str) or not rx.match(value):
        raise BadRequest(ErrorCode.INVALID, f"invalid {kind} name {value!r}: letters, digits, _ . - (max 32)")
    return value


def csv(items: Iterable[str]) -> str:
    return ",".join(sorted(set(i for i in items if i)))


def uncsv(s: str | None) -> list[str]:
    return [x for x in (s or "").split(",") if x]


@dataclass
class Member:
    seller: str
    id: str
    name: str
    role: str
    perms: frozenset[str]
    groups: list[str]
    stores: list[str]          # explicit store restriction; empty = every store of its groups
    capacity: int
    expires: float             # ms; 0 = never
    disabled: bool
    main: bool
    version: int
    otp: str = ""
    grants: list[str] = field(default_factory=list)
    revokes: list[str] = field(default_factory=list)

    @property
    def login(self) -> str:
        return self.seller if self.main else f"{self.seller}:{self.id}"

    def can(self, perm: str) -> bool:
        return self.main or perm in self.perms

    def require(self, perm: str) -> None:
        if not self.can(perm):
            raise Forbidden(ErrorCode.FORBIDDEN, f"permission {perm!r} required")

    def expired(self, now_ms: float) -> bool:
        return bool(self.expires) and now_ms >= self.expires

    def public(self) -> dict[str, Any]:
        return {"member": self.id, "login": self.login, "name": self.name, "role": self.role,
                "perms": sorted(self.perms), "grants": self.grants, "revokes": self.revokes,
                "groups": self.groups, "stores": self.stores, "capacity": self.capacity,
                "expires": self.expires, "disabled": self.disabled, "main": self.main}


def effective_perms(role: str, grants: list[str], revokes: list[str], main: bool) -> frozenset[str]:
    if main:
        return frozenset(PERMS)
    return frozenset((ROLES.get(role, frozenset()) | set(grants)) - set(revokes))


def _member_from(seller: str, mid: str, h: dict[str, str]) -> Member:
    main = h.get("main") == "1"
    grants, revokes = uncsv(h.get("grants")), uncsv(h.get("revokes"))
    role = h.get("role", "agent")
    return Member(seller=seller, id=mid, name=h.get("name") or mid, role=role,
                  perms=effective_perms(role, grants, revokes, main), groups=uncsv(h.get("groups")),
                  stores=uncsv(h.get("stores")), capacity=int(h.get("capacity") or DEFAULT_CAPACITY),
                  expires=float(h.get("expires") or 0), disabled=h.get("disabled") == "1", main=main,
                  version=int(h.get("v") or 0), otp=h.get("otp", ""), grants=grants, revokes=revokes)


def _validate_perms(perms: Iterable[str]) -> list[str]:
    out = list(perms)
    bad = [p for p in out if p not in PERMS]
    if bad:
        raise BadRequest(ErrorCode.INVALID, f"unknown permission(s) {bad}; known: {list(PERMS)}")
    return out


class Accounts:
    def __init__(self, r: Redis, passwords: Passwords) -> None:
        self.r = r
        self.pw = passwords

    # ---- sellers -------------------------------------------------------------------------
    async def create_seller(self, seller: str, password: str, *, name: str = "", quota: int = DEFAULT_QUOTA,
                            require_otp: bool = False, capacity: int = DEFAULT_CAPACITY) -> dict[str, Any]:
        check_name("seller", seller, SELLER_RE)
        k = SellerKeys(seller)
        if not await self.r.sadd(K.SELLERS, seller):
            raise Conflict(ErrorCode.EXISTS, f"seller {seller!r} exists")
        otp = new_otp_secret() if require_otp else ""
        await self.r.hset(k.seller, mapping={"name": name or seller, "quota": quota, "require_otp": int(require_otp),
                                             "policy": "redispatch", "created": int(time.time() * 1000)})
        await self.r.hset(k.member(seller), mapping={"name": name or seller, "pw": await self.pw.hash(password),
                                                    "role": "manager", "main": "1", "capacity": capacity,
                                                    "otp": otp, "created": int(time.time() * 1000)})
        await self.r.sadd(k.members, seller)
        await self.r.hset(k.names, seller, name or seller)
        await self.r.hset(k.cap, seller, capacity)
        return {"seller": seller, "otp_secret": otp}

    async def seller_info(self, seller: str) -> dict[str, str]:
        h = await self.r.hgetall(SellerKeys(seller).seller)
        if not h:
            raise NotFound(ErrorCode.NOT_FOUND, "no such seller")
        return h

    async def update_seller(self, seller: str, **fields: Any) -> dict[str, str]:
        k = SellerKeys(seller)
        allowed = {"quota", "name", "require_otp", "policy", "sticky_window"}
        bad = set(fields) - allowed
        if bad:
            raise BadRequest(ErrorCode.INVALID, f"cannot set {sorted(bad)}")
        if "policy" in fields and fields["policy"] not in ("redispatch", "wait"):
            raise BadRequest(ErrorCode.INVALID, "policy is 'redispatch' or 'wait'")
        for f in ("quota", "sticky_window"):
            if f in fields and (not isinstance(fields[f], int) or isinstance(fields[f], bool) or fields[f] < 0):
                raise BadRequest(ErrorCode.INVALID, f"{f} must be a non-negative integer")
        if "require_otp" in fields:
            fields["require_otp"] = int(bool(fields["require_otp"]))
        if fields:
            await self.r.hset(k.seller, mapping=fields)
        return await self.seller_info(seller)

    # ---- members -------------------------------------------------------------------------
    async def get(self, seller: str, mid: str) -> Member:
        h = await self.r.hgetall(SellerKeys(seller).member(mid))
        if not h:
            raise NotFound(ErrorCode.NOT_FOUND, f"no member {mid!r}")
        return _member_from(seller, mid, h)

    async def for_token(self, ident: Any, now_ms: float) -> Member:
        """The member a token names, if that token still stands (R1: disabled/expired/revoked)."""
        try:
            m = await self.get(ident.seller, ident.user)
        except (NotFound, BadRequest):
            raise Unauthorized(ErrorCode.UNAUTHORIZED, "unknown account") from None
        if m.version != ident.version:
            raise Unauthorized(ErrorCode.TOKEN_EXPIRED, "token revoked: log in again")
        if m.disabled:
            raise Unauthorized(ErrorCode.ACCOUNT_DISABLED, "account disabled")
        if m.expired(now_ms):
            raise Unauthorized(ErrorCode.ACCOUNT_EXPIRED, "account expired")
        return m

    async def find_login(self, login: str) -> tuple[str, str]:
        """``acme`` -> (acme, acme) main account; ``acme:bob`` -> (acme, bob); ("", "") if malformed."""
        seller, _, mid = login.partition(":")
        mid = mid or seller
        if not SELLER_RE.match(seller) or not NAME_RE.match(mid):
            return "", ""
        return seller, mid

    async def list(self, seller: str) -> list[Member]:
        k = SellerKeys(seller)
        ids = sorted(await self.r.smembers(k.members))
        pipe = self.r.pipeline(transaction=False)
        for m in ids:
            pipe.hgetall(k.member(m))
        return [_member_from(seller, m, h) for m, h in zip(ids, await pipe.execute()) if h]

    async def create_member(self, seller: str, mid: str, password: str, *, name: str = "", role: str = "agent",
                            grants: list[str] | None = None, revokes: list[str] | None = None,
                            groups: list[str] | None = None, stores: list[str] | None = None,
                            capacity: int = DEFAULT_CAPACITY, expires: float = 0) -> Member:
        check_name("member", mid)
        if mid == seller:
            raise BadRequest(ErrorCode.INVALID, "a sub-account cannot take the seller's own name")
        if role not in ROLES:
            raise BadRequest(ErrorCode.INVALID, f"unknown role {role!r}; known: {sorted(ROLES)}")
        if len(password) < 6:
            raise BadRequest(ErrorCode.INVALID, "password: at least 6 characters")
        k = SellerKeys(seller)
        info = await self.seller_info(seller)
        await self._check_refs(seller, groups or [], stores or [])
        hashed = await self.pw.hash(password)
        rec = {"name": name or mid, "pw": hashed, "role": role, "grants": csv(_validate_perms(grants or [])),
               "revokes": csv(_validate_perms(revokes or [])), "groups": csv(groups or []),
               "stores": csv(stores or []), "capacity": int(capacity), "expires": int(expires), "disabled": "0",
               "v": 0, "created": int(time.time() * 1000)}
        quota = int(info.get("quota", DEFAULT_QUOTA))
        async with self.r.pipeline(transaction=True) as pipe:
            for _ in range(20):
                try:
                    await pipe.watch(k.members)
                    if await pipe.sismember(k.members, mid):
                        raise Conflict(ErrorCode.EXISTS, f"member {mid!r} exists")
                    if await pipe.scard(k.members) - 1 >= quota:  # the main account is not a sub-account
                        raise Conflict(ErrorCode.QUOTA_EXCEEDED, f"sub-account quota of {quota} reached")
                    pipe.multi()
                    pipe.sadd(k.members, mid)
                    pipe.hset(k.member(mid), mapping=rec)
                    pipe.hset(k.names, mid, rec["name"])
                    pipe.hset(k.cap, mid, int(capacity))
                    for g in groups or []:
                        pipe.sadd(k.group_members(g), mid)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
            else:
                raise Conflict(ErrorCode.CONFLICT, "busy, try again")
        return await self.get(seller, mid)

    async def _check_refs(self, seller: str, groups: list[str], stores: list[str]) -> None:
        k = SellerKeys(seller)
        for g in groups:
            if not await self.r.hexists(k.groups, g):
                raise NotFound(ErrorCode.NOT_FOUND, f"no group {g!r}")
        for s in stores:
            if not await self.r.hexists(k.stores, s):
                raise NotFound(ErrorCode.NOT_FOUND, f"no store {s!r}")

    async def update_member(self, seller: str, mid: str, **f: Any) -> Member:
        """Change anything but the id (R1: the name is immutable)."""
        if "member" in f or "id" in f or "login" in f:
            raise Conflict(ErrorCode.NAME_IMMUTABLE, "a member's name cannot be changed (R1)")
        m = await self.get(seller, mid)
        k = SellerKeys(seller)
        rec: dict[str, Any] = {}
        bump = False
        if "name" in f:
            rec["name"] = str(f.pop("name"))[:64] or mid
        if "password" in f:
            pw = str(f.pop("password"))
            if len(pw) < 6:
                raise BadRequest(ErrorCode.INVALID, "password: at least 6 characters")
            rec["pw"] = await self.pw.hash(pw)
            bump = True
        if "role" in f:
            role = f.pop("role")
            if m.main or role not in ROLES:
                raise BadRequest(ErrorCode.INVALID, f"bad role {role!r}")
            rec["role"] = role
        for fld in ("grants", "revokes"):
            if fld in f:
                rec[fld] = csv(_validate_perms(f.pop(fld)))
        if "groups" in f or "stores" in f:
            groups, stores = f.pop("groups", m.groups), f.pop("stores", m.stores)
            await self._check_refs(seller, groups, stores)
            rec["groups"], rec["stores"] = csv(groups), csv(stores)
            for g in set(m.groups) - set(groups):
                await self.r.srem(k.group_members(g), mid)
            for g in groups:
                await self.r.sadd(k.group_members(g), mid)
        if "capacity" in f:
            cap = f.pop("capacity")
            if not isinstance(cap, int) or isinstance(cap, bool) or not 0 <= cap <= 1000:
                raise BadRequest(ErrorCode.INVALID, "capacity: integer 0..1000")
            rec["capacity"] = cap
            await self.r.hset(k.cap, mid, cap)
        if "expires" in f:
            rec["expires"] = int(f.pop("expires") or 0)
            bump = True
        if "disabled" in f:
            if m.main:
                raise BadRequest(ErrorCode.INVALID, "the main account cannot be disabled")
            rec["disabled"] = "1" if f.pop("disabled") else "0"
            bump = True
        if f:
            raise BadRequest(ErrorCode.INVALID, f"unknown field(s) {sorted(f)}")
        if rec:
            await self.r.hset(k.member(mid), mapping=rec)
            if "name" in rec:
                await self.r.hset(k.names, mid, rec["name"])
        if bump:
            await self.r.hincrby(k.member(mid), "v", 1)
        return await self.get(seller, mid)

    async def delete_member(self, seller: str, mid: str) -> None:
        m = await self.get(seller, mid)
        if m.main:
            raise BadRequest(ErrorCode.INVALID, "the main account cannot be deleted")
        k = SellerKeys(seller)
        pipe = self.r.pipeline(transaction=True)
        pipe.srem(k.members, mid)
        pipe.delete(k.member(mid))
        pipe.hdel(k.route, mid)
        pipe.hdel(k.names, mid)
        for g in m.groups:
            pipe.srem(k.group_members(g), mid)
        await pipe.execute()

    # ---- groups and stores ------------------------------------------------------------------
    async def create_group(self, seller: str, gid: str, name: str = "") -> None:
        check_name("group", gid)
        if not await self.r.hsetnx(SellerKeys(seller).groups, gid, name or gid):
            raise Conflict(ErrorCode.EXISTS, f"group {gid!r} exists")

    async def groups(self, seller: str) -> dict[str, dict[str, Any]]:
        k = SellerKeys(seller)
        out = {}
        for g, name in sorted((await self.r.hgetall(k.groups)).items()):
            out[g] = {"group": g, "name": name, "members": sorted(await self.r.smembers(k.group_members(g)))}
        return out

    async def create_store(self, seller: str, sid: str, name: str = "", groups: list[str] | None = None) -> str:
        check_name("store", sid)
        await self._check_refs(seller, groups or [], [])
        k = SellerKeys(seller)
        if not await self.r.hsetnx(k.stores, sid, name or sid):
            raise Conflict(ErrorCode.EXISTS, f"store {sid!r} exists")
        secret = secrets.token_urlsafe(32)
        await self.r.hset(k.store(sid), mapping={"name": name or sid, "secret": secret, "groups": csv(groups or [])})
        return secret

    async def update_store(self, seller: str, sid: str, *, name: str | None = None,
                           groups: list[str] | None = None) -> None:
        k = SellerKeys(seller)
        if not await self.r.hexists(k.stores, sid):
            raise NotFound(ErrorCode.NOT_FOUND, f"no store {sid!r}")
        if groups is not None:
            await self._check_refs(seller, groups, [])
            await self.r.hset(k.store(sid), "groups", csv(groups))
        if name:
            await self.r.hset(k.store(sid), "name", name)
            await self.r.hset(k.stores, sid, name)

    async def stores(self, seller: str) -> dict[str, dict[str, Any]]:
        k = SellerKeys(seller)
        out = {}
        for s in sorted(await self.r.hkeys(k.stores)):
            h = await self.r.hgetall(k.store(s))
            out[s] = {"store": s, "name": h.get("name", s), "groups": uncsv(h.get("groups"))}
        return out

    async def store_secret(self, seller: str, sid: str) -> str | None:
        if not SELLER_RE.match(seller) or not NAME_RE.match(sid):
            return None
        return await self.r.hget(SellerKeys(seller).store(sid), "secret")

    async def store_exists(self, seller: str, sid: str) -> bool:
        return bool(SELLER_RE.match(seller) and NAME_RE.match(sid)
                    and await self.r.hexists(SellerKeys(seller).stores, sid))

    # ---- routing ---------------------------------------------------------------------------
    async def servable_stores(self, m: Member) -> list[str]:
        """Stores whose groups include one of the member's groups, narrowed by its explicit list (R3, R4)."""
        stores = await self.stores(m.seller)
        mine = set(m.groups)
        out = [s for s, st in stores.items() if mine & set(st["groups"])]
        return [s for s in out if not m.stores or s in m.stores]

    async def compute_route(self, m: Member, serving: list[str] | None = None) -> str:
        """The ``route`` entry: queues this member may take from. Empty unless it may serve (R2)."""
        k = SellerKeys(m.seller)
        if serving is None:
            raw = await self.r.hget(k.member(m.id), "serving")
            serving = None if raw is None or raw == "*" else uncsv(raw)
        else:
            await self.r.hset(k.member(m.id), "serving", csv(serving))
        if not m.can("serve") or m.disabled:
            await self.r.hdel(k.route, m.id)
            return ""
        stores = await self.servable_stores(m)
        if serving is not None:
            stores = [s for s in stores if s in serving]
        route = "," + ",".join([f"s:{s}" for s in stores] + [f"g:{g}" for g in m.groups]) + ","
        await self.r.hset(k.route, m.id, route)
        return route

    async def recompute_all(self, seller: str) -> None:
        for m in await self.list(seller):
            await self.compute_route(m)
