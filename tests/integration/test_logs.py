"""Structured logs: JSON lines with request and connection ids; never a password, token or message body."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.request
import uuid
from typing import Any

import pytest

from kefu.clients.client import Client, ahttp
from kefu.protocol.errors import KefuError
from kefu.server.logs import JsonFormatter, Redact, redact
from kefu_testing import PASSWORD, eventually

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize("text, secret", [
    (f"token {JWT} refused", JWT),
    ("Authorization: Bearer abc.def-123", "abc.def-123"),
    ('{"login": "acme:bob", "password": "hunter2!"}', "hunter2!"),
    ("password=hunter2&otp=123456", "hunter2"),
    ("otp=123456 given", "123456"),
    ("joining redis://:s3cret-pw@10.0.0.5:6379/0", "s3cret-pw"),
])
def test_redact_masks_secrets(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out


def test_redact_leaves_error_codes_alone() -> None:
    for s in ("request error token_expired on 3fa2", "auth refused: bad_otp", "login password_policy ok"):
        assert redact(s) == s


def test_filter_redacts_arguments_and_tracebacks_before_formatting() -> None:
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        rec = logging.LogRecord("kefu.x", logging.ERROR, __file__, 1, "login %s with password=%s",
                                ("acme:bob", "hunter2"), sys.exc_info())
    assert Redact().filter(rec)
    line = JsonFormatter().format(rec)
    out = json.loads(line)
    assert "hunter2" not in line and JWT not in line
    assert out["msg"] == "login acme:bob with password=[redacted]" and "[jwt]" in out["exc"]


def http_login(base: str, login: str, request_id: str) -> tuple[dict[str, Any], str]:
    req = urllib.request.Request(base + "/api/login", method="POST",
                                 data=json.dumps({"login": login, "password": PASSWORD}).encode(),
                                 headers={"content-type": "application/json", "x-request-id": request_id})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read()), r.headers["x-request-id"]


async def test_json_logs_carry_ids_and_no_secret_or_message_body(make, spawn):
    node = spawn(log_json=1, log_level="debug")
    shop = await make(base=node.base)
    rid = "req-" + uuid.uuid4().hex[:12]
    login, echoed = await asyncio.to_thread(http_login, node.base, shop.login("alice"), rid)
    assert echoed == rid
    _, other = await asyncio.to_thread(http_login, node.base, shop.login("alice"), "not valid id!")
    assert other and other != "not valid id!"
    alice = Client(node.base, login["token"])
    await alice.connect()
    b = await Client.buyer(node.base, shop.seller, "shop")
    body_b, body_m = "buyer-body-" + uuid.uuid4().hex, "member-body-" + uuid.uuid4().hex
    conv = (await b.send(body_b))["conv"]
    await alice.next_event("conv.assigned")
    await alice.send(body_m, conv=conv)
    await b.next_event("msg", pred=lambda d: d["text"] == body_m)
    with pytest.raises(KefuError):
        await ahttp("POST", node.base + "/api/login", {"login": shop.login("alice"), "password": "wrong-" + PASSWORD})
    with pytest.raises(KefuError):
        await alice.request("conv.close", conv="no-such-conv")
    conn_lines: list[dict[str, Any]] = []

    def logged() -> bool:
        lines = [json.loads(x) for x in node.output().splitlines() if x.startswith("{")]
        conn_lines[:] = [x for x in lines if x.get("conn") and "not_found" in x["msg"]]
        return any(x.get("req") == rid and "/api/login" in x["msg"] for x in lines) and bool(conn_lines)
    await eventually(logged, what="the login and the request error in the log")
    assert conn_lines[0]["level"] == "info" and conn_lines[0]["logger"] == "kefu.gateway"
    for c in (alice, b):
        await c.close()
    out = node.output()
    for line in out.splitlines():
        if line.strip() and not line.startswith(("kefu on ", "embedded Redis")):
            json.loads(line)  # every log line is one JSON object
    for secret in (PASSWORD, login["token"], b.token, body_b, body_m):
        assert secret not in out
