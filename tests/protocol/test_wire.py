"""server/wire.py: the frames written straight to the socket parse as RFC 6455 frames (websockets' own parser)."""
from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from kefu.server.wire import frame


def parse(data: bytes) -> list[tuple[Opcode, bytes, bool]]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=False)  # as a client reads server frames
        try:
            next(gen)
            raise AssertionError("truncated frame")
        except StopIteration as done:
            f = done.value
        out.append((f.opcode, bytes(f.data), f.fin))
    return out


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
@pytest.mark.parametrize("binary", [True, False])
def test_frame_lengths_round_trip(n: int, binary: bool) -> None:
    payload = (b"\xe5\xae\xa2" * (n // 3 + 1))[:n - n % 3] if not binary else bytes(range(256)) * (n // 256) + bytes(n % 256)
    got = parse(frame(payload, binary))
    assert got == [(Opcode.BINARY if binary else Opcode.TEXT, payload, True)]


def test_several_frames_in_one_write_stay_separate() -> None:
    frames = [b"a" * 10, b"b" * 200, b"c" * 70_000]
    got = parse(b"".join(frame(f, True) for f in frames))
    assert [d for _, d, _ in got] == frames
