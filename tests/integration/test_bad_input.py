"""Bad input gets a clear error and loses nothing; abuse closes the socket with a documented code."""
from __future__ import annotations

import asyncio

import msgspec
import pytest
from websockets.asyncio.client import connect

from kefu.clients.client import Client, ws_url
from kefu.protocol.errors import KefuError
from kefu_testing import PASSWORD


async def served(shop, codec="json"):
    m = await Client.login(shop.base, shop.login("alice"), PASSWORD, codec=codec)
    b = await Client.buyer(shop.base, shop.seller, "shop", codec=codec)
    conv = (await b.send("hello"))["conv"]
    await m.next_event("conv.assigned")
    return m, b, conv


async def reply(c):
    return await c.next_event("error", timeout=5) if False else None


@pytest.mark.parametrize("frame,code", [
    ("{oops", "bad_frame"),
    ('{"type": "warp", "id": 5, "data": {}}', "unknown_type"),
    ('{"type": "send", "id": 6, "data": {"cid": "x"}}', "invalid"),
    ('{"type": "send", "id": 7, "data": {"cid": "x", "text": 42}}', "invalid"),
    ('{"type": "send", "id": 8, "data": {"cid": "x", "text": "' + "长" * 4001 + '"}}', "too_large"),
    ('{"type": "history", "id": 9, "data": {"conv": "../../etc"}}', "invalid"),
])
async def test_malformed_frames_get_errors_and_the_connection_survives(shop, frame, code):
    m, b, conv = await served(shop)
    errors = []
    orig = b._on_frame

    def spy(env):
        if env.get("type") == "error" and env.get("id") not in b._pending:
            errors.append(env)
        orig(env)
    b._on_frame = spy
    await b.send_raw(frame)
    await b.request("ping")  # replies come in order: the error is already here
    assert errors and errors[0]["data"]["code"] == code, errors
    # the conversation and its data are intact and the socket still works
    await b.send("after the bad frame")
    got = await m.next_event("msg", pred=lambda d: d["text"] == "after the bad frame")
    h = await m.request("history", conv=conv)
    assert [x["text"] for x in h["messages"]] == ["hello", "after the bad frame"]
    await m.close(); await b.close()
    del got


async def test_garbage_msgpack_is_bad_frame(shop):
    m, b, conv = await served(shop, codec="msgpack")
    errors = []
    orig = b._on_frame
    b._on_frame = lambda env: (errors.append(env) if env.get("type") == "error" and env.get("id") is None else None,
                               orig(env))
    await b.send_raw(b"\xc1\xc1\xc1")
    await b.request("ping")
    assert errors and errors[0]["data"]["code"] == "bad_frame"
    await m.close(); await b.close()


async def test_oversized_frame_closes_with_1009(shop):
    m, b, conv = await served(shop)
    await b.send_raw("x" * (70 * 1024))
    assert (await b.next_event("closed"))["code"] == 1009
    # nothing lost: the buyer comes back and its conversation is there
    await b.connect()
    await b.send("back")
    await m.next_event("msg", pred=lambda d: d["text"] == "back")
    await m.close(); await b.close()


async def test_a_flood_closes_with_4008(spawn, make):
    node = spawn(rate=5, burst=5, max_bad_frames=10)
    shop = await make(base=node.base)
    b = await Client.buyer(shop.base, shop.seller, "shop")
    for i in range(100):
        try:
            await b.send_raw(msgspec.msgpack.encode({"type": "ping", "id": f"p{i}", "data": {}}))
        except Exception:
            break
    assert (await b.next_event("closed", timeout=10))["code"] == 4008


async def test_requests_before_auth_and_silence_close_with_4001(spawn, make):
    node = spawn(auth_timeout=0.5)
    shop = await make(base=node.base)
    async with connect(ws_url(shop.base), subprotocols=["kefu.v1.json"]) as ws:
        await ws.send('{"type": "ping", "id": 1, "data": {}}')
        err = msgspec.json.decode(await ws.recv())
        assert err["type"] == "error" and err["data"]["code"] == "unauthorized" and err["id"] == 1
        await ws.wait_closed()
        assert ws.close_code == 4001
    async with connect(ws_url(shop.base)) as ws:  # says nothing: closed at the deadline
        await ws.wait_closed()
        assert ws.close_code == 4001


async def test_origin_of_another_site_is_refused(shop):
    with pytest.raises(Exception):
        async with connect(ws_url(shop.base), origin="http://evil.example") as ws:  # type: ignore[arg-type]
            await ws.recv()


async def test_rate_limited_requests_get_an_error_not_a_disconnect(spawn, make):
    node = spawn(rate=2, burst=3, max_bad_frames=1000)
    shop = await make(base=node.base)
    b = await Client.buyer(shop.base, shop.seller, "shop")
    res = await asyncio.gather(*[b.request("ping") for _ in range(10)], return_exceptions=True)
    codes = [r.code.value for r in res if isinstance(r, KefuError)]
    assert codes and set(codes) == {"rate_limited"} and len(codes) < 10
    await b.close()
