"""resp.py, the hiredis Redis client under Scripts and Hub, against a real redis-server.

Kill tests use a private Redis (CLIENT KILL there does not disturb the shared test node).
"""
from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from typing import Any, AsyncIterator, Iterator

import msgspec
import pytest
import redis
import redis.asyncio

from kefu.protocol.errors import KefuError
from kefu.server.embedded import EmbeddedRedis
from kefu.server.hub import Hub
from kefu.server.storage.resp import ConnectionLost, ReplyError, Resp, parse_url
from kefu.server.storage.scripts import MAX_BATCH, Scripts
from kefu_testing import RedisProc, eventually, unique

_pack = msgspec.msgpack.Encoder().encode

NESTED = """return {KEYS[1], tonumber(ARGV[1]), false, {ARGV[2], {7, 'x'}, {}},
                    redis.call('get', KEYS[1] .. ':missing'), {ok = 'OK'}}"""
ECHO = "return {KEYS[1], ARGV[1]}"
BOOM = "if ARGV[1] == 'boom' then return redis.error_reply('boom ' .. KEYS[1]) end return ARGV[1]"
ERR = "return {'err', 'not_found'}"


def scripts_with(r: Resp, **lua: str) -> Scripts:
    """Scripts with extra test scripts next to the real ones."""
    s = Scripts(r)
    for name, src in lua.items():
        s._src[name] = src
        s._sha[name] = hashlib.sha1(src.encode()).hexdigest()
    return s


@pytest.fixture
def private_redis() -> Iterator[RedisProc]:
    rp = RedisProc().start()
    yield rp
    rp.stop()


@pytest.fixture
async def resp(redis_proc: RedisProc) -> AsyncIterator[Resp]:
    r = Resp(redis_proc.url, decode=True)
    yield r
    await r.aclose()


def test_urls() -> None:
    a = parse_url("redis://:p%40ss@10.0.0.1:6380/3")
    assert (a.path, a.host, a.port, a.username, a.password, a.db) == (None, "10.0.0.1", 6380, None, "p@ss", 3)
    a = parse_url("unix:///tmp/kefu/redis.sock?db=2")
    assert (a.path, a.password, a.db) == ("/tmp/kefu/redis.sock", None, 2)
    assert parse_url("redis://u:pw@h").username == "u" and parse_url("redis://h").port == 6379
    with pytest.raises(ValueError):
        parse_url("rediss://h:1")


async def test_replies_are_decoded_like_redis_py(resp: Resp, redis_proc: RedisProc) -> None:
    s = scripts_with(resp, nested=NESTED)
    key = unique("k")
    got = await s.run("nested", [key], [42, "é ü"])
    ref = await asyncio.to_thread(redis_proc.client().eval, NESTED, 1, key, 42, "é ü")
    assert got == ref == [key, 42, None, ["é ü", [7, "x"], []], None, "OK"]
    raw = Resp(redis_proc.url)  # decode=False: bytes, as the hub wants them
    try:
        assert await raw.execute("ECHO", "é") == "é".encode()
        assert await raw.execute("GET", unique("none")) is None
        assert await raw.execute("INCRBY", unique("n"), 5) == 5
    finally:
        await raw.aclose()


async def test_err_reply_becomes_kefu_error(resp: Resp) -> None:
    s = scripts_with(resp, err=ERR)
    with pytest.raises(KefuError) as e:
        await s.run("err", [], [])
    assert e.value.code.value == "not_found"


async def test_an_error_in_the_middle_of_a_batch_spoils_nothing_else(resp: Resp) -> None:
    s = scripts_with(resp, boom=BOOM)
    before = s.batches
    res = await asyncio.gather(s.run("boom", ["a"], ["one"]), s.run("boom", ["b"], ["boom"]),
                               s.run("boom", ["c"], [None]), s.run("boom", ["d"], ["four"]),
                               return_exceptions=True)
    assert s.batches == before + 1
    assert res[0] == "one" and res[3] == "four"
    assert isinstance(res[1], ReplyError) and "boom b" in str(res[1])
    assert isinstance(res[2], redis.exceptions.DataError)  # None cannot be sent: only that call fails
    # a raw batch too: errors are items of the results, not raised
    got = await resp.batch([("SET", "resp:x", "1"), ("INCR", "resp:x:bad", "extra"), ("GET", "resp:x")])
    assert got[0] == "OK" and isinstance(got[1], ReplyError) and got[2] == "1"
    with pytest.raises(ReplyError):
        await resp.execute("NOSUCHCOMMAND")


