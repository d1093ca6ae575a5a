"""What every benchmark script shares: measured load runs, the quiet-machine check, tables, JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from . import loadgen
from .procs import CpuMeter, Proc, machine_busy_seconds, wait_quiet


def log(msg: str) -> None:
    print(msg, flush=True)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "mem_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def quiet_check(timeout: float, label: str = "") -> float:
    """Wait (bounded) for an idle machine; print and return the busy cores seen just before starting."""
    if timeout <= 0:
        return -1.0
    busy = wait_quiet(timeout=timeout)
    log(f"machine busy before {label or 'start'}: {busy:.2f} cores" + (" (NOT quiet: figures suspect)" if busy > 0.25 else ""))
    return busy


def busy_now(seconds: float = 1.0) -> float:
    m0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - m0) / (time.monotonic() - t0)


def measured_run(adapter: type[loadgen.Adapter[Any]], url: str, procs_to_meter: Mapping[str, Proc], *, rate: float,
                 duration: float, pairs: int, gen_procs: int, adapter_options: dict[str, Any] | None = None,
                 connect_timeout: float = 90.0, settle: float = 1.0) -> loadgen.LoadResult:
    """One loadgen run with CPU metered over the sending+drain phase only: each process tree,
    the load generator, and `other` (machine busy CPU this benchmark did not use)."""
    meter = CpuMeter(dict(procs_to_meter))
    r = loadgen.run_load(adapter, url, rate=rate, duration=duration, pairs=pairs, procs=gen_procs,
                         adapter_options=adapter_options, on_start=meter.begin, on_stop=meter.end,
                         connect_timeout=connect_timeout, settle=settle)
    cpu = meter.utilisation()
    busy = cpu.pop("machine", 0.0)
    cpu["loadgen"] = sum(r.gen_cpu_s) / meter.wall if meter.wall else 0.0
    cpu["other"] = max(0.0, busy - sum(cpu.values()))
    r.extra["cpu"] = cpu
    if r.delivered:
        # CPU per delivered message over the metered phase: unlike a rate, robust to foreign load
        per = {k: v / r.delivered * 1e6 for k, v in meter.used.items()}
        per["loadgen"] = sum(r.gen_cpu_s) / r.delivered * 1e6
        r.extra["us_per_msg"] = per
        r.extra["server_us_per_msg"] = per.get("server", 0.0)
    return r


def projected_max(us_per_msg: dict[str, float], server_cores: int, cores: float = 2.0) -> float:
    """msg/s the CPU costs allow on `cores` quiet cores shared by server, Redis and load generator,
    with the server on at most `server_cores` and Redis (single-threaded) on at most one."""
    total = sum(us_per_msg.values())
    limits = [cores * 1e6 / total] if total else []
    if us_per_msg.get("server"):
        limits.append(server_cores * 1e6 / us_per_msg["server"])
    if us_per_msg.get("redis"):
        limits.append(1e6 / us_per_msg["redis"])
    return min(limits) if limits else 0.0


def fmt_cpu(cpu: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (pasted as is into RESULTS.md)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, cells[1:])])


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(report, indent=2, default=str))
        log(f"wrote {path}")


def step_rates(first: float, last: float, steps: Sequence[float]) -> list[float]:
    return [r for r in steps if first <= r <= last]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
