"""Passwords (argon2id), signed expiring tokens (JWT HS256), one-time codes (TOTP, R4).

Member tokens carry the member's token version: disabling a member or changing its password
bumps the version, which invalidates every token issued before.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kefu.protocol.errors import ErrorCode, Unauthorized

ALG = "HS256"
BUYER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,60}$")


class Passwords:
    def __init__(self, time_cost: int = 2, memory_cost: int = 19456) -> None:
        self._ph = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)
        self._dummy = self._ph.hash(secrets.token_hex(8))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._ph.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Constant work whether or not the account exists (no user enumeration by timing)."""
        def check() -> bool:
            try:
                return self._ph.verify(hashed or self._dummy, password) and hashed is not None
            except (VerificationError, InvalidHashError):
                return False
        return await asyncio.to_thread(check)


@dataclass(frozen=True)
class Identity:
    kind: str          # "member" | "buyer"
    seller: str
    user: str          # member id or buyer id
    store: str = ""    # buyers: the store they talk to
    version: int = 0   # members: token version


class Tokens:
    def __init__(self, secret: str, ttl: float, buyer_ttl: float) -> None:
        self.secret = secret
        self.ttl = ttl
        self.buyer_ttl = buyer_ttl

    def member_token(self, seller: str, member: str, version: int, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return jwt.encode({"k": "m", "sel": seller, "sub": member, "v": version,
                           "iat": int(now), "exp": int(now + self.ttl)}, self.secret, ALG)

    def buyer_token(self, seller: str, store: str, buyer: str) -> str:
        now = time.time()
        return jwt.encode({"k": "b", "sel": seller, "st": store, "sub": buyer,
                           "iat": int(now), "exp": int(now + self.buyer_ttl)}, self.secret, ALG)

    def decode(self, token: str, store_secret: Any = None) -> Identity:
        """Verify a token signed by the server, or (``iss == "store"``) by a store's own secret.

        ``store_secret`` is a callable (seller, store) -> secret|None for store-signed tokens; it is
        looked up by the caller beforehand because this function is synchronous.
        """
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            key = self.secret
            if unverified.get("iss") == "store":
                key = store_secret(str(unverified.get("sel", "")), str(unverified.get("st", ""))) if store_secret else None
                if not key:
                    raise Unauthorized(ErrorCode.UNAUTHORIZED, "unknown store")
            claims = jwt.decode(token, key, algorithms=[ALG], options={"require": ["exp", "sub", "sel"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized(ErrorCode.TOKEN_EXPIRED, "token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized(ErrorCode.UNAUTHORIZED, "invalid token") from None
        sel, sub = str(claims["sel"]), str(claims["sub"])
        if claims.get("iss") == "store":
            if not BUYER_ID.match(sub):  # the id goes into keys and channel names: keep it plain
                raise Unauthorized(ErrorCode.UNAUTHORIZED, "buyer id: 1-60 of [A-Za-z0-9_.:@-]")
            return Identity("buyer", sel, "x-" + sub, str(claims.get("st", "")))
        if claims.get("k") == "b":
            return Identity("buyer", sel, sub, str(claims.get("st", "")))
        if claims.get("k") == "m":
            return Identity("member", sel, sub, version=int(claims.get("v", 0)))
        raise Unauthorized(ErrorCode.UNAUTHORIZED, "invalid token")


def store_token(secret: str, seller: str, store: str, buyer: str, ttl: float = 3600) -> str:
    """What a store's own app signs to let its logged-in buyer chat (documented in PROTOCOL.md)."""
    now = int(time.time())
    return jwt.encode({"iss": "store", "sel": seller, "st": store, "sub": buyer, "iat": now, "exp": now + int(ttl)},
                      secret, ALG)


def new_otp_secret() -> str:
    return pyotp.random_base32()


def otp_ok(secret: str, code: str) -> bool:
    return bool(secret) and pyotp.TOTP(secret).verify(code, valid_window=1)