async def test_noscript_after_script_flush_reloads_and_retries(private_redis: RedisProc) -> None:
    resp = Resp(private_redis.url, decode=True)  # not the shared Redis: its node would reload lazily
    redis_proc = private_redis
    s = scripts_with(resp, echo=ECHO)
    assert await asyncio.wait_for(s.run("echo", ["k"], ["v0"]), 10) == ["k", "v0"]  # loaded on NOSCRIPT
    await asyncio.to_thread(redis_proc.client().script_flush)
    res = await asyncio.wait_for(asyncio.gather(*(s.run("echo", [f"k{i}"], [f"v{i}"]) for i in range(50))), 10)
    assert res == [[f"k{i}", f"v{i}"] for i in range(50)]
    exists = await asyncio.to_thread(redis_proc.client().script_exists, s._sha["echo"])
    assert exists == [True]
    await resp.aclose()


async def test_every_new_connection_loads_all_scripts_first(private_redis: RedisProc) -> None:
    """After a Redis restart no call hits NOSCRIPT (its retry would come after the rest of its batch)."""
    r = Resp(private_redis.url, decode=True)
    s = Scripts(r)
    shas = list(s._sha.values())
    admin = private_redis.client()
    try:
        assert await asyncio.to_thread(admin.script_exists, *shas) == [False] * len(shas)
        assert await s.run("status", ["st", "want", "conns", "names"], ["nobody", "online", "ch:"]) is not None
        assert await asyncio.to_thread(admin.script_exists, *shas) == [True] * len(shas)
        private_redis.stop()
        await asyncio.to_thread(private_redis.start)
        admin = private_redis.client()
        assert await asyncio.to_thread(admin.script_exists, *shas) == [False] * len(shas)
        assert await s.run("status", ["st", "want", "conns", "names"], ["nobody", "online", "ch:"]) is not None
        assert await asyncio.to_thread(admin.script_exists, *shas) == [True] * len(shas)
        assert r.connects == 2
    finally:
        await r.aclose()


