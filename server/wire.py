"""Frames written straight to the socket, the moment they are pushed.

Through ASGI every outgoing frame costs an awaited ``send`` (a task, a loop turn), websockets' frame
builder and one ``transport.write``. Under uvicorn's ``websockets-sansio`` protocol (the one ``kefu
serve`` runs) the connection reaches the protocol object behind the ASGI ``send`` and, while the
socket is open and writable and nothing is queued before it, writes the frame at once: server
frames are unmasked, so a frame is a 2–10 byte header plus the payload (RFC 6455 §5.2). Anything
else (another server, a closing socket, one paused by a slow reader) takes the queued ASGI path,
where the bounded outbound queue applies. B1 at 8,000 msg/s: p50 −15 %, p99 −18 %, server CPU −4 %
against writing them one loop turn later (bench/RESULTS.md).
"""
from __future__ import annotations

from typing import Any

from websockets.protocol import State

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - another server: frames go through ASGI
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

_OPEN = State.OPEN


def wire_of(send: Any) -> Any:
    """uvicorn's protocol object behind an ASGI ``send``, or None when frames must go through ASGI."""
    proto = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is not None and type(proto) is WebSocketsSansIOProtocol:
        return proto
    return None


def open_for_writes(proto: Any) -> bool:
    """True while frames may go straight to the transport: open, not closing, not paused."""
    return (proto.writable.is_set() and not proto.close_sent and not proto.disconnected
            and proto.conn.state is _OPEN and not proto.transport.is_closing())


def frame(payload: bytes, binary: bool) -> bytes:
    """One unfragmented, unmasked server frame (FIN set; opcode 2 binary, 1 text)."""
    b0 = 0x82 if binary else 0x81
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return bytes((b0, 126)) + n.to_bytes(2, "big") + payload
    return bytes((b0, 127)) + n.to_bytes(8, "big") + payload


def write(proto: Any, payload: bytes, binary: bool) -> None:
    proto.transport.write(frame(payload, binary))
