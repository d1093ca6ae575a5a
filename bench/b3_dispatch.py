"""B3 dispatch: new conversations assigned per second through the real server (1 and 2 nodes),
with zero double assignments, and Redis CPU per decision next to a plain INCR round trip.

N buyers (authenticated, spread over client processes and nodes) each open one conversation
(`conv.open`: the server stores it, then runs dispatch.lua) with at most `--window` requests in
flight per client process; M bot members are online with capacity for all of them, so every
decision is the least-loaded search of R12.3. Afterwards it checks from Redis that every
conversation was assigned exactly once: one `assignlog` entry per conversation, the conversation
hash names the same member, each member's load equals the conversations it holds, and no member
is over capacity; and that every member received its `conv.assigned` events.

    python bench/b3_dispatch.py                        # 10,000 buyers, 1 and 2 nodes
    python bench/b3_dispatch.py --buyers 200 --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # <repo>/bench, for `lib`

import redis as redis_sync  # noqa: E402

from lib import common  # noqa: E402
from lib.common import log  # noqa: E402
from lib.kefu_adapter import SECRET, make_seller  # noqa: E402
from lib.kefu_adapter import start as start_kefu  # noqa: E402
from lib.procs import CpuMeter, Procs, raise_nofile  # noqa: E402

from kefu.clients.bots import Conn, new_hist, percentiles  # noqa: E402
from kefu.protocol.codec import MSGPACK  # noqa: E402
from kefu.server.auth import Tokens  # noqa: E402
from kefu.server.storage.keys import SellerKeys  # noqa: E402


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


async def _buyers(urls: list[str], seller: str, store: str, ids: list[int], window: int, ready: Any, go: Any,
                  done: Any, out: Any) -> None:
    tokens = Tokens(SECRET, 3600, 3600)
    conns = [Conn(MSGPACK, lambda t, d: None) for _ in ids]
    sem = asyncio.Semaphore(200)

    async def connect(i: int, c: Conn) -> None:
        async with sem:
            await c.connect(urls[i % len(urls)], tokens.buyer_token(seller, store, f"b3b{i}"))

    await asyncio.gather(*(connect(i, c) for i, c in zip(ids, conns)))
    await asyncio.to_thread(ready.wait, 300)  # every client connected
    await asyncio.to_thread(go.wait, 300)     # the parent has reset Redis stats and started its CPU meter
    hist = new_hist()
    results: list[str] = []
    errors: dict[str, int] = {}
    it = iter(conns)
    t_first = time.time()

    async def lane() -> None:
        for c in it:
            t = time.perf_counter()
            try:
                view = await c.request("conv.open")
                results.append(view["conv"] if view.get("state") == "active" else "")
            except Exception as e:  # counted, never hidden
                errors[getattr(e, "code", type(e).__name__)] = errors.get(getattr(e, "code", type(e).__name__), 0) + 1
            hist.record_value(max(1, int((time.perf_counter() - t) * 1e6)))

    await asyncio.gather(*(lane() for _ in range(window)))
    t_last = time.time()
    out.put({"t_first": t_first, "t_last": t_last, "convs": results, "errors": errors, "hist": hist.encode(),
             "cpu_s": time.process_time()})
    await asyncio.to_thread(done.wait, 300)
    for c in conns:
        c.close()
    await asyncio.sleep(0.5)


def _buyers_main(*args: Any) -> None:
    raise_nofile()
    try:
        _run(_buyers(*args))
    except BaseException:
        args[-1].put({"error": traceback.format_exc()})
        for x in args:  # break the barriers: the parent and the other processes fail fast
            if hasattr(x, "abort"):
                x.abort()


async def _members(url: str, seller: str, members: list[str], ready: Any, go: Any, done: Any, out: Any) -> None:
    tokens = Tokens(SECRET, 3600, 3600)
    got: dict[str, int] = {}

    def on_event(m: str) -> Any:
        def f(t: str, d: Any) -> None:
            if t == "conv.assigned":
                got[m] = got.get(m, 0) + 1
        return f

    conns = [Conn(MSGPACK, on_event(m)) for m in members]
    for m, c in zip(members, conns):
        await c.connect(url, tokens.member_token(seller, m, 0), status="online")
    await asyncio.to_thread(ready.wait, 300)
    await asyncio.to_thread(go.wait, 300)
    await asyncio.to_thread(done.wait, 600)
    out.put({"assigned_events": got})
    for c in conns:
        c.close()
    await asyncio.sleep(0.5)


def _members_main(*args: Any) -> None:
    try:
        _run(_members(*args))
    except BaseException:
        args[-1].put({"error": traceback.format_exc()})
        for x in args:  # break the barriers: the parent and the other processes fail fast
            if hasattr(x, "abort"):
                x.abort()


def commandstats(r: redis_sync.Redis) -> dict[str, dict[str, float]]:
    return {k.removeprefix("cmdstat_"): v for k, v in r.info("commandstats").items()}


def incr_floor(url: str, n: int = 20_000) -> dict[str, float]:
    """The floor: a plain INCR — Redis CPU per call (commandstats) and a client round trip."""
    r = redis_sync.Redis.from_url(url)
    r.config_resetstat()
    hist = new_hist()
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        r.incr("b3:floor")
        hist.record_value(max(1, int((time.perf_counter() - t) * 1e6)))
    wall = time.perf_counter() - t0
    st = commandstats(r)["incrby"]  # redis-py sends INCR as INCRBY key 1
    p = percentiles(hist)
    return {"redis_usec_per_call": float(st["usec_per_call"]), "rtt_p50_us": p["p50"] * 1000,
            "rtt_p99_us": p["p99"] * 1000, "sequential_per_s": n / wall}


def verify(r: Any, seller: str, convs: list[str], caps: dict[str, int]) -> dict[str, Any]:
    """Zero double assignment, from Redis (``r`` decodes responses): the assignment log, conversation
    hashes, loads."""
    k = SellerKeys(seller)
    log_entries = r.xrange(k.assignlog, "-", "+")
    per_conv: dict[str, list[str]] = {}
    for _, f in log_entries:
        per_conv.setdefault(f["conv"], []).append(f["member"])
    doubles = sum(1 for v in per_conv.values() if len(v) > 1)
    pipe = r.pipeline(transaction=False)
    for c in convs:
        pipe.hmget(k.conv(c), "state", "member")
    mismatch = sum(1 for c, (state, member) in zip(convs, pipe.execute())
                   if state != "active" or [member or ""] != per_conv.get(c, []))
    loads = {m: int(v) for m, v in r.hgetall(k.load).items()}
    held: dict[str, int] = {}
    for e in r.zrange(k.held, 0, -1):
        m = e.split("\0")[0]
        held[m] = held.get(m, 0) + 1
    load_mismatch = sum(1 for m in set(loads) | set(held) if loads.get(m, 0) != held.get(m, 0))
    over_cap = sum(1 for m, v in loads.items() if v > caps.get(m, 0))
    return {"assignlog_entries": len(log_entries), "convs_in_log": len(per_conv), "double_assigned": doubles,
            "conv_hash_mismatch": mismatch, "load_vs_held_mismatch": load_mismatch, "over_capacity": over_cap,
            "not_in_log": sum(1 for c in convs if c not in per_conv)}


def run_nodes(ps: Procs, nodes: int, a: argparse.Namespace) -> dict[str, Any]:
    redis = ps.redis()
    srvs = [start_kefu(ps, redis.url, name=f"kefu-n{i}") for i in range(nodes)]
    cap = a.buyers // a.members + 10
    shop = make_seller(redis.url, members=a.members, capacity=cap)
    members = [m for m, _ in shop.members]
    urls = [s.url for s in srvs]
    ctx = mp.get_context("spawn")
    ready, go, done = ctx.Barrier(a.procs + 2), ctx.Barrier(a.procs + 2), ctx.Barrier(a.procs + 2)
    out: Any = ctx.Queue()
    mout: Any = ctx.Queue()
    ids = [list(range(w, a.buyers, a.procs)) for w in range(a.procs)]
    workers = [ctx.Process(target=_buyers_main, args=(urls, shop.seller, shop.stores[0], ids[w], a.window, ready, go, done,
                                                            out),
                           daemon=True) for w in range(a.procs)]
    workers.append(ctx.Process(target=_members_main, args=(urls[0], shop.seller, members, ready, go, done, mout), daemon=True))
    r = redis_sync.Redis.from_url(redis.url)
    meter = CpuMeter({**{f"node{i}": s for i, s in enumerate(srvs)}, "redis": redis})
    try:
        for p in workers:
            p.start()
        ready.wait(600)  # everyone connected
        if a.quiet_wait:
            common.quiet_check(a.quiet_wait, f"B3 {nodes} node(s)")
        r.config_resetstat()
        meter.begin()
        go.wait(600)
        res = [out.get(timeout=600) for _ in range(a.procs)]
        meter.end()
        stats = commandstats(r)
        done.wait(60)
        mres = mout.get(timeout=60)
    finally:
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
    errs = [x["error"] for x in res + [mres] if "error" in x]
    if errs:
        raise RuntimeError("\n".join(errs))
    convs = [c for x in res for c in x["convs"] if c]
    errors: dict[str, int] = {}
    hist = new_hist()
    for x in res:
        hist.decode_and_add(x["hist"])
        for k_, v in x["errors"].items():
            errors[k_] = errors.get(k_, 0) + v
    span = max(x["t_last"] for x in res) - min(x["t_first"] for x in res)
    checks = verify(redis_sync.Redis.from_url(redis.url, decode_responses=True), shop.seller, convs,
                    {m: cap for m in members})
    ev = stats.get("evalsha", {"calls": 0, "usec": 0})
    total_usec = sum(float(v["usec"]) for v in stats.values())
    cpu = meter.utilisation()
    out_d = {
        "nodes": nodes, "buyers": a.buyers, "members": a.members, "assigned": len(convs), "errors": errors,
        "seconds": span, "assignments_per_s": len(convs) / span if span else 0.0,
        "open_latency_ms": percentiles(hist), "checks": checks,
        "assigned_events": sum(mres["assigned_events"].values()),
        "redis_evalsha_usec_per_call": float(ev["usec"]) / max(1, int(ev["calls"])), "redis_evalsha_calls": int(ev["calls"]),
        "redis_usec_per_conv_all_commands": total_usec / max(1, len(convs)),
        "redis_cpu_us_per_conv": meter.used.get("redis", 0) / max(1, len(convs)) * 1e6,
        "server_cpu_us_per_conv": sum(v for k_, v in meter.used.items() if k_.startswith("node")) / max(1, len(convs)) * 1e6,
        "cpu_cores": cpu,
        "top_commands": sorted(((k_, int(v["calls"]), float(v["usec_per_call"])) for k_, v in stats.items()),
                               key=lambda t: -t[1] * t[2])[:8],
    }
    cpu_all = dict(cpu)
    busy = cpu_all.pop("machine", 0.0)
    cpu_all["other+clients"] = max(0.0, busy - sum(cpu_all.values()))
    out_d["cpu_cores"] = cpu_all
    log(f"[B3] {nodes} node(s): {len(convs):,}/{a.buyers:,} assigned in {span:.2f}s = {out_d['assignments_per_s']:,.0f}/s; "
        f"open p50 {out_d['open_latency_ms']['p50']:.1f} p99 {out_d['open_latency_ms']['p99']:.1f} ms; errors {errors or 'none'}\n"
        f"     checks {checks}; conv.assigned events {out_d['assigned_events']:,}\n"
        f"     Redis: evalsha {out_d['redis_evalsha_usec_per_call']:.1f} µs/call ({ev['calls']} calls), all commands "
        f"{out_d['redis_usec_per_conv_all_commands']:.1f} µs/conv; Redis process {out_d['redis_cpu_us_per_conv']:.0f} µs/conv, "
        f"server {out_d['server_cpu_us_per_conv']:.0f} µs/conv; cpu (cores) {common.fmt_cpu(cpu_all)}")
    for s in srvs:
        s.stop()
    out_d["incr_floor"] = incr_floor(redis.url)
    redis.stop()
    return out_d


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--buyers", type=int, default=10_000)
    p.add_argument("--members", type=int, default=20)
    p.add_argument("--nodes", nargs="+", type=int, default=[1, 2])
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--window", type=int, default=100, help="conv.open requests in flight per client process")
    p.add_argument("--quiet-wait", type=float, default=60)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.smoke:
        a.buyers, a.members, a.quiet_wait, a.window = min(a.buyers, 200), 5, 0, 20
    report: dict[str, Any] = {"machine": common.machine(), "results": []}
    t0 = time.monotonic()
    with Procs() as ps:
        for n in a.nodes:
            report["results"].append(run_nodes(ps, n, a))
    rows = []
    for x in report["results"]:
        f = x["incr_floor"]
        rows.append([x["nodes"], f"{x['assigned']:,}", f"{x['assignments_per_s']:,.0f}",
                     x["checks"]["double_assigned"] + x["checks"]["conv_hash_mismatch"] + x["checks"]["over_capacity"],
                     f"{x['open_latency_ms']['p99']:.1f}", f"{x['redis_evalsha_usec_per_call']:.1f}",
                     f"{x['redis_usec_per_conv_all_commands']:.1f}", f"{f['redis_usec_per_call']:.2f} / {f['rtt_p50_us']:.0f}",
                     f"{x['server_cpu_us_per_conv']:.0f}", common.fmt_cpu(x["cpu_cores"])])
    text = common.table(["nodes", "assigned", "assignments/s", "double/mismatch/over-cap", "conv.open p99 ms",
                         "Redis µs/decision (evalsha)", "Redis µs/conv (all cmds)", "INCR floor: Redis µs / RTT µs",
                         "server CPU µs/conv", "CPU cores"], rows)
    log("\n" + text + f"\n(B3 done in {time.monotonic() - t0:.0f}s)")
    report["summary"] = text
    common.write_json(a.json, report)
    ok = all(x["assigned"] == a.buyers and not any(x["checks"][k] for k in ("double_assigned", "conv_hash_mismatch",
             "load_vs_held_mismatch", "over_capacity", "not_in_log")) for x in report["results"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
