"""Start the baseline servers of bench/baselines/ and pair each with its load-generator adapter::

with Procs() as ps:
    redis = ps.redis()
    srv = baselines.start(ps, "bare-relay", redis.url, workers=1)
    loadgen.run_load(baselines.ADAPTER["bare-relay"], srv.url, rate=2000, duration=5)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

from .loadgen import Adapter, PlainWsAdapter, RelayAdapter, SocketIOAdapter
from .procs import BASELINES, Proc, Procs, free_port

SOCKETIO_DIR = BASELINES / "socketio"

ADAPTER: dict[str, type[Adapter[Any]]] = {
    "bare-relay": RelayAdapter,
    "socket.io": SocketIOAdapter,
    "bare-ws": PlainWsAdapter,
}


def ensure_socketio_deps() -> None:
    """`npm install` in bench/baselines/socketio when node_modules is missing (pinned by the lockfile)."""
    if (SOCKETIO_DIR / "node_modules" / "socket.io").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Node.js (>= 18) to run the Socket.IO baseline")
    cmd = [npm, "ci" if (SOCKETIO_DIR / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    subprocess.run(cmd, cwd=SOCKETIO_DIR, check=True, timeout=600, stdout=subprocess.DEVNULL)


def start(ps: Procs, name: str, redis_url: str = "", *, workers: int = 1, port: int | None = None) -> Proc:
    """Start baseline `name` ("bare-relay", "socket.io" or "bare-ws"); its `.url` is what the
    matching adapter in ADAPTER connects to."""
    port = port or free_port()
    if name == "bare-relay":
        argv = [
            sys.executable,
            str(BASELINES / "bare_relay.py"),
            "--port",
            str(port),
            "--redis",
            redis_url,
            "--workers",
            str(workers),
        ]
        url = f"ws://127.0.0.1:{port}/ws"
    elif name == "socket.io":
        ensure_socketio_deps()
        node = shutil.which("node") or "node"
        argv = [
            node,
            str(SOCKETIO_DIR / "server.js"),
            "--port",
            str(port),
            "--redis",
            redis_url,
            "--workers",
            str(workers),
        ]
        url = f"ws://127.0.0.1:{port}/socket.io/"
    elif name == "bare-ws":
        argv = [sys.executable, str(BASELINES / "bare_ws.py"), "--port", str(port), "--workers", str(workers)]
        url = f"ws://127.0.0.1:{port}/"
    else:
        raise ValueError(f"unknown baseline {name!r}; one of {sorted(ADAPTER)}")
    return ps.spawn(name, argv, port=port, url=url)
