"""B4 reconnect storm: N connected buyers lose their node (SIGKILL) and reconnect to another one
with their cursors; time until all are back and caught up, with nothing lost or duplicated.

Two kefu nodes share one Redis. N buyers (``kefu bots`` machinery, several client processes)
connect to node A, each with a conversation served by a bot member on node B; buyers send now and
then and members push messages into their conversations the whole time, so messages are stored
while the buyers are away. Once every buyer is connected, node A is SIGKILLed. Each buyer
reconnects to B, resumes with ``cursors`` (the server replays what it missed), re-sends what was
not acknowledged with the same ``cid``, and counts as caught up once its cursor reaches what the
conversation held when it came back. At the end every buyer checks its conversation's seqs
(none missing, none twice) and members check every buyer's counter.

    python bench/b4_reconnect.py --clients 2000 10000
    python bench/b4_reconnect.py --clients 200 --smoke
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # <repo>/bench, for `lib`

from lib import common  # noqa: E402
from lib.common import log  # noqa: E402
from lib.kefu_adapter import SECRET, base, make_seller  # noqa: E402
from lib.kefu_adapter import start as start_kefu  # noqa: E402
from lib.procs import CpuMeter, Procs  # noqa: E402

from kefu.clients.bots import BotsConfig, run  # noqa: E402


def storm(ps: Procs, n: int, a: argparse.Namespace) -> dict[str, Any]:
    redis = ps.redis()
    node_a = start_kefu(ps, redis.url, name=f"kefu-A-{n}")
    node_b = start_kefu(ps, redis.url, name=f"kefu-B-{n}")
    shop = make_seller(redis.url, members=a.members, capacity=n // a.members + 10)
    ramp = max(3.0, n / a.connect_rate)
    cfg = BotsConfig(urls=[base(node_a), base(node_b)], seller=shop.seller, stores=shop.stores, buyers=n,
                     members=shop.members, token_secret=SECRET, rate=a.buyer_rate, ramp=ramp,
                     duration=ramp * 0.5 + a.settle + a.after, drain=10, procs=a.procs, member_rate=a.member_rate,
                     first_url=0, progress_every=0.5)
    meter = CpuMeter({"nodeB": node_b, "redis": redis})
    state: dict[str, Any] = {"stable_since": 0.0, "killed_at": 0.0, "peak": 0}

    def on_progress(tot: dict[str, Any]) -> None:
        now = time.time()
        state["peak"] = max(state["peak"], tot["connected"])
        if state["killed_at"]:
            back = tot["connected"]
            if back >= n and not state.get("all_back_seen"):
                state["all_back_seen"] = now
            return
        if tot["connected"] >= n and tot["members_connected"] >= a.members:
            state["stable_since"] = state["stable_since"] or now
            if now - state["stable_since"] >= a.settle:
                if a.quiet_wait:
                    state["busy_before_kill"] = common.busy_now(0.5)
                meter.begin()
                state["killed_at"] = time.time()
                node_a.popen.kill()  # SIGKILL: no close frames, no clean-up
                log(f"[B4] {n:,} buyers connected to A: SIGKILL node A (pid {node_a.pid})")
        elif tot["sent"]:
            state["stable_since"] = 0.0

    holder: dict[str, Any] = {}
    t = threading.Thread(target=lambda: holder.update(rep=run(cfg, on_progress)), daemon=True)
    t.start()
    t.join()
    rep = holder["rep"]
    meter.end()
    killed = state["killed_at"]
    res = rep.resume
    out = {
        "clients": n, "members": a.members, "procs": a.procs, "killed": bool(killed),
        "reconnects": int(res["reconnects"]), "not_resumed": int(res["not_resumed"]),
        "stragglers": res.get("stragglers", {}), "straggler_trails": res.get("straggler_trails", []),
        "all_back_s": res["last_back"] - killed if killed and res["last_back"] else None,
        "all_caught_up_s": res["last_resumed"] - killed if killed and res["last_resumed"] else None,
        "back_p50_s": res["back_p50_s"], "back_max_s": res["back_max_s"],
        "checks": rep.checks, "messages": rep.messages, "errors": rep.errors, "ok": rep.ok,
        "push_latency_ms": rep.latency_ms["push"], "cpu_after_kill": meter.utilisation(),
        "busy_before_kill": state.get("busy_before_kill"),
    }
    ok = out["ok"] and out["reconnects"] >= n and killed
    log(f"[B4] {n:,} clients: {out['reconnects']:,} reconnects; all back in {out['all_back_s'] or 0:.2f}s, all caught up "
        f"in {out['all_caught_up_s'] or 0:.2f}s (per client back p50 {out['back_p50_s']:.2f}s max {out['back_max_s']:.2f}s)"
        f"; lost {rep.checks['lost']}+{rep.checks['seq_lost']} dup {rep.checks['duplicated']}+{rep.checks['seq_dup']} ooo "
        f"{rep.checks['out_of_order']}+{rep.checks['seq_ooo']}; unacked {rep.messages['unacked']}; "
        f"{'OK' if ok else 'FAILED'}\n     cpu after the kill (cores): {common.fmt_cpu(out['cpu_after_kill'])}; "
        f"errors {rep.errors}")
    out["ok"] = bool(ok)
    node_b.stop()
    redis.stop()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", nargs="+", type=int, default=[2_000, 10_000])
    p.add_argument("--members", type=int, default=20)
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--connect-rate", type=float, default=400, help="ramp: buyers connected per second")
    p.add_argument("--buyer-rate", type=float, default=0.05, help="messages/s per buyer")
    p.add_argument("--member-rate", type=float, default=20, help="messages/s each member pushes")
    p.add_argument("--settle", type=float, default=3, help="seconds all connected before the kill")
    p.add_argument("--after", type=float, default=40, help="seconds of run after the kill (the storm must fit)")
    p.add_argument("--quiet-wait", type=float, default=60)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.smoke:
        a.clients, a.members, a.after, a.settle, a.quiet_wait, a.procs = [min(a.clients[0], 200)], 4, 8, 1, 0, 1
        a.buyer_rate, a.member_rate = 0.5, 10
    report: dict[str, Any] = {"machine": common.machine(), "results": []}
    t0 = time.monotonic()
    with Procs() as ps:
        for n in a.clients:
            if a.quiet_wait:
                common.quiet_check(a.quiet_wait, f"B4 x{n:,}")
            report["results"].append(storm(ps, n, a))
    rows = [[f"{x['clients']:,}", x["procs"], f"{x['reconnects']:,}", f"{x['all_back_s'] or math.nan:.2f}",
             f"{x['all_caught_up_s'] or math.nan:.2f}",
             f"{x['checks']['lost'] + x['checks']['seq_lost']}/{x['checks']['duplicated'] + x['checks']['seq_dup']}",
             x["messages"]["pushes_received"], x["messages"]["resent"], "yes" if x["ok"] else "NO"] for x in report["results"]]
    text = common.table(["clients", "client procs", "reconnects", "all back s", "all caught up s", "lost/dup",
                         "member msgs to buyers", "re-sent (same cid)", "ok"], rows)
    log("\n" + text + f"\n(B4 done in {time.monotonic() - t0:.0f}s)")
    report["summary"] = text
    common.write_json(a.json, report)
    return 0 if all(x["ok"] for x in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
