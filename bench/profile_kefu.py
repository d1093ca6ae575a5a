"""Profile a kefu node under the B1 load with py-spy: where does the server's CPU go per message?

Runs one kefu node (1 worker) and the B1 kefu load at `--rate` for `--duration` seconds while
`py-spy record` samples the server process, then prints the functions with the most samples,
self (the code itself) and total (with what it calls), as % of all samples. Writes the raw
collapsed stacks next to the report (flamegraph.pl / speedscope can read them).

    pip install py-spy
    python bench/profile_kefu.py --rate 2000 --duration 20 [--out /tmp/kefu-prof]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # <repo>/bench, for `lib`

from lib import common, loadgen  # noqa: E402
from lib.kefu_adapter import KefuAdapter, make_sellers, options  # noqa: E402
from lib.kefu_adapter import start as start_kefu  # noqa: E402
from lib.procs import CpuMeter, Procs  # noqa: E402


def top(collapsed: Path, n: int, idle: tuple[str, ...] = ("select", "epoll", "_run_once")) -> str:
    """Self and total % of samples per function from py-spy's collapsed stacks."""
    selfc: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    all_samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        frames = [f for f in stack.split(";") if f]
        funcs = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f for f in frames]
        all_samples += c
        if frames:
            selfc[frames[-1]] += c  # self: by line, to point at the statement
        for f in set(funcs):
            total[f] += c           # total: by function

    def pct(v: int) -> str:
        return f"{100 * v / max(1, all_samples):5.1f}%"

    out = [f"{all_samples} samples", "", "self   function (file:line)"]
    out += [f"{pct(v)}  {k}" for k, v in selfc.most_common(n)]
    out += ["", "total  function (file)"]
    out += [f"{pct(v)}  {k}" for k, v in total.most_common(n * 2)]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("--rate-hz", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=Path("/tmp/kefu-profile"))
    a = p.parse_args()
    if not shutil.which("py-spy"):
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    raw = a.out / "server.collapsed"
    with Procs() as ps:
        redis = ps.redis()
        srv = start_kefu(ps, redis.url)
        shop = make_sellers(redis.url, pairs=a.pairs)
        opts = options(shop)
        loadgen.run_load(KefuAdapter, srv.url, rate=min(a.rate, 1000), duration=1, pairs=a.pairs, adapter_options=opts)
        spy: list[subprocess.Popen[bytes]] = []
        meter = CpuMeter({"server": srv, "redis": redis})

        def on_start() -> None:  # sample the measured phase only: all connected, sending
            spy.append(subprocess.Popen(
                ["py-spy", "record", "--pid", str(srv.pid), "--rate", str(a.rate_hz), "--duration",
                 str(int(a.duration)), "--format", "raw", "--output", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            meter.begin()

        r = loadgen.run_load(KefuAdapter, srv.url, rate=a.rate, duration=a.duration + 1, pairs=a.pairs, procs=2,
                             adapter_options=opts, on_start=on_start, on_stop=meter.end, settle=1.0)
        spy[0].wait(60)
        r.extra["cpu"] = meter.utilisation()
        r.extra["server_us_per_msg"] = meter.used["server"] / max(1, r.delivered) * 1e6
        print(r.summary())
        print("cpu (cores):", common.fmt_cpu(r.extra["cpu"]), f"server {r.extra.get('server_us_per_msg', 0):.0f} µs/msg\n")
    report = top(raw, a.top)
    (a.out / "top.txt").write_text(report)
    print(report)
    print(f"\ncollapsed stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
