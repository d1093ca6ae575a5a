"""Event-loop health: how late the loop runs, how long the cyclic GC pauses, and what blocked it.

Every socket of a node shares one event loop, so one slow callback delays every message. The
lag probe (a timer on the loop, always on, negligible cost) and the GC callbacks feed
``/metrics``; with ``stall_trace_ms`` set, a daemon thread also logs the main thread's stack
whenever the loop has not turned for that long: the stall explains itself in the log.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback

from .metrics import Metrics

log = logging.getLogger("kefu.watchdog")
PERIOD = 0.05  # lag probe period (s)


class Watchdog:
    def __init__(self, metrics: Metrics, stall_trace_ms: float = 0) -> None:
        self.m = metrics
        self.trace_s = stall_trace_ms / 1000
        self._beat = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._gc_t0 = 0.0
        self._stop = threading.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + PERIOD
        self._handle = loop.call_at(self._due, self._tick, loop)
        gc.callbacks.append(self._gc)
        if self.trace_s > 0:
            main = threading.main_thread().ident
            threading.Thread(target=self._watch, args=(main,), name="kefu-watchdog", daemon=True).start()

    def stop(self) -> None:
        if self._handle:
            self._handle.cancel()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        self._stop.set()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.m.loop_lag.observe(max(0.0, now - self._due))
        self._beat = time.monotonic()
        self._due = now + PERIOD
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.m.gc_pause(info.get("generation", 0), time.perf_counter() - self._gc_t0)

    def _watch(self, main: int | None) -> None:
        reported = 0.0
        while not self._stop.wait(self.trace_s / 4):
            late = time.monotonic() - self._beat - PERIOD
            if late < self.trace_s or self._beat == reported:
                continue
            reported = self._beat
            frame = sys._current_frames().get(main or 0)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
            log.warning("event loop blocked for %.0f ms so far; main thread:\n%s", late * 1000, stack)
