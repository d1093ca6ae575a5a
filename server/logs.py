"""Logging set-up: plain text or JSON lines, with request and connection ids.

Never log passwords, tokens or message bodies. The code does not; ``Redact`` is defence in depth:
it masks anything that looks like a JWT, a bearer token, a URL password or a ``password``/``token``
field in every record (message, arguments and traceback) before it is written.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import time
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, MutableMapping

conn_id: ContextVar[str] = ContextVar("kefu_conn_id", default="")        # the WebSocket connection
request_id: ContextVar[str] = ContextVar("kefu_request_id", default="")  # HTTP X-Request-Id or WS request id

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_URL_PW = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")
_FIELD = re.compile(r"""(?i)(["']?\b(?:password|passwd|pw|secret|otp|otp_secret|token)["']?\s*[:=]\s*)"""
                    r"""("[^"]*"|'[^']*'|[^\s,;&}\]]+)""")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,64}$")
log = logging.getLogger("kefu.http")


def redact(s: str) -> str:
    if not s:
        return s
    s = _JWT.sub("[jwt]", s)
    s = _BEARER.sub(r"\1[redacted]", s)
    s = _URL_PW.sub(r"\1***@", s)
    return _FIELD.sub(r"\1[redacted]", s)


class Redact(logging.Filter):
    """Mask secrets in the final message and traceback of every record (defence in depth)."""

    _fmt = logging.Formatter()

    def filter(self, r: logging.LogRecord) -> bool:
        msg = r.getMessage()
        r.msg, r.args = redact(msg), None
        if r.exc_info and not r.exc_text:
            r.exc_text = self._fmt.formatException(r.exc_info)
        if r.exc_text:
            r.exc_text = redact(r.exc_text)
        return True


def _ids() -> dict[str, str]:
    out = {}
    if c := conn_id.get():
        out["conn"] = c
    if q := request_id.get():
        out["req"] = q
    return out


class JsonFormatter(logging.Formatter):
    def format(self, r: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(r.created, 3), "level": r.levelname.lower(), "logger": r.name,
                               "msg": r.getMessage(), **_ids()}
        if r.exc_text:
            out["exc"] = r.exc_text
        elif r.exc_info:
            out["exc"] = redact(self.formatException(r.exc_info))
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, r: logging.LogRecord) -> str:
        ids = _ids()
        line = super().format(r)
        return line + (" [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]" if ids else "")


def configure(level: str = "info", as_json: bool = False) -> None:
    h = logging.StreamHandler()
    h.setFormatter(JsonFormatter() if as_json else TextFormatter())
    h.addFilter(Redact())
    root = logging.getLogger("kefu")
    root.handlers[:] = [h]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own warnings, in the same format and filtered
        lg = logging.getLogger(name)
        lg.handlers[:] = [h]
        lg.propagate = False


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class RequestIdMiddleware:
    """Give each HTTP request an id (the client's ``X-Request-Id`` when well-formed), echo it in the
    response, and tag every log line written while serving it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        token = request_id.set(rid)
        t0 = time.perf_counter()
        status = 0

        async def send_with_id(msg: Any) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid.encode())]
            await send(msg)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.debug("%s %s %s %.1fms", scope.get("method"), scope.get("path"), status,
                      (time.perf_counter() - t0) * 1000)
            request_id.reset(token)
