from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kefu_testing import RedisProc, ServerProc, Shop, make_shop  # noqa: E402


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisProc]:
    r = RedisProc().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def server(redis_proc: RedisProc) -> Iterator[ServerProc]:
    """One shared kefu node; each test isolates itself with its own seller."""
    s = ServerProc(redis_proc.url).start()
    yield s
    s.stop()


@pytest.fixture
def spawn(redis_proc: RedisProc) -> Iterator[Any]:
    """Start extra kefu nodes (same Redis by default); all stopped at the end of the test."""
    started: list[ServerProc] = []

    def start(redis_url: str | None = None, **kw: Any) -> ServerProc:
        s = ServerProc(redis_url if redis_url is not None else redis_proc.url, **kw).start()
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


@pytest.fixture
async def shop(redis_proc: RedisProc, server: ServerProc) -> Shop:
    """A seller with one store 'shop' routed to group 'pre' and one member 'alice'."""
    return await make_shop(redis_proc.url, server.base)


@pytest.fixture
def make(redis_proc: RedisProc, server: ServerProc) -> Any:
    async def mk(**kw: Any) -> Shop:
        return await make_shop(redis_proc.url, kw.pop("base", server.base), **kw)
    return mk
