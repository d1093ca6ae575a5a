"""Idle connections (benchmark B2): open N WebSocket connections, report server RSS per connection.

    from lib import idle, loadgen
    r = idle.open_idle(loadgen.PlainWsAdapter, "ws://127.0.0.1:P/", 10_000, server_proc)
    print(r.summary())

Connections come from several spawned client processes (each raises its RLIMIT_NOFILE soft limit
to the hard limit and holds at most `per_proc` connections). Past ~25k connections the source
address is spread over 127.0.0.2, 127.0.0.3, ... since one (source IP, destination) pair only
has the ephemeral port range (~28k ports) to use.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import queue
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .loadgen import Adapter
from .procs import Proc, raise_nofile

PORTS_PER_SOURCE = 25_000  # below the default ephemeral range (32768–60999), with headroom


@dataclass
class IdleResult:
    adapter: str
    requested: int
    connected: int
    failed: int
    connect_s: float
    rss_before: int
    rss_after: int
    errors: list[str] = field(default_factory=list)  # a few samples

    @property
    def bytes_per_conn(self) -> float:
        return (self.rss_after - self.rss_before) / self.connected if self.connected else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_per_conn": self.bytes_per_conn}

    def summary(self) -> str:
        return (
            f"{self.adapter}: {self.connected}/{self.requested} idle connections in {self.connect_s:.1f}s; "
            f"server RSS {self.rss_before / 2**20:.1f} → {self.rss_after / 2**20:.1f} MiB = "
            f"{self.bytes_per_conn / 1024:.1f} KiB/connection"
            + (f" ({self.failed} failed, e.g. {self.errors[0]})" if self.failed else "")
        )


def _noop(frm: str, seq: int, ts: float) -> None:
    pass


async def _hold(
    adapter_cls: type[Adapter[Any]],
    url: str,
    users: list[str],
    options: dict[str, Any],
    concurrency: int,
    timeout: float,
    release: Any,
    hold_s: float,
    out: Any,
) -> None:
    adapter = adapter_cls(url, _noop, **options)
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(u: str) -> Any:
        async with sem:
            try:
                return await adapter.connect(u)
            except Exception as e:
                if len(errors) < 3:
                    errors.append(f"{type(e).__name__}: {e}")
                return None

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(one(u)) for u in users]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    conns = [t.result() for t in done if not t.cancelled() and t.exception() is None and t.result() is not None]
    out.put(
        {
            "connected": len(conns),
            "failed": len(users) - len(conns),
            "connect_s": time.perf_counter() - t0,
            "errors": errors,
        }
    )
    # Hold until the parent has measured the server (bounded: never hang forever).
    await asyncio.to_thread(release.wait, hold_s)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(adapter.close(c) for c in conns), return_exceptions=True), 30)


def _client_main(
    adapter_cls: type[Adapter[Any]],
    url: str,
    users: list[str],
    options: dict[str, Any],
    concurrency: int,
    timeout: float,
    release: Any,
    hold_s: float,
    out: Any,
) -> None:
    raise_nofile(len(users) + 256)
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    reported = _Reported(out)
    try:
        run(_hold(adapter_cls, url, users, options, concurrency, timeout, release, hold_s, reported))
    except BaseException as e:
        if not reported.done:
            reported.put({"connected": 0, "failed": len(users), "connect_s": 0.0, "errors": [repr(e)]})


class _Reported:
    """The client's one report to the parent (an error after it must not send a second)."""

    def __init__(self, out: Any) -> None:
        self.out, self.done = out, False

    def put(self, report: dict[str, Any]) -> None:
        self.out.put(report)
        self.done = True


def settle_rss(proc: Proc, timeout: float = 5.0, tolerance: float = 0.005) -> int:
    """Poll RSS until two readings 0.25 s apart agree within `tolerance` (or `timeout`)."""
    prev = proc.rss()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        cur = proc.rss()
        if abs(cur - prev) <= tolerance * max(prev, 1):
            return cur
        prev = cur
    return prev


def open_idle(
    adapter: type[Adapter[Any]],
    url: str,
    n: int,
    server: Proc,
    *,
    per_proc: int = 15_000,
    local_addrs: Sequence[str] | None = None,
    adapter_options: dict[str, Any] | None = None,
    connect_concurrency: int = 200,
    connect_timeout: float = 120.0,
) -> IdleResult:
    """Open `n` idle connections to `url`, measure `server`'s RSS before and after, close them."""
    procs = max(1, math.ceil(n / per_proc))
    if local_addrs is None:  # one source IP per PORTS_PER_SOURCE connections
        sources = math.ceil(n / PORTS_PER_SOURCE)
        local_addrs = [f"127.0.0.{1 + i}" for i in range(sources)] if sources > 1 else []
    options = {**(adapter_options or {}), "local_addrs": list(local_addrs)}
    ctx = mp.get_context("spawn")
    release = ctx.Event()
    out: Any = ctx.Queue()
    prefix = f"idle{int(time.time() * 1000) % 10**8}-"
    users = [f"{prefix}{i}" for i in range(n)]
    rss_before = settle_rss(server)
    hold_s = connect_timeout + 120
    clients = [
        ctx.Process(
            target=_client_main,
            daemon=True,
            name=f"idle-{w}",
            args=(
                adapter,
                url,
                users[w::procs],
                options,
                max(1, connect_concurrency // procs),
                connect_timeout,
                release,
                hold_s,
                out,
            ),
        )
        for w in range(procs)
    ]
    reports: list[dict[str, Any]] = []
    try:
        for p in clients:
            p.start()
        for _ in clients:
            try:
                reports.append(out.get(timeout=connect_timeout + 60))
            except queue.Empty:
                break
        rss_after = settle_rss(server)
    finally:
        release.set()
        for p in clients:
            p.join(timeout=40)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    connected = sum(r["connected"] for r in reports)
    return IdleResult(
        adapter=getattr(adapter, "name", adapter.__name__),
        requested=n,
        connected=connected,
        failed=n - connected,
        connect_s=max((r["connect_s"] for r in reports), default=0.0),
        rss_before=rss_before,
        rss_after=rss_after,
        errors=[e for r in reports for e in r["errors"]][:3],
    )
