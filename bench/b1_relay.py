"""B1 relay: end-to-end latency and throughput, kefu vs the bare Starlette relay and Socket.IO,
same load generator (bench/lib/loadgen.py), one run.

kefu: bot members m0..m{P-1} online; buyer i has a conversation addressed to m{i}; buyers send,
each message is stored (append.lua) then delivered to its member. Baselines relay the same
paced sender→receiver pairs. For each system: a run at a common rate (p99 side by side), then
rates stepped up until one is not sustained (delivered < 95% of offered, p99 > 200 ms, or any
loss). CPU of the server, Redis, the load generator and foreign load (`other`) is metered.

    python bench/b1_relay.py                              # every system, about 10 minutes
    python bench/b1_relay.py --systems kefu kefu:2 --common-rate 2000 --json b1.json
    python bench/b1_relay.py --smoke                      # seconds: correctness only (tests/bench)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # <repo>/bench, for `lib`

from lib import baselines, common, loadgen  # noqa: E402
from lib.common import log  # noqa: E402
from lib.kefu_adapter import KefuAdapter, make_sellers, options  # noqa: E402
from lib.kefu_adapter import start as start_kefu  # noqa: E402
from lib.procs import Proc, Procs  # noqa: E402

STEPS = [1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_000, 14_000, 16_000, 20_000, 24_000,
         28_000, 32_000, 36_000, 40_000]
SYSTEMS = ["bare-relay", "socket.io", "kefu", "kefu:2"]


def parse_system(s: str) -> tuple[str, int]:
    name, _, w = s.partition(":")
    return name, int(w or 1)


def run_system(ps: Procs, system: str, a: argparse.Namespace) -> dict[str, Any]:
    name, workers = parse_system(system)
    redis = ps.redis()  # a fresh Redis per system: its CPU is metered for that system alone
    opts: dict[str, Any] | None = None
    if name == "kefu":
        srv = start_kefu(ps, redis.url, workers=workers, name=f"kefu-w{workers}")
        shop = make_sellers(redis.url, pairs=a.pairs)
        adapter: type[loadgen.Adapter[Any]] = KefuAdapter
        opts = options(shop)
    else:
        srv = baselines.start(ps, name, redis.url, workers=workers)
        adapter = baselines.ADAPTER[name]
    meter: dict[str, Proc] = {"server": srv, "redis": redis}

    def go(rate: float, duration: float) -> loadgen.LoadResult:
        if a.quiet_wait:
            common.quiet_check(min(15.0, a.quiet_wait), f"{system} @ {rate:,.0f}/s")
        return common.measured_run(adapter, srv.url, meter, rate=rate, duration=duration, pairs=a.pairs,
                                   gen_procs=a.procs, adapter_options=opts)

    def describe(r: loadgen.LoadResult) -> str:
        extra = r.extra
        return (f"{r.summary()}\n       cpu (cores): {common.fmt_cpu(extra['cpu'])}; µs/msg: "
                f"{', '.join(f'{k} {v:.0f}' for k, v in extra.get('us_per_msg', {}).items())}" + (f"; {extra['adapter']}" if extra.get("adapter") else ""))

    out: dict[str, Any] = {"system": system, "workers": workers}
    go(min(a.common_rate, 1000), 1)  # warm-up: imports, pools, JIT, script cache
    r = go(a.common_rate, a.duration)
    log(f"[B1] {system} @ common rate {a.common_rate:,.0f}/s:\n     {describe(r)}")
    out["common"] = {**r.as_dict(), "sustained": r.sustained()}
    if a.smoke:
        return out
    log(f"[B1] {system}: stepping the rate up ({a.duration:.0f}s steps)")
    best, steps = loadgen.find_max_rate(lambda rate: go(rate, a.duration), [x for x in STEPS if x >= a.from_rate],
                                        budget_s=a.budget, log=log, describe=describe)
    out["max_sustained"] = best
    out["steps"] = [{**s.as_dict(), "sustained": s.sustained()} for s in steps]
    at_best = [s for s in steps if s.target_rate == best]
    out["at_limit"] = at_best[0].as_dict() if at_best else None
    out["failed_step"] = steps[-1].as_dict() if steps and not steps[-1].sustained() else None
    log(f"[B1] {system}: max sustained ≈ {best:,.0f} msg/s")
    srv.stop()
    redis.stop()
    return out


def summarize(results: dict[str, dict[str, Any]], a: argparse.Namespace) -> str:
    rows = []
    for system, r in results.items():
        c = r["common"]
        lim = r.get("at_limit") or {}
        cpu = lim.get("extra", {}).get("cpu", {})
        per = c["extra"].get("us_per_msg", {})
        r["projected_max"] = common.projected_max(per, r["workers"])
        rows.append([system, f"{r.get('max_sustained', 0):,.0f}", f"{c['latency_ms']['p50']:.2f}",
                     f"{c['latency_ms']['p99']:.2f}", f"{c['lost']}/{c['duplicates']}/{c['out_of_order']}",
                     f"{per.get('server', 0):.0f}/{per.get('redis', 0):.0f}/{per.get('loadgen', 0):.0f}",
                     f"{r['projected_max']:,.0f}", f"{c['extra']['cpu'].get('other', 0):.2f}",
                     f"{cpu.get('server', 0):.2f}/{cpu.get('redis', 0):.2f}/{cpu.get('loadgen', 0):.2f}/{cpu.get('other', 0):.2f}"])
    rate = f"@{a.common_rate:,.0f}/s"
    out = [common.table(["system", "max sustained msg/s", f"p50 ms {rate}", f"p99 ms {rate}", "lost/dup/ooo",
                         f"CPU µs/msg {rate}: server/redis/loadgen", "CPU-projected max (2 quiet cores)",
                         f"foreign load {rate} (cores)", "CPU at max: server/redis/loadgen/other"], rows)]
    kefus = [s for s in results if s.startswith("kefu")]
    for k in kefus:
        for base in ("bare-relay", "socket.io"):
            if base in results:
                rk, rb = results[k], results[base]
                out.append(f"{k} / {base}: max sustained {common.ratio(rk.get('max_sustained', 0), rb.get('max_sustained', 0))}, "
                           f"CPU-projected max {common.ratio(rk['projected_max'], rb['projected_max'])}, "
                           f"p99 {rate} {common.ratio(rk['common']['latency_ms']['p99'], rb['common']['latency_ms']['p99'])}")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=SYSTEMS, help="bare-relay, socket.io, kefu; ':N' = N workers")
    p.add_argument("--pairs", type=int, default=500, help="sender→receiver pairs (kefu: buyers and members)")
    p.add_argument("--procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per step")
    p.add_argument("--common-rate", type=float, default=1000, help="the rate every system is compared at")
    p.add_argument("--from-rate", type=float, default=1000, help="first step of the search")
    p.add_argument("--budget", type=float, default=150, help="seconds of stepping per system")
    p.add_argument("--quiet-wait", type=float, default=60, help="wait up to N s for an idle machine before each run")
    p.add_argument("--smoke", action="store_true", help="tiny and quick: correctness only")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.smoke:
        a.pairs, a.duration, a.common_rate, a.quiet_wait = min(a.pairs, 20), 1.0, 200.0, 0
    report: dict[str, Any] = {"machine": common.machine(), "args": vars(a) | {"json": str(a.json)}, "results": {}}
    t0 = time.monotonic()
    with Procs() as ps:
        for system in a.systems:
            report["results"][system] = run_system(ps, system, a)
    text = summarize(report["results"], a)
    log("\n" + text + f"\n(B1 done in {time.monotonic() - t0:.0f}s)")
    report["summary"] = text
    common.write_json(a.json, report)
    bad = [s for s, r in report["results"].items() if r["common"]["lost"] or r["common"]["duplicates"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
