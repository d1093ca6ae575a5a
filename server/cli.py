"""The ``kefu`` command: serve, manage sellers, run the load-test bots."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import click

from .settings import Settings


def _server_class() -> Any:
    import uvicorn

    class KefuServer(uvicorn.Server):
        """Close our sockets with 1001 (going away: reconnect and resume) before uvicorn's own 1012."""

        async def shutdown(self, sockets: Any = None) -> None:
            from .node import NODES
            for node in NODES:
                await node.close_all(1001, "server shutting down")
            await super().shutdown(sockets)
    return KefuServer


def KefuServer(config: Any) -> Any:
    return _server_class()(config)


def app_from_env() -> Any:
    """uvicorn factory (used for every worker process): settings come from KEFU_* env."""
    from .app import create_app
    s = Settings.from_env()
    _logging(s)
    return create_app(s, os.environ["KEFU_REDIS"])


def _logging(s: Settings) -> None:
    from .logs import configure
    configure(s.log_level, s.log_json)


@click.group()
def main() -> None:
    """kefu 客服 — real-time customer-service chat server."""


@main.command()
@click.option("--host", default=None, help="bind address [KEFU_HOST, 127.0.0.1]")
@click.option("--port", type=int, default=None, help="port [KEFU_PORT, 8700]")
@click.option("--data-dir", default=None, help="embedded Redis data directory [KEFU_DATA_DIR, ./kefu-data]")
@click.option("--redis", default=None, help="join a shared Redis (redis://...) instead of the embedded one [KEFU_REDIS]")
@click.option("--demo/--no-demo", default=None, help="create a demo seller and print its logins [KEFU_DEMO]")
@click.option("--workers", type=int, default=None, help="worker processes [KEFU_WORKERS, 1]")
@click.option("--fsync", type=click.Choice(["everysec", "always"]), default=None,
              help="embedded Redis appendfsync [KEFU_FSYNC, everysec]")
@click.option("--grace", type=float, default=None, help="seconds before a disconnected member is offline [5]")
@click.option("--log-json/--no-log-json", default=None, help="JSON-lines logs [KEFU_LOG_JSON]")
def serve(**opts: Any) -> None:
    """Run a kefu node (with a private embedded Redis unless --redis is given)."""
    import uvicorn

    s = Settings.from_env(**{k: v for k, v in opts.items() if v is not None})
    _logging(s)
    embedded = None
    url = s.redis
    if not url:
        from .embedded import EmbeddedRedis
        embedded = EmbeddedRedis(s.data_dir, s.fsync)
        url = embedded.start()
        click.echo(f"embedded Redis at {url} (data in {embedded.dir}, appendfsync {s.fsync})")
    try:
        if s.demo:
            for line in asyncio.run(_demo(url, s)):
                click.echo(line)
        env = s.to_env()
        env["KEFU_REDIS"] = url
        os.environ.update(env)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler that
        # was there before; a no-op one lets us stop the embedded Redis and exit 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        click.echo(f"kefu on http://{s.host}:{s.port}/  (console /web/console/, dashboard /web/dashboard/, "
                   f"buyer chat /web/chat/)")
        config = uvicorn.Config("kefu.server.cli:app_from_env", factory=True, host=s.host, port=s.port,
                                workers=s.workers, ws="websockets-sansio", ws_per_message_deflate=False,
                                ws_max_size=64 * 1024, ws_ping_interval=20, ws_ping_timeout=20,
                                log_level="warning", access_log=False, timeout_graceful_shutdown=5, lifespan="on",
                                proxy_headers=False,  # X-Forwarded-* not trusted; one wrapper less per socket
                                interface="asgi3")  # Front.__call__ returns the coroutine (no frame of its own)
        server = KefuServer(config)
        if s.workers > 1:
            from uvicorn.supervisors import Multiprocess
            # workers run uvicorn's own Server: on shutdown their sockets close with 1012 (also "reconnect")
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    finally:
        if embedded:
            embedded.stop()


async def _demo(url: str, s: Settings) -> list[str]:
    from .accounts import Accounts
    from .auth import Passwords
    from .demo import ensure_demo
    from .node import redis_client
    r = redis_client(url, decode=True)
    try:
        return await ensure_demo(Accounts(r, Passwords(s.argon2_time, s.argon2_memory)))
    finally:
        await r.aclose()


def _redis_url(data_dir: str | None, redis: str | None) -> tuple[str, Any]:
    s = Settings.from_env(data_dir=data_dir, redis=redis)
    if s.redis:
        return s.redis, None
    from .embedded import EmbeddedRedis
    e = EmbeddedRedis(s.data_dir, s.fsync)
    return e.start(), e


@main.group()
def seller() -> None:
    """Manage sellers (main accounts)."""


@seller.command("create")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--display", default="", help="display name")
@click.option("--quota", type=int, default=20, help="sub-account quota (R1)")
@click.option("--otp/--no-otp", default=False, help="require a TOTP code at login (R4)")
@click.option("--data-dir", default=None)
@click.option("--redis", default=None)
def seller_create(name: str, password: str, display: str, quota: int, otp: bool, data_dir: str | None,
                  redis: str | None) -> None:
    """Create a seller NAME; its main account logs in as NAME."""
    from .accounts import Accounts
    from .auth import Passwords
    from .node import redis_client
    from kefu.protocol.errors import KefuError
    url, emb = _redis_url(data_dir, redis)

    async def go() -> dict[str, Any]:
        r = redis_client(url, decode=True)
        try:
            return await Accounts(r, Passwords()).create_seller(name, password, name=display, quota=quota,
                                                                require_otp=otp)
        finally:
            await r.aclose()
    try:
        out = asyncio.run(go())
        click.echo(f"seller {name} created; main account login: {name}")
        if out.get("otp_secret"):
            click.echo(f"TOTP secret (add to an authenticator app): {out['otp_secret']}")
    except KefuError as e:
        click.echo(f"error: {e.code.value}: {e.message}", err=True)
        sys.exit(1)
    finally:
        if emb:
            emb.stop()


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def bots(ctx: click.Context) -> None:
    """Load-test with synthetic buyers and agents (see `kefu bots --help`)."""
    from kefu.clients.bots import main as bots_main
    bots_main(ctx.args)


if __name__ == "__main__":
    main()
