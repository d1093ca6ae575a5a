"""Envelope codecs: JSON for browsers, msgpack for bots and SDKs. Same envelopes on both.

``{"type": str, "id": str|int (optional, requests only), "data": {...}}``
The sub-protocol is chosen per connection with ``Sec-WebSocket-Protocol``.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import msgspec

from .errors import BadRequest, ErrorCode, TooLarge
from .messages import MAX_FRAME, REQUESTS, Request

RequestId = Union[str, int, None]


class Envelope(msgspec.Struct, kw_only=True):
    type: str
    id: RequestId = None
    data: msgspec.Raw = msgspec.Raw(b"")


class Codec:
    """One wire format: decode a request frame, encode any envelope. Stateless and thread-safe."""

    def __init__(self, name: str, subprotocol: str, binary: bool, mod: Any) -> None:
        self.name = name
        self.subprotocol = subprotocol
        self.binary = binary
        self._env = mod.Decoder(Envelope)
        self._payload = {t: mod.Decoder(cls) for t, cls in REQUESTS.items()}
        self._any = mod.Decoder()
        self._encode: Callable[[Any], bytes] = mod.Encoder().encode
        self._empty = mod.encode({})

    def decode(self, frame: bytes | str) -> tuple[str, RequestId, Request]:
        """Decode and validate one request. Raises BadRequest with a stable code; never anything else."""
        if len(frame) > MAX_FRAME:
            raise TooLarge(ErrorCode.TOO_LARGE, f"frame over {MAX_FRAME} bytes")
        if isinstance(frame, str):
            frame = frame.encode()
        try:
            env = self._env.decode(frame)
        except msgspec.ValidationError as e:
            raise BadRequest(ErrorCode.BAD_FRAME, f"not an envelope: {e}") from None
        except msgspec.DecodeError as e:
            raise BadRequest(ErrorCode.BAD_FRAME, f"malformed {self.name}: {e}") from None
        dec = self._payload.get(env.type)
        if dec is None:
            raise BadRequest(ErrorCode.UNKNOWN_TYPE, f"unknown type {env.type[:40]!r}", id=env.id)
        raw = bytes(env.data) or self._empty
        try:
            return env.type, env.id, dec.decode(raw)
        except msgspec.ValidationError as e:
            msg = str(e)
            code = ErrorCode.TOO_LARGE if "length <=" in msg else ErrorCode.INVALID
            raise BadRequest(code, msg, id=env.id) from None
        except msgspec.DecodeError as e:
            raise BadRequest(ErrorCode.BAD_FRAME, f"malformed data: {e}", id=env.id) from None

    def peek_id(self, frame: bytes | str) -> RequestId:
        """Best effort: the request id of a frame that failed validation, so the error can be matched."""
        try:
            obj = self._any.decode(frame.encode() if isinstance(frame, str) else frame)
            rid = obj.get("id") if isinstance(obj, dict) else None
            return rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None
        except Exception:
            return None

    def decode_any(self, frame: bytes | str) -> Any:
        return self._any.decode(frame.encode() if isinstance(frame, str) else frame)

    def encode(self, obj: Any) -> bytes:
        return self._encode(obj)

    def event(self, type_: str, data: Any) -> bytes:
        return self._encode({"type": type_, "data": data})

    def ok(self, rid: RequestId, data: Any = None) -> bytes:
        return self._encode({"type": "ok", "id": rid, "data": data if data is not None else {}})

    def error(self, rid: RequestId, payload: dict[str, Any]) -> bytes:
        return self._encode({"type": "error", "id": rid, "data": payload})

    def request(self, type_: str, rid: RequestId, data: Any) -> bytes:
        """Client side: encode a request envelope."""
        env: dict[str, Any] = {"type": type_, "data": data}
        if rid is not None:
            env["id"] = rid
        return self._encode(env)


JSON = Codec("json", "kefu.v1.json", False, msgspec.json)
MSGPACK = Codec("msgpack", "kefu.v1.msgpack", True, msgspec.msgpack)
CODECS: dict[str, Codec] = {JSON.name: JSON, MSGPACK.name: MSGPACK}
SUBPROTOCOLS: dict[str, Codec] = {JSON.subprotocol: JSON, MSGPACK.subprotocol: MSGPACK}


def decode_request(codec: Codec, frame: bytes | str) -> tuple[str, RequestId, Request]:
    return codec.decode(frame)
