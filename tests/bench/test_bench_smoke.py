"""Smoke tests of `kefu bots` and of each benchmark (bench/b*.py): tiny sizes, a few seconds each.

They assert correctness only — nothing lost or duplicated, counts that add up, reports that have
their fields — never speed: figures on a shared machine belong in bench/RESULTS.md, not in a test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kefu_testing import PASSWORD, TEST_ENV, RedisProc, ServerProc

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SOCKETIO = BENCH / "baselines" / "socketio"
LATENCY_FIELDS = {"p50", "p90", "p99", "p99.9", "max"}


def _run(args: list[str], tmp: Path, timeout: float = 110) -> dict[str, Any]:
    """Run a command that writes a JSON report to tmp/out.json; fail with its output if it fails."""
    out = tmp / "out.json"
    p = subprocess.run([*args, "--json", str(out)], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _bots(args: list[str], tmp: Path) -> dict[str, Any]:
    return _run([sys.executable, "-m", "kefu.server.cli", "bots", "--quiet", *args], tmp)


def _check_bots_report(r: dict[str, Any], buyers: int, reply: bool) -> None:
    m, c, k = r["messages"], r["connections"], r["checks"]
    assert r["ok"] is True
    assert c["buyers_connected_peak"] == buyers and c["connect_failures"] == 0
    assert m["sent"] > 0 and m["acked"] == m["sent"] and m["unacked"] == 0 and m["failed"] == 0
    assert m["delivered"] == m["acked"]  # every stored buyer message reached its (bot) member once
    assert all(k[f] == 0 for f in ("lost", "duplicated", "out_of_order", "seq_lost", "seq_dup", "seq_ooo"))
    for name in ("ack", "deliver"):
        assert LATENCY_FIELDS <= set(r["latency_ms"][name]) and r["latency_ms"][name]["count"] == m["acked"]
    if reply:
        assert m["replies_sent"] + m["replies_skipped"] == m["delivered"]
        assert m["replies_received"] == m["replies_sent"] > 0
        assert r["latency_ms"]["roundtrip"]["count"] == m["replies_received"]
    assert r["errors"] == {}


def test_bots_existing_seller_over_http(make: Any, server: ServerProc, tmp_path: Path) -> None:
    """Existing seller: members log in over HTTP, buyers get HTTP sessions; msgpack; members reply."""
    import asyncio
    shop = asyncio.run(make(members={f"m{i}": {"groups": ["pre"], "capacity": 20} for i in range(3)}))
    logins = [a for i in range(3) for a in ("--member-login", shop.login(f"m{i}"))]
    r = _bots(["--url", server.base, "--seller", shop.seller, "--store", "shop", *logins, "--password", PASSWORD,
               "--token-secret", "", "--buyers", "12", "--rate", "2", "--ramp", "0.5", "--duration", "2",
               "--drain", "3", "--procs", "1", "--reply"], tmp_path)
    _check_bots_report(r, 12, reply=True)
    assert r["connections"]["convs_active"] == 12


def test_bots_setup_redis_two_urls_json_codec(redis_proc: RedisProc, server: ServerProc, spawn: Any,
                                              tmp_path: Path) -> None:
    """A throw-away seller made in Redis, tokens signed locally, two nodes, two processes, JSON, echo off
    (a buyer's own messages come back only in the send reply: the stream check must still add up)."""
    other = spawn()
    r = _bots(["--url", server.base, "--url", other.base, "--setup-redis", redis_proc.url,
               "--token-secret", TEST_ENV["KEFU_SECRET"], "--buyers", "16", "--members", "4", "--codec", "json",
               "--rate", "2", "--ramp", "0.5", "--duration", "2", "--drain", "3", "--procs", "2", "--reply",
               "--no-echo"], tmp_path)
    _check_bots_report(r, 16, reply=True)
    assert r["config"]["urls"] == [server.base, other.base] and r["config"]["codec"] == "json"


def _ensure_socketio() -> None:
    """The Socket.IO baseline needs node_modules: `npm ci` once (pinned by the lockfile)."""
    if (SOCKETIO / "node_modules" / "socket.io").is_dir():
        return
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SOCKETIO, capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        pytest.fail(f"`npm ci` in {SOCKETIO} failed, so the Socket.IO baseline cannot run:\n{p.stderr[-2000:]}")


def test_b1_relay_smoke(tmp_path: Path) -> None:
    _ensure_socketio()
    r = _run([sys.executable, str(BENCH / "b1_relay.py"), "--smoke", "--systems", "kefu", "bare-relay", "socket.io"],
             tmp_path)
    assert set(r["results"]) == {"kefu", "bare-relay", "socket.io"}
    for system, res in r["results"].items():
        c = res["common"]
        assert c["sent"] > 0 and c["delivered"] == c["sent"], system
        assert c["lost"] == c["duplicates"] == c["out_of_order"] == 0, system
        assert LATENCY_FIELDS <= set(c["latency_ms"]) and {"server", "redis", "loadgen", "other"} <= set(c["extra"]["cpu"])
    ad = r["results"]["kefu"]["common"]["extra"]["adapter"]
    assert ad["ack"] == r["results"]["kefu"]["common"]["sent"]  # each stored and acknowledged once
    assert ad.get("echo", 0) == 0  # the adapter authenticates with echo off: no own message comes back
    assert not any(k.startswith("error:") for k in ad)


def test_b2_idle_smoke(tmp_path: Path) -> None:
    r = _run([sys.executable, str(BENCH / "b2_idle.py"), "--smoke"], tmp_path)
    assert {x["system"] for x in r["results"]} == {"kefu", "bare-ws"}
    for x in r["results"]:
        assert x["failed"] == 0 and x["connected"] == x["requested"] > 0
        assert x["rss_after"] > 0 and "bytes_per_conn" in x


def test_b3_dispatch_smoke(tmp_path: Path) -> None:
    r = _run([sys.executable, str(BENCH / "b3_dispatch.py"), "--smoke", "--nodes", "1", "2"], tmp_path)
    assert [x["nodes"] for x in r["results"]] == [1, 2]
    for x in r["results"]:
        assert x["assigned"] == x["buyers"] and not x["errors"]
        assert x["checks"]["assignlog_entries"] == x["checks"]["convs_in_log"] == x["buyers"]
        assert all(x["checks"][k] == 0 for k in ("double_assigned", "conv_hash_mismatch", "load_vs_held_mismatch",
                                                 "over_capacity", "not_in_log"))
        assert x["assigned_events"] == x["buyers"]
        assert x["redis_evalsha_calls"] >= x["buyers"] and x["incr_floor"]["redis_usec_per_call"] > 0


def test_b4_reconnect_smoke(tmp_path: Path) -> None:
    r = _run([sys.executable, str(BENCH / "b4_reconnect.py"), "--smoke"], tmp_path)
    (x,) = r["results"]
    assert x["ok"] and x["killed"] and x["reconnects"] >= x["clients"] and x["not_resumed"] == 0
    assert all(v == 0 for k, v in x["checks"].items() if k != "notes_skipped")
    assert x["messages"]["unacked"] == 0 and x["messages"]["pushes_received"] > 0
    assert x["all_back_s"] is not None and x["all_caught_up_s"] is not None
