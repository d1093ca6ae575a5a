"""Accounts, auth and permissions (R1–R4), and tenant isolation on every read and write."""
from __future__ import annotations

import time

import jwt
import pyotp
import pytest
import redis.asyncio as aredis

from kefu.clients.client import Client, ahttp
from kefu.protocol.errors import KefuError
from kefu.server.auth import store_token
from kefu.server.storage.keys import SellerKeys
from kefu_testing import PASSWORD


async def token_of(shop, who=None):
    return (await ahttp("POST", shop.base + "/api/login", {"login": shop.login(who), "password": PASSWORD}))["token"]


async def code(coro):
    with pytest.raises(KefuError) as e:
        await coro
    return e.value.code.value


async def test_login_failures_say_the_same_for_unknown_account_and_wrong_password(shop):
    assert await code(Client.login(shop.base, shop.login("alice"), "wrong")) == "bad_credentials"
    assert await code(Client.login(shop.base, shop.login("nobody"), PASSWORD)) == "bad_credentials"
    assert await code(Client.login(shop.base, "no-such-seller:x", PASSWORD)) == "bad_credentials"


async def test_passwords_are_stored_with_argon2(shop, redis_proc):
    r = aredis.from_url(redis_proc.url, decode_responses=True)
    h = await r.hget(SellerKeys(shop.seller).member("alice"), "pw")
    assert h.startswith("$argon2id$") and PASSWORD not in h
    await r.aclose()


async def test_websocket_rejects_bad_expired_and_forged_tokens(shop):
    c = Client(shop.base, "not-a-token")
    assert await code(c.connect()) == "unauthorized"
    assert (await c.next_event("closed"))["code"] == 4001
    expired = jwt.encode({"k": "m", "sel": shop.seller, "sub": "alice", "v": 0, "exp": int(time.time()) - 10},
                         "test-secret-" + "x" * 32, "HS256")
    c = Client(shop.base, expired)
    assert await code(c.connect()) == "token_expired"
    forged = jwt.encode({"k": "m", "sel": shop.seller, "sub": shop.seller, "v": 0, "exp": int(time.time()) + 99},
                        "guessed-secret-" + "y" * 32, "HS256")
    c = Client(shop.base, forged)
    assert await code(c.connect()) == "unauthorized"


async def test_password_change_revokes_old_tokens(shop):
    old = await token_of(shop, "alice")
    main = await token_of(shop)
    await ahttp("PATCH", f"{shop.base}/api/admin/members/alice", {"password": "new-password-2"}, main)
    c = Client(shop.base, old)
    assert await code(c.connect()) == "token_expired"
    ok = await Client.login(shop.base, shop.login("alice"), "new-password-2")
    await ok.close()


async def test_quota_name_immutability_and_permissions(make):  # R1, R2
    shop = await make(quota=2, members={"alice": {"groups": ["pre"]}, "sup": {"groups": ["pre"], "role": "supervisor"}})
    main = await token_of(shop)
    with pytest.raises(KefuError) as e:
        await ahttp("POST", f"{shop.base}/api/admin/members", {"member": "third", "password": "pw-123456"}, main)
    assert e.value.code.value == "quota_exceeded"
    await ahttp("PATCH", f"{shop.base}/api/admin/seller", {"quota": 3}, main)
    r = await ahttp("POST", f"{shop.base}/api/admin/members",
                    {"member": "third", "password": "pw-123456", "groups": ["pre"], "grants": ["wo_export"]}, main)
    assert "wo_export" in r["member"]["perms"] and "serve" in r["member"]["perms"]
    assert await code(ahttp("PATCH", f"{shop.base}/api/admin/members/third", {"member": "renamed"}, main)) == "name_immutable"
    # an agent cannot manage; a supervisor can view but not manage
    agent = await token_of(shop, "alice")
    assert await code(ahttp("GET", f"{shop.base}/api/admin/members", token=agent)) == "forbidden"
    sup = await token_of(shop, "sup")
    assert len((await ahttp("GET", f"{shop.base}/api/admin/members", token=sup))["members"]) == 4
    assert await code(ahttp("POST", f"{shop.base}/api/admin/groups", {"group": "x"}, sup)) == "forbidden"
    # revoking serve takes the member out of routing
    await ahttp("PATCH", f"{shop.base}/api/admin/members/third", {"revokes": ["serve"]}, main)
    third = await Client.login(shop.base, shop.login("third"), "pw-123456")
    b = await Client.buyer(shop.base, shop.seller, "shop")
    r = await b.send("hi")
    assert r["dispatch"]["state"] == "queued"
    await third.close(); await b.close()


