"""Settings, read once (env ``KEFU_*`` then CLI flags) and passed down. Nothing else reads os.environ."""
from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8700
    data_dir: str = "./kefu-data"
    redis: str = ""                   # empty: start the embedded Redis under data_dir
    demo: bool = False
    workers: int = 1
    node_id: str = field(default_factory=lambda: "n" + secrets.token_hex(4))
    secret: str = ""                  # token signing key; empty: shared random key kept in Redis
    fsync: str = "everysec"           # embedded Redis appendfsync: everysec | always
    grace: float = 5.0                # seconds without any connection before a member is offline (R10)
    buyer_grace: float = 30.0         # seconds before a disconnected queued buyer leaves the queue
    heartbeat: float = 1.0            # node heartbeat period; a node silent for 10 periods is reaped
    sticky_window: float = 3 * 86400  # R12.2 default, per seller overridable
    token_ttl: float = 12 * 3600
    buyer_token_ttl: float = 30 * 86400
    auth_timeout: float = 10.0
    send_queue: int = 2000            # frames buffered per connection before it is closed (4100)
    rate: float = 50.0                # requests per second per connection (token bucket)
    burst: float = 200.0
    max_bad_frames: int = 50          # malformed frames tolerated per connection before 4008
    origins: str = ""                 # comma list of allowed browser Origins; empty: same host only
    metrics_token: str = ""           # bearer token for /metrics; empty: /metrics only from loopback
    log_json: bool = False
    log_level: str = "info"
    gc_tune: bool = True              # freeze start-up objects and collect less often (latency)
    stall_trace_ms: float = 0         # log the main thread's stack when the event loop is blocked this long
    test_clock: bool = False         # tests only: allow POST /api/test/clock to shift this node's clock
    argon2_time: int = 2
    argon2_memory: int = 19456        # KiB (OWASP minimum for argon2id)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        env = dict(os.environ) if env is None else env
        s = cls()
        for f in dataclasses.fields(cls):
            raw = env.get("KEFU_" + f.name.upper())
            if raw is not None:
                setattr(s, f.name, _parse(f.type, raw))
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        return s

    def to_env(self) -> dict[str, str]:
        """For worker processes: pass the resolved settings on."""
        # node_id is left out: every worker process is a node of its own
        return {"KEFU_" + f.name.upper(): str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "node_id"}


def _parse(typ: Any, raw: str) -> Any:
    t = str(typ)
    if t == "bool":
        return raw.lower() in ("1", "true", "yes", "on")
    if t == "int":
        return int(raw)
    if t == "float":
        return float(raw)
    return raw
