"""Faults: a node killed with SIGKILL, a Redis restart, a server restart, a slow consumer."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from kefu.clients.client import Client, ahttp
from kefu_testing import PASSWORD, RedisProc, ServerProc, eventually, make_shop


async def test_killed_node_members_go_offline_and_chats_move(make, spawn):  # R10, R15
    doomed = spawn()
    shop = await make(members={"alice": {"groups": ["pre"], "capacity": 3}, "bob": {"groups": ["pre"], "capacity": 3}})
    alice = await Client.login(doomed.base, shop.login("alice"), PASSWORD)
    buyer = await Client.buyer(doomed.base, shop.seller, "shop")
    conv = (await buyer.send("help"))["conv"]
    await alice.next_event("conv.assigned")
    await alice.send("on it", conv=conv)
    await buyer.next_event("msg", pred=lambda d: d["text"] == "on it")
    bob = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    doomed.kill()  # SIGKILL: no goodbye, no cleanup
    ev = await bob.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "offline", timeout=20)
    assert ev
    moved = await bob.next_event("conv.assigned", pred=lambda d: d["conv"] == conv, timeout=20)
    assert moved["reason"].startswith("redispatch")
    # the buyer reconnects to a surviving node and resumes: nothing lost, nothing twice
    buyer.base = shop.base
    await buyer.connect()
    await bob.send("I take over", conv=conv)
    await buyer.next_event("msg", pred=lambda d: d["text"] == "I take over")
    assert buyer.texts(conv) == ["help", "on it", "I take over"] and buyer.duplicates == 0
    await bob.close(); await buyer.close()


async def test_redis_restart_loses_nothing_and_clients_carry_on(tmp_path):
    rp = RedisProc(appendonly=True, data_dir=str(tmp_path)).start()
    node = ServerProc(rp.url).start()
    try:
        shop = await make_shop(rp.url, node.base)
        alice = await Client.login(node.base, shop.login("alice"), PASSWORD)
        buyer = await Client.buyer(node.base, shop.seller, "shop")
        conv = (await buyer.send("before restart"))["conv"]
        await alice.next_event("conv.assigned")
        rp.stop()                 # graceful: the AOF is complete
        RedisProc(appendonly=True, data_dir=str(tmp_path), port=rp.port).start()

        async def send_works() -> bool:
            try:
                await alice.send("after restart", conv=conv, cid="after-1")
                return True
            except Exception:
                return False
        await eventually(send_works, 20, "the node to reach Redis again")
        got = await buyer.next_event("msg", pred=lambda d: d["text"] == "after restart", timeout=20)
        assert got["seq"] == 2
        h = await alice.request("history", conv=conv)
        assert [m["text"] for m in h["messages"]] == ["before restart", "after restart"]
        await alice.close(); await buyer.close()
    finally:
        node.stop()
        subprocess.run(["pkill", "-f", f"port {rp.port}"], check=False)


def redis_children(data_dir: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "redis-server" in cmd and data_dir in cmd:
            out.append(p)
    return out


async def test_embedded_server_restart_keeps_history_and_leaves_no_orphan(tmp_path):
    data = str(tmp_path / "data")
    # a grace period longer than the restart: alice keeps her chat through it (R10)
    node = ServerProc(data_dir=data, extra=["--demo"], grace=60).start()
    try:
        await _embedded_scenario(node, data)
    finally:
        node.stop()


async def _embedded_scenario(node: ServerProc, data: str) -> None:
    alice = await Client.login(node.base, "demo:alice", "demo1234")
    buyer = await Client.buyer(node.base, "demo", "flagship")
    conv = (await buyer.send("remember me"))["conv"]
    await alice.next_event("conv.assigned")
    assert "demo:alice" in node.output()  # --demo printed the logins
    assert node.stop(signal.SIGTERM) == 0
    assert (await alice.next_event("closed"))["code"] == 1001  # going away: reconnect elsewhere
    assert redis_children(data) == []  # the embedded Redis stopped with it
    node.proc = ServerProc(data_dir=data, port=node.port, grace=60).start().proc
    await alice.connect()
    h = await alice.request("history", conv=conv)
    assert [m["text"] for m in h["messages"]] == ["remember me"]
    # SIGKILL: the embedded Redis dies with its parent, and the next start copes
    node.kill()
    await eventually(lambda: redis_children(data) == [], 10, "the embedded redis to exit")
    node.proc = ServerProc(data_dir=data, port=node.port, grace=60).start().proc
    await buyer.connect()
    assert (await buyer.request("conv.get", conv=conv))["conv"] == conv
    await buyer.close()


async def test_kefu_seller_create_command(tmp_path):
    data = str(tmp_path / "d")
    env = {**os.environ}
    out = subprocess.run(["kefu", "seller", "create", "acme", "--password", "pw-123456", "--data-dir", data],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "main account login: acme" in out.stdout
    again = subprocess.run(["kefu", "seller", "create", "acme", "--password", "pw-123456", "--data-dir", data],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
    assert redis_children(data) == []


async def test_slow_consumer_is_closed_and_resumes_without_loss(spawn, make):
    node = spawn(send_queue=20, rate=10000, burst=10000)
    shop = await make(base=node.base)
    alice = await Client.login(node.base, shop.login("alice"), PASSWORD)
    buyer = await Client.buyer(node.base, shop.seller, "shop")
    conv = (await buyer.send("start"))["conv"]
    await alice.next_event("conv.assigned")
    await buyer.next_event("conv.state", pred=lambda d: d["state"] == "active")
    buyer.ws.transport.pause_reading()  # a consumer that stops reading
    big = "字" * 3900
    for i in range(400):
        await alice.send(f"{i}:{big}", conv=conv)
        if buyer.ws.transport.is_closing():
            break
    # the other side was never stalled: alice's requests all completed; the slow one is cut off
    buyer.ws.transport.resume_reading()
    ev = await buyer.next_event("closed", timeout=20)
    assert ev["code"] == 4100
    await buyer.connect()  # resume from the cursor
    await alice.send("last", conv=conv)
    await buyer.next_event("msg", pred=lambda d: d["text"] == "last", timeout=20)
    seqs = [m["seq"] for m in buyer.messages[conv]]
    assert seqs == list(range(1, len(seqs) + 1)) and buyer.duplicates == 0
    await alice.close(); await buyer.close()


async def test_a_paused_node_that_was_reaped_puts_its_members_back(make, spawn):  # R10
    paused = spawn()
    shop = await make(members={"alice": {"groups": ["pre"]}, "bob": {"groups": ["pre"]}})
    alice = await Client.login(paused.base, shop.login("alice"), PASSWORD)
    bob = await Client.login(shop.base, shop.login("bob"), PASSWORD)
    os.kill(paused.proc.pid, signal.SIGSTOP)  # a long GC pause / a frozen VM: no heartbeat
    try:
        ev = await bob.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "offline",
                                  timeout=20)
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    # alive again: alice is still connected, so she is online again — and reachable
    ev = await bob.next_event("presence", pred=lambda d: d["member"] == "alice" and d["status"] == "online",
                              timeout=20)
    assert ev
    await alice.request("ping")
    await alice.close(); await bob.close()