async def test_tenant_isolation_over_http_and_websocket(make):
    a = await make(members={"alice": {"groups": ["pre"]}})
    b = await make(members={"bob": {"groups": ["pre"]}})
    ta = await token_of(a)
    # seller A's token cannot see or touch seller B's member: it is simply not there
    assert await code(ahttp("GET", f"{a.base}/api/admin/members/bob", token=ta)) == "not_found"
    assert await code(ahttp("PATCH", f"{a.base}/api/admin/members/bob", {"capacity": 9}, ta)) == "not_found"
    assert await code(ahttp("POST", f"{a.base}/api/admin/members/bob/status", {"status": "idle"}, ta)) == "not_found"
    listed = {m["member"] for m in (await ahttp("GET", f"{a.base}/api/admin/members", token=ta))["members"]}
    assert "bob" not in listed
    # a conversation of B is invisible to A's members
    bob = await Client.login(b.base, b.login("bob"), PASSWORD)
    buyer = await Client.buyer(b.base, b.seller, "shop")
    conv = (await buyer.send("secret"))["conv"]
    await bob.next_event("conv.assigned")
    alice = await Client.login(a.base, a.login("alice"), PASSWORD)
    for req in ("history", "conv.get", "conv.close", "conv.explain"):
        assert await code(alice.request(req, conv=conv)) in ("not_found", "not_holder")
    assert await code(alice.send("x", conv=conv)) == "not_found"
    assert await code(ahttp("GET", f"{a.base}/api/admin/conversations/{conv}", token=ta)) == "not_found"
    for c in (bob, buyer, alice):
        await c.close()


async def test_one_time_code_when_the_seller_requires_it(make):  # R4
    shop = await make(require_otp=True)
    body = {"login": shop.login("alice"), "password": PASSWORD}
    assert await code(ahttp("POST", shop.base + "/api/login", body)) == "otp_required"
    assert await code(ahttp("POST", shop.base + "/api/login", {**body, "otp": "000000"})) == "bad_otp"
    r = await ahttp("POST", shop.base + "/api/login", {**body, "otp": pyotp.TOTP(shop.secrets["otp"]).now()})
    assert r["token"]


async def test_expired_member_cannot_log_in(make):  # R1
    shop = await make(members={"old": {"groups": ["pre"], "expires": int(time.time() * 1000) - 1000}})
    assert await code(Client.login(shop.base, shop.login("old"), PASSWORD)) == "account_expired"


async def test_member_is_disconnected_when_its_expiry_passes(make):  # R1
    shop = await make(members={"temp": {"groups": ["pre"], "expires": int(time.time() * 1000) + 1500}})
    c = await Client.login(shop.base, shop.login("temp"), PASSWORD)
    assert (await c.next_event("closed", timeout=10))["code"] == 4003


async def test_store_signed_buyer_token(shop):
    tok = store_token(shop.secrets["shop"], shop.seller, "shop", "user-42")
    b = Client(shop.base, tok)
    auth = await b.connect()
    assert auth["buyer"] == "x-user-42" and auth["store"] == "shop"
    await b.close()
    bad = store_token("not-the-secret-" + "z" * 32, shop.seller, "shop", "user-42")
    assert await code(Client(shop.base, bad).connect()) == "unauthorized"


async def test_anonymous_buyer_keeps_its_id_with_its_token(shop):
    r1 = await ahttp("POST", shop.base + "/api/buyer/session", {"seller": shop.seller, "store": "shop"})
    r2 = await ahttp("POST", shop.base + "/api/buyer/session", {"seller": shop.seller, "store": "shop", "token": r1["token"]})
    assert r1["buyer"] == r2["buyer"]
    assert await code(ahttp("POST", shop.base + "/api/buyer/session", {"seller": shop.seller, "store": "nope"})) == "not_found"


async def test_buyers_cannot_use_member_requests(shop):
    b = await Client.buyer(shop.base, shop.seller, "shop")
    for req, data in (("conv.close", {"conv": "c1"}), ("status.set", {"status": "idle"}), ("contacts", {}),
                      ("dash.snapshot", {})):
        assert await code(b.request(req, **data)) == "forbidden"
    await b.close()


async def test_repeated_failed_logins_are_rate_limited(make):
    shop = await make()
    for _ in range(10):
        assert await code(Client.login(shop.base, shop.login("alice"), "wrong")) == "bad_credentials"
    # now even the right password waits: brute force gets nowhere
    assert await code(Client.login(shop.base, shop.login("alice"), PASSWORD)) == "rate_limited"
    # other accounts are not affected
    main = await Client.login(shop.base, shop.seller, PASSWORD)
    await main.close()


async def test_malformed_logins_and_store_buyer_ids_are_refused(shop):
    for bad in ("a}b:alice", "x" * 80, "sel:al ice", ":", ""):
        assert await code(Client.login(shop.base, bad, PASSWORD)) == "bad_credentials"
    tok = store_token(shop.secrets["shop"], shop.seller, "shop", "evil\0id")
    assert await code(Client(shop.base, tok).connect()) == "unauthorized"
