"""Real parts for tests: a real Redis server, real ``kefu serve`` processes, real sockets.

Nothing here is mocked. Helpers wait for events with timeouts, never sleep to synchronise.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import redis

from kefu.server.embedded import _die_with_parent, redis_binary

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port that is not up yet
    raise TimeoutError(f"port {port} not up")


class RedisProc:
    """A real redis-server on a free port (AOF optional), killed at the end."""

    def __init__(self, appendonly: bool = False, data_dir: str | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = data_dir or tempfile.mkdtemp(prefix="kefu-redis-")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisProc":
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 15
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis did not start") from None
                time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> "redis.Redis[str]":
        return redis.Redis(port=self.port, decode_responses=True)


TEST_ENV = {"KEFU_GRACE": "1.0", "KEFU_BUYER_GRACE": "1.0", "KEFU_HEARTBEAT": "0.3", "KEFU_LOG_LEVEL": "info",
            "KEFU_ARGON2_TIME": "1", "KEFU_ARGON2_MEMORY": "8192", "KEFU_SECRET": "test-secret-" + "x" * 32}


class ServerProc:
    """A real ``kefu serve`` process (uvicorn, websockets-sansio) on a free port."""

    def __init__(self, redis_url: str = "", data_dir: str | None = None, port: int | None = None,
                 extra: list[str] | None = None, **env: Any) -> None:
        self.port = port or free_port()
        self.redis_url = redis_url
        self.data_dir = data_dir
        self.extra = extra or []
        self.env = {**os.environ, **TEST_ENV, **{f"KEFU_{k.upper()}": str(v) for k, v in env.items()}}
        self.env.pop("KEFU_REDIS", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="kefu-server-", suffix=".log")[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerProc":
        args = [sys.executable, "-m", "kefu.server.cli", "serve", "--port", str(self.port)]
        if self.redis_url:
            args += ["--redis", self.redis_url]
        if self.data_dir:
            args += ["--data-dir", self.data_dir]
        self.proc = subprocess.Popen(args + self.extra, env=self.env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)  # no orphan if the test run dies
        try:
            wait_port(self.port, self.proc, timeout=30)
        except Exception:
            raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server process only (not its group): what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


_counter = itertools.count()


def unique(prefix: str = "s") -> str:
    return f"{prefix}{next(_counter)}{uuid.uuid4().hex[:6]}"


@dataclass
class Shop:
    """A seller made for one test: stores, groups, members (all with password PASSWORD)."""
    seller: str
    base: str
    stores: dict[str, list[str]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def login(self, member: str | None = None) -> str:
        return self.seller if member is None or member == self.seller else f"{self.seller}:{member}"


PASSWORD = "secret-pw-1"


async def make_shop(redis_url: str, base: str, *, stores: dict[str, list[str]] | None = None,
                    groups: list[str] | None = None, members: dict[str, dict[str, Any]] | None = None,
                    quota: int = 50, require_otp: bool = False, **seller_fields: Any) -> Shop:
    """Create a seller directly in Redis (fast, cheap argon2 parameters; the server verifies as usual)."""
    from kefu.server.accounts import Accounts
    from kefu.server.auth import Passwords
    from kefu.server.node import redis_client
    stores = stores if stores is not None else {"shop": ["pre"]}
    groups = groups if groups is not None else sorted({g for gs in stores.values() for g in gs})
    members = members if members is not None else {"alice": {"groups": ["pre"]}}
    r = redis_client(redis_url, decode=True)
    shop = Shop(unique("sel"), base, stores, members)
    try:
        acc = Accounts(r, Passwords(1, 8192))
        info = await acc.create_seller(shop.seller, PASSWORD, quota=quota, require_otp=require_otp)
        shop.secrets["otp"] = str(info.get("otp_secret") or "")
        for g in groups:
            await acc.create_group(shop.seller, g)
        for st, gs in stores.items():
            shop.secrets[st] = await acc.create_store(shop.seller, st, st, gs)
        for m, spec in members.items():
            await acc.create_member(shop.seller, m, PASSWORD, **spec)
        if seller_fields:
            await acc.update_seller(shop.seller, **seller_fields)
        await acc.recompute_all(shop.seller)
    finally:
        await r.aclose()
    return shop


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10,
                     what: str = "condition") -> None:
    """Wait until ``check()`` holds — for state that has no event to wait on (e.g. Redis counters)."""
    deadline = time.monotonic() + timeout
    while True:
        res = check()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
