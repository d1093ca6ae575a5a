"""Self-test of the baselines and the harness: a modest relay load on bare-relay and Socket.IO,
idle connections on every baseline, and optionally a bounded search for each relay's max rate.

    python bench/lib/selftest_baselines.py [--rate 2000 --duration 5 --idle 1000] [--find-max]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # <repo>/bench, for `lib`

from lib import baselines, idle, loadgen  # noqa: E402
from lib.procs import CpuMeter, Proc, Procs, wait_quiet  # noqa: E402

RELAYS = ["bare-relay", "socket.io"]
MAX_RATE_STEPS = [
    2_000,
    4_000,
    6_000,
    8_000,
    10_000,
    12_000,
    14_000,
    16_000,
    20_000,
    24_000,
    28_000,
    32_000,
    36_000,
    40_000,
]


def measured_run(name: str, srv: Proc, redis: Proc, rate: float, a: argparse.Namespace) -> loadgen.LoadResult:
    """One load run; CPU of server and Redis is metered over the sending+drain phase only."""
    meter = CpuMeter({"server": srv, "redis": redis})
    r = loadgen.run_load(
        baselines.ADAPTER[name],
        srv.url,
        rate=rate,
        duration=a.duration,
        pairs=a.pairs,
        procs=a.procs,
        on_start=meter.begin,
        on_stop=meter.end,
    )
    cpu = meter.utilisation()
    machine = cpu.pop("machine", 0.0)
    cpu["loadgen"] = sum(r.gen_cpu_s) / meter.wall if meter.wall else 0.0
    # Busy CPU on the machine not used by this benchmark: > ~0.2 core means the run is suspect.
    cpu["other"] = max(0.0, machine - sum(cpu.values()))
    r.extra["cpu"] = cpu
    r.extra["server_rss_mib"] = srv.rss() / 2**20
    return r


def fmt_cpu(r: loadgen.LoadResult) -> str:
    return "cpu (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in r.extra["cpu"].items())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--idle", type=int, default=1000, help="idle connections per baseline (0: skip)")
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--find-max", action="store_true", help="step the rate up until a relay falls behind")
    p.add_argument("--budget", type=float, default=90, help="seconds per relay for --find-max")
    p.add_argument("--from-rate", type=float, default=0, help="first --find-max step (msg/s)")
    p.add_argument("--relays", nargs="+", default=RELAYS, choices=RELAYS, help="relay baselines to run")
    p.add_argument("--json", type=Path, help="also write all figures here")
    p.add_argument("--wait-quiet", type=float, default=120, help="wait up to N s for an idle machine (0: don't)")
    a = p.parse_args()
    report: dict[str, Any] = {"relay": {}, "idle": {}, "max_rate": {}}
    t_all = time.monotonic()
    if a.wait_quiet:
        busy = wait_quiet(timeout=a.wait_quiet)
        print(f"machine busy before start: {busy:.2f} cores" + (" (not quiet: figures suspect)" if busy > 0.25 else ""))

    with Procs() as ps:
        redis = ps.redis()
        for name in a.relays:
            srv = baselines.start(ps, name, redis.url, workers=a.workers)
            # Warm-up (imports, JIT, pools) outside the measured run.
            loadgen.run_load(baselines.ADAPTER[name], srv.url, rate=a.rate, duration=1, pairs=a.pairs, procs=a.procs)
            r = measured_run(name, srv, redis, a.rate, a)
            print(f"[B1] {r.summary()}\n     {fmt_cpu(r)}; server RSS {r.extra['server_rss_mib']:.0f} MiB", flush=True)
            report["relay"][name] = r.as_dict()
            if a.find_max:
                print(f"[max] {name}: {a.duration:.0f}s steps, stop when delivered < 95% of target or p99 > 200 ms")

                def run(rate: float, name: str = name, srv: Proc = srv) -> loadgen.LoadResult:
                    if a.wait_quiet:
                        wait_quiet(timeout=min(10, a.wait_quiet))  # someone else's tests skew a step
                    return measured_run(name, srv, redis, rate, a)

                best, steps = loadgen.find_max_rate(
                    run,
                    [x for x in MAX_RATE_STEPS if x >= a.from_rate],
                    budget_s=a.budget,
                    log=lambda s: print(s, flush=True),
                    describe=lambda r: f"{r.summary()}\n       {fmt_cpu(r)}",
                )
                print(f"[max] {name}: max sustained ≈ {best:,.0f} msg/s", flush=True)
                report["max_rate"][name] = {"best": best, "steps": [s.as_dict() for s in steps]}
            srv.stop()

        if a.idle:
            for name in ["bare-ws", *RELAYS]:
                srv = baselines.start(ps, name, redis.url, workers=a.workers)
                res = idle.open_idle(baselines.ADAPTER[name], srv.url, a.idle, srv)
                print(f"[B2] {res.summary()}", flush=True)
                report["idle"][name] = res.as_dict()
                srv.stop()

    print(f"done in {time.monotonic() - t_all:.0f}s")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
