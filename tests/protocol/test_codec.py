"""The wire protocol is pure data: codecs round-trip every message type, bad frames get stable codes."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, get_args, get_origin, Annotated, Literal, Optional, Union

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from kefu.protocol import JSON, MSGPACK, BadRequest
from kefu.protocol.messages import REQUESTS, Request, MAX_TEXT

CODECS = [JSON, MSGPACK]


def test_protocol_imports_no_io_modules() -> None:
    code = ("import sys, kefu.protocol, kefu.protocol.codec, kefu.protocol.messages, kefu.protocol.errors\n"
            "bad = [m for m in ('asyncio', 'redis', 'starlette', 'uvicorn', 'kefu.server') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"kefu.protocol imported {out}"


_ID = st.from_regex(r"\A[A-Za-z0-9_.:@-]{1,64}\Z")


def strategy(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for a field type, honouring msgspec Meta constraints."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *metas = get_args(tp)
        meta = next((m for m in metas if isinstance(m, msgspec.Meta)), None)
        if base is str and meta is not None:
            if meta.pattern:
                return _ID
            return st.text(min_size=meta.min_length or 0, max_size=min(meta.max_length or 50, 200))
        if base is int and meta is not None:
            return st.integers(min_value=meta.ge if meta.ge is not None else -10, max_value=min(meta.le or 10**6, 10**6))
        return strategy(base)
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is Union:
        return st.one_of(*[st.none() if a is type(None) else strategy(a) for a in get_args(tp)])
    if origin is list:
        return st.lists(strategy(get_args(tp)[0]), max_size=3)
    if origin is dict:
        k, v = get_args(tp)
        return st.dictionaries(strategy(k), strategy(v), max_size=3)
    if tp is bool:
        return st.booleans()
    if tp is str:
        return st.text(max_size=50)
    if tp is int:
        return st.integers(0, 10**6)
    if tp is float:
        return st.floats(0, 1e13, allow_nan=False)
    raise NotImplementedError(tp)


def request_strategy(cls: type[Request]) -> st.SearchStrategy[Request]:
    hints = msgspec.inspect.type_info(cls)
    fields = {}
    annotations: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    import typing
    resolved = typing.get_type_hints(cls, include_extras=True)
    for f in hints.fields:  # type: ignore[attr-defined]
        fields[f.name] = strategy(resolved[f.name])
    return st.builds(cls, **fields)


@pytest.mark.parametrize("type_", sorted(REQUESTS))
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_every_request_round_trips(type_: str, codec: Any) -> None:
    cls = REQUESTS[type_]

    @settings(max_examples=25, deadline=None)
    @given(req=request_strategy(cls), rid=st.one_of(st.none(), st.integers(0, 2**31), _ID))
    def check(req: Request, rid: Any) -> None:
        frame = codec.request(type_, rid, msgspec.to_builtins(req))
        t, got_rid, got = codec.decode(frame)
        assert (t, got_rid, got) == (type_, rid, req)
    check()


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_events_and_replies_encode_the_same_envelope(codec: Any) -> None:
    data = {"conv": "c1", "seq": 3, "text": "你好"}
    assert codec.decode_any(codec.event("msg", data)) == {"type": "msg", "data": data}
    assert codec.decode_any(codec.ok(7, {"a": 1})) == {"type": "ok", "id": 7, "data": {"a": 1}}
    err = codec.decode_any(codec.error("x", {"code": "invalid", "message": "m"}))
    assert err["type"] == "error" and err["data"]["code"] == "invalid"


@pytest.mark.parametrize("frame,code", [
    (b"{not json", "bad_frame"),
    (b"[1,2]", "bad_frame"),
    (b'{"id": 1}', "bad_frame"),
    (b'{"type": "nope", "id": 1}', "unknown_type"),
    (b'{"type": "send", "id": 1, "data": {"cid": "a"}}', "invalid"),
    (b'{"type": "send", "id": 1, "data": {"cid": "a", "text": 5}}', "invalid"),
    (b'{"type": "send", "id": 1, "data": {"cid": "a b", "text": "x"}}', "invalid"),
    (b'{"type": "send", "id": 1, "data": {"cid": "a", "text": "' + b"x" * (MAX_TEXT + 1) + b'"}}', "too_large"),
    (b'{"type": "history", "id": 1, "data": {"conv": "c", "limit": 100000}}', "invalid"),
    (b'{"type": "send", "id": 1, "data": {"cid": "a", "text": ""}}', "invalid"),
])
def test_bad_frames_get_stable_codes(frame: bytes, code: str) -> None:
    with pytest.raises(BadRequest) as e:
        JSON.decode(frame)
    assert e.value.code.value == code


def test_msgpack_garbage_is_bad_frame() -> None:
    with pytest.raises(BadRequest) as e:
        MSGPACK.decode(b"\xc1\xff\x00")
    assert e.value.code.value == "bad_frame"


def test_oversized_frame_is_too_large() -> None:
    with pytest.raises(BadRequest) as e:
        JSON.decode(b"{" + b" " * (64 * 1024 + 10) + b"}")
    assert e.value.code.value == "too_large"


def test_every_error_code_is_documented() -> None:
    from pathlib import Path
    from kefu.protocol.errors import ErrorCode, CloseCode
    spec = (Path(__file__).resolve().parents[2] / "protocol" / "PROTOCOL.md").read_text()
    for c in ErrorCode:
        assert f"`{c.value}`" in spec, f"{c.value} missing from PROTOCOL.md"
    for cc in CloseCode:
        assert f"| {int(cc)} |" in spec, f"close code {int(cc)} missing from PROTOCOL.md"
    for t in REQUESTS:
        assert f"`{t}`" in spec, f"request {t} missing from PROTOCOL.md"