async def test_calls_of_one_tick_share_few_batches_and_replies_match(resp: Resp) -> None:
    s = scripts_with(resp, echo=ECHO)
    await s.run("echo", ["warm"], ["up"])  # connected, script loaded
    before, connects = s.batches, resp.connects
    n = 1000
    res = await asyncio.gather(*(s.run("echo", [f"k{i}"], [i]) for i in range(n)))
    assert res == [[f"k{i}", str(i)] for i in range(n)]
    assert s.batches - before == -(-n // MAX_BATCH)  # 2 batches of at most MAX_BATCH, both in flight at once
    assert resp.connects == connects == 1  # one connection carries them


async def test_a_batch_in_flight_when_the_connection_is_killed_is_resent(private_redis: RedisProc) -> None:
    r = Resp(private_redis.url, decode=True)
    try:
        s = scripts_with(r, echo=ECHO)
        assert await s.run("echo", ["a"], ["1"]) == ["a", "1"]
        key = unique("blk")
        blocked = asyncio.ensure_future(r.execute("BLPOP", key, 30))  # holds the connection's replies
        admin = redis.asyncio.Redis(port=private_redis.port)
        await eventually(lambda: _blocked_clients(admin), 5, "BLPOP to block")
        run = asyncio.ensure_future(s.run("echo", ["b"], ["2"]))  # queued behind BLPOP on the same socket
        await eventually(lambda: s.batches == 2, 5, "the batch to be sent")  # sent in the step that counts it
        assert not run.done() and not blocked.done()
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await admin.aclose()
        assert killed >= 1
        with pytest.raises(ConnectionLost):  # a plain command is not retried: its caller hears it
            await asyncio.wait_for(blocked, 5)
        assert await asyncio.wait_for(run, 5) == ["b", "2"]  # the script batch was re-sent
        assert r.connects == 2
        assert await s.run("echo", ["c"], ["3"]) == ["c", "3"]
    finally:
        await r.aclose()


async def _blocked_clients(admin: "redis.asyncio.Redis[bytes]") -> bool:
    info = await admin.info("clients")
    return int(info["blocked_clients"]) >= 1


async def test_redis_down_fails_calls_after_retries_without_spinning_then_recovers(private_redis: RedisProc) -> None:
    r = Resp(private_redis.url, decode=True)
    try:
        s = scripts_with(r, echo=ECHO)
        assert await s.run("echo", ["a"], ["1"]) == ["a", "1"]
        private_redis.stop()
        cpu0, t0 = time.process_time(), time.monotonic()
        calls = [asyncio.ensure_future(s.run("echo", [f"k{i}"], [i])) for i in range(100)]
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(calls[0], 15)
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        assert all(isinstance(c.exception(), ConnectionLost) for c in await _all(calls))
        assert 2.0 < elapsed < 8.0  # the retries took the back-off schedule (0.1 + 0.2 + ... + 1 s)
        assert cpu < 0.5 * elapsed  # waiting, not spinning
        # Redis back: calls work again, and a run waiting in its retries completes
        pending = asyncio.ensure_future(s.run("echo", ["p"], ["q"]))
        await asyncio.to_thread(private_redis.start)
        assert await asyncio.wait_for(pending, 10) == ["p", "q"]  # NOSCRIPT on the new server: reloaded
        assert await s.run("echo", ["b"], ["2"]) == ["b", "2"]
    finally:
        await r.aclose()


async def _all(futs: list["asyncio.Future[Any]"]) -> list["asyncio.Future[Any]"]:
    await asyncio.wait(futs, timeout=15)
    return futs


async def test_auth_select_and_unix_socket(private_redis: RedisProc) -> None:
    admin = private_redis.client()
    await asyncio.to_thread(admin.config_set, "requirepass", "s3cret")
    r = Resp(f"redis://:s3cret@127.0.0.1:{private_redis.port}/3", decode=True)
    bad = Resp(f"redis://:wrong@127.0.0.1:{private_redis.port}/0")
    try:
        assert await r.execute("SET", "in-db-3", "yes") == "OK"
        db3 = redis.Redis(port=private_redis.port, db=3, password="s3cret", decode_responses=True)
        assert await asyncio.to_thread(db3.get, "in-db-3") == "yes"
        with pytest.raises(ConnectionLost):
            await bad.execute("PING")
    finally:
        await r.aclose()
        await bad.aclose()
    emb = EmbeddedRedis(tempfile.mkdtemp(prefix="kefu-resp-"))  # short: a unix socket path has a limit
    url = await asyncio.to_thread(emb.start)
    u = Resp(url, decode=True)
    try:
        assert url.startswith("unix://") and await u.execute("PING") == "PONG"
    finally:
        await u.aclose()
        emb.stop()


async def test_writes_wait_for_a_paused_transport(resp: Resp) -> None:
    key = unique("big")
    big = "x" * (32 << 20)
    first = asyncio.ensure_future(resp.execute("SET", key, big))
    await resp.connect()
    for _ in range(3):
        await asyncio.sleep(0)  # a few loop turns: the first write is made
    conn = resp.conn
    assert conn is not None and conn._paused  # 32 MB do not fit the socket buffer: flow control on
    second = asyncio.ensure_future(resp.execute("STRLEN", key))
    await asyncio.sleep(0)
    assert conn._drained is not None and not second.done()  # waiting for resume_writing, not written
    assert await asyncio.wait_for(first, 30) == "OK"
    assert await asyncio.wait_for(second, 30) == len(big)  # written after the first: sees its value
    await resp.execute("DEL", key)


# ---- pub/sub ------------------------------------------------------------------------------
class Recorder:
    """A stand-in for a Connection: what Hub hands to a local socket."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def on_event(self, typ: str, d: Any, cache: dict[str, bytes]) -> None:
        self.events.append((typ, d))
        self.changed.set()

    async def wait_for(self, n: int, timeout: float = 10) -> None:
        async def until() -> None:
            while len(self.events) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(until(), timeout)


def ev(i: int) -> bytes:
    return _pack({"type": "msg", "data": {"i": i}})


async def numsub(client: "redis.asyncio.Redis[bytes]", *chans: str) -> list[int]:
    res = await client.pubsub_numsub(*chans)
    return [n for _, n in res]


async def test_hub_confirms_subscriptions_and_delivers_in_order(redis_proc: RedisProc) -> None:
    node_ch, ch = unique("node:"), unique("ch:")
    hub = Hub(redis_proc.url, node_ch)
    pub = redis.asyncio.Redis(port=redis_proc.port)
    node_events: list[Any] = []
    hub.on_node_event = node_events.append
    await hub.start()
    try:
        a, b = Recorder(), Recorder()
        await hub.subscribe(a, ch)
        assert await numsub(pub, ch) == [1]  # confirmed means subscribed: nothing published now is lost
        await hub.subscribe(b, ch)
        p = pub.pipeline(transaction=False)
        for i in range(300):
            p.publish(ch, ev(i))
        await p.execute()
        await a.wait_for(300)
        await b.wait_for(300)
        assert [d["i"] for _, d in a.events] == list(range(300)) == [d["i"] for _, d in b.events]
        assert hub.received == 300 and hub.delivered == 600
        await pub.publish(node_ch, _pack({"type": "node", "data": 1}))
        await eventually(lambda: bool(node_events), 5, "the node event")
        assert node_events == [{"type": "node", "data": 1}]
        await hub.unsubscribe(a, ch)
        await hub.unsubscribe(b, ch)
        await eventually(lambda: _is(numsub(pub, ch), [0]), 5, "the unsubscription")
        assert ch.encode() not in hub.subs
    finally:
        await pub.aclose()
        await hub.stop()


async def _is(aw: Any, want: Any) -> bool:
    return bool(await aw == want)


async def test_hub_resubscribes_everything_before_on_reconnect(private_redis: RedisProc) -> None:
    node_ch, chans = unique("node:"), [unique("ch:") for _ in range(3)]
    hub = Hub(private_redis.url, node_ch)
    pub = redis.asyncio.Redis(port=private_redis.port)
    sync = redis.Redis(port=private_redis.port)
    seen_at_resync: list[list[int]] = []
    unconfirmed_at_resync: list[list[bytes]] = []
    resynced = asyncio.Event()

    def on_reconnect() -> None:  # what the node's resync would read back must already be subscribed
        seen_at_resync.append([n for _, n in sync.pubsub_numsub(node_ch, *chans)])
        unconfirmed_at_resync.append(list(hub._pending))
        resynced.set()
    hub.on_reconnect.append(on_reconnect)
    await hub.start()
    try:
        recs = [Recorder() for _ in chans]
        for rec, ch in zip(recs, chans):
            await hub.subscribe(rec, ch)
        killed = await pub.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed == 1
        await asyncio.wait_for(resynced.wait(), 10)
        assert seen_at_resync == [[1, 1, 1, 1]] and hub.sub.connects == 2
        for i, ch in enumerate(chans):
            await pub.publish(ch, ev(i))
        for i, rec in enumerate(recs):
            await rec.wait_for(1)
            assert rec.events == [("msg", {"i": i})]
        # a Redis restart: the same, after the back-off; a subscribe made meanwhile is confirmed by it
        resynced.clear()
        private_redis.stop()
        late = Recorder()
        sub_late = asyncio.ensure_future(hub.subscribe(late, "late"))
        for _ in range(3):
            await asyncio.sleep(0)  # a few loop turns for it to run: it must still wait (Redis is down)
        assert not sub_late.done()
        await asyncio.to_thread(private_redis.start)
        await asyncio.wait_for(resynced.wait(), 15)
        await asyncio.wait_for(sub_late, 10)
        assert seen_at_resync[-1] == [1, 1, 1, 1]
        assert unconfirmed_at_resync == [[], []]  # "late" (subscribed last) was confirmed before the resync
        assert await numsub(pub, "late") == [1]
        await pub.publish("late", ev(9))
        await late.wait_for(1)
    finally:
        await pub.aclose()
        sync.close()
        await hub.stop()


async def test_a_failing_handler_does_not_drop_the_subscriber(redis_proc: RedisProc) -> None:
    hub = Hub(redis_proc.url, unique("node:"))
    pub = redis.asyncio.Redis(port=redis_proc.port)
    await hub.start()
    try:
        rec, ch = Recorder(), unique("ch:")
        await hub.subscribe(rec, ch)
        bad = Recorder()
        bad.on_event = lambda *a: 1 / 0  # type: ignore[method-assign]
        ch_bad = unique("ch:")
        await hub.subscribe(bad, ch_bad)
        await pub.publish(ch_bad, ev(0))
        await pub.publish(ch, ev(1))
        await rec.wait_for(1)
        assert rec.events == [("msg", {"i": 1})] and hub.sub.connects == 1
    finally:
        await pub.aclose()
        await hub.stop()


async def test_each_confirmation_answers_its_own_subscribe() -> None:
    """A socket subscribes, goes, and another subscribes the same channel before Redis confirmed the
    first SUBSCRIBE: the first confirmation must not release the second subscriber (its resume read
    would run before its subscription, and what is published in between would be missed).
    Hub logic only: the confirmations are handed in as the subscriber connection would."""
    hub = Hub("redis://127.0.0.1:1/0", "node:x")  # never connected: SUBSCRIBE writes go nowhere
    a, b = Recorder(), Recorder()
    first = asyncio.create_task(hub.subscribe(a, "ch"))
    await asyncio.sleep(0)  # let it send its SUBSCRIBE: yielding, not synchronisation on a peer
    await hub.unsubscribe(a, "ch")
    second = asyncio.create_task(hub.subscribe(b, "ch"))
    third = asyncio.create_task(hub.subscribe(a, "ch"))  # joins the second's SUBSCRIBE
    await asyncio.sleep(0)
    hub._on_push([b"subscribe", b"ch", 1])  # answers the first SUBSCRIBE
    await asyncio.wait_for(first, 1)
    await asyncio.sleep(0)
    assert not second.done() and not third.done()
    hub._on_push([b"unsubscribe", b"ch", 0])
    hub._on_push([b"subscribe", b"ch", 1])  # answers the second
    await asyncio.wait_for(asyncio.gather(second, third), 1)
    assert not hub._pending
