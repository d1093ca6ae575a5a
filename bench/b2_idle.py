"""B2 idle connections: server RSS per idle connected client, kefu vs the bare websockets server.

For kefu an idle client is an authenticated buyer (token checked, its buyer channel subscribed,
its presence recorded): what a real idle buyer costs. The bare-ws baseline only holds sockets.
Each size runs on a fresh server; past ~19,900 sockets one process runs out of file
descriptors (RLIMIT_NOFILE hard limit 20,000 here), so sizes above `--per-worker` use
`--workers 2` for both systems. RSS is the whole server process tree; Redis memory is reported
apart (kefu keeps per-buyer state there, the baseline none).

    python bench/b2_idle.py                        # 1k, 10k, 20k: about 3 minutes
    python bench/b2_idle.py --sizes 1000 --smoke
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # <repo>/bench, for `lib`

from lib import baselines, common, idle  # noqa: E402
from lib.common import log  # noqa: E402
from lib.kefu_adapter import KefuAdapter, make_seller, options  # noqa: E402
from lib.kefu_adapter import start as start_kefu  # noqa: E402
from lib.procs import Procs  # noqa: E402

KIB = 1024


def measure(ps: Procs, system: str, n: int, workers: int, a: argparse.Namespace) -> dict[str, Any]:
    redis = ps.redis()
    if system == "kefu":
        srv = start_kefu(ps, redis.url, workers=workers, name=f"kefu-{n}")
        shop = make_seller(redis.url, members=0)
        adapter: Any = KefuAdapter
        opts: dict[str, Any] | None = options(shop, auth_only=True)
    else:
        srv = baselines.start(ps, system, redis.url, workers=workers)
        adapter, opts = baselines.ADAPTER[system], None
    time.sleep(1.0)  # let the workers finish starting before the 'before' RSS reading
    if a.quiet_wait:
        common.quiet_check(a.quiet_wait, f"{system} x{n:,}")
    redis_before = redis.rss()
    res = idle.open_idle(adapter, srv.url, n, srv, adapter_options=opts, per_proc=a.per_proc)
    redis_after = redis.rss()
    log(f"[B2] {res.summary()} (workers {workers}); Redis +{(redis_after - redis_before) / n:.0f} B/conn")
    srv.stop()
    redis.stop()
    return {**res.as_dict(), "system": system, "workers": workers, "redis_bytes_per_conn": (redis_after - redis_before) / n}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[1_000, 10_000, 20_000])
    p.add_argument("--systems", nargs="+", default=["kefu", "bare-ws"])
    p.add_argument("--per-worker", type=int, default=15_000, help="above this, servers run 2 workers")
    p.add_argument("--per-proc", type=int, default=10_000, help="connections per client process")
    p.add_argument("--quiet-wait", type=float, default=60)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.smoke:
        a.sizes, a.quiet_wait = [min(a.sizes[0], 200)], 0
    report: dict[str, Any] = {"machine": common.machine(), "results": []}
    t0 = time.monotonic()
    with Procs() as ps:
        for n in a.sizes:
            workers = max(1, math.ceil(n / a.per_worker))
            for system in a.systems:
                report["results"].append(measure(ps, system, n, workers, a))
    rows = []
    by = {(r["system"], r["requested"]): r for r in report["results"]}
    for n in a.sizes:
        k, b = by.get(("kefu", n)), by.get(("bare-ws", n))
        if not k:
            continue
        rows.append([f"{n:,}", k["workers"], f"{k['connected']:,}", f"{k['bytes_per_conn'] / KIB:.1f}",
                     f"{b['bytes_per_conn'] / KIB:.1f}" if b else "-",
                     common.ratio(k["bytes_per_conn"], b["bytes_per_conn"]) if b else "-",
                     f"{k['redis_bytes_per_conn'] / KIB:.1f}", f"{k['connect_s']:.1f}"])
    text = common.table(["idle clients", "workers", "kefu connected", "kefu KiB/conn", "bare-ws KiB/conn",
                         "kefu/bare", "kefu Redis KiB/conn", "kefu connect s"], rows)
    log("\n" + text + f"\n(B2 done in {time.monotonic() - t0:.0f}s)")
    report["summary"] = text
    common.write_json(a.json, report)
    return 0 if all(r["failed"] == 0 for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
