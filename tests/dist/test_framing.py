"""framing.py: packet-2/packet-4 splitting, limits, ticks, switching."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distproxy.dist.framing import (
    HEADER_DATA, HEADER_HANDSHAKE, FrameBuffer, FrameTooLarge, FramingError, encode_frame,
)


def frames(buf: FrameBuffer) -> list[bytes]:
    return [bytes(f) for f in buf]


def test_packet2_basic():
    b = FrameBuffer()
    b.feed(encode_frame(b"hello", 2) + encode_frame(b"x", 2) + b"\x00")
    assert frames(b) == [b"hello", b"x"]
    assert b.buffered == 1
    b.feed(b"\x02ab")
    assert frames(b) == [b"ab"]
    assert b.buffered == 0


def test_zero_copy_views_survive_further_feeds():
    b = FrameBuffer(HEADER_DATA)
    chunk = encode_frame(b"a" * 10) + encode_frame(b"b" * 5)[:6]
    b.feed(chunk)
    v = b.next_frame()
    assert v is not None and v.obj is chunk  # a slice of the fed bytes
    b.feed(b"bbb")
    assert b.next_frame() == b"bbbbb"
    assert v == b"a" * 10  # still valid
    assert b.next_frame() is None


def test_one_byte_at_a_time():
    msgs = [b"", b"p\x83abc", b"z" * 300, b"", b"q"]
    wire = b"".join(encode_frame(m) for m in msgs)
    b = FrameBuffer(HEADER_DATA)
    out = []
    for i in range(len(wire)):
        b.feed(wire[i : i + 1])
        out += frames(b)
    assert out == msgs
    assert b.buffered == 0


def test_tick_is_empty_frame():
    b = FrameBuffer(HEADER_DATA)
    b.feed(b"\x00\x00\x00\x00")
    f = b.next_frame()
    assert f is not None and len(f) == 0


def test_oversize_fails_from_header_alone():
    b = FrameBuffer(HEADER_DATA, max_frame=1000)
    with pytest.raises(FrameTooLarge) as ei:
        b.feed(struct.pack(">I", 2**31))
    assert ei.value.length == 2**31
    with pytest.raises(FrameTooLarge):
        b.feed(b"more")
    with pytest.raises(FrameTooLarge):
        b.next_frame()


def test_oversize_split_header_and_default_limit():
    b = FrameBuffer(HEADER_DATA)
    b.feed(b"\x80\x00")
    b.feed(b"\x00")
    with pytest.raises(FrameTooLarge):
        b.feed(b"\x00")


def test_oversize_later_frame_detected_on_iteration():
    b = FrameBuffer(HEADER_DATA, max_frame=10)
    b.feed(encode_frame(b"ok") + struct.pack(">I", 11))
    assert b.next_frame() == b"ok"
    with pytest.raises(FrameTooLarge):
        b.next_frame()


def test_switch_keeps_leftover():
    hs = encode_frame(b"a" + b"d" * 16, HEADER_HANDSHAKE)
    data = encode_frame(b"p\x83h\x00") + encode_frame(b"")
    b = FrameBuffer(HEADER_HANDSHAKE)
    b.feed(hs + data[:5])
    assert b.next_frame() == b"a" + b"d" * 16
    b.switch(HEADER_DATA)
    assert b.buffered == 5
    b.feed(data[5:])
    assert frames(b) == [b"p\x83h\x00", b""]


def test_take_rest():
    b = FrameBuffer()
    b.feed(b"\x00\x05ab")
    assert b.take_rest() == b"\x00\x05ab" and b.buffered == 0
    b.feed(b"\x00")
    b.feed(b"\x01")
    assert b.take_rest() == b"\x00\x01"


def test_encode_frame_limits():
    with pytest.raises(FramingError):
        encode_frame(b"x" * 70000, HEADER_HANDSHAKE)


def test_large_frame_in_pieces_is_linear():
    body = bytes(range(256)) * 4096  # 1 MiB
    wire = encode_frame(body)
    b = FrameBuffer(HEADER_DATA)
    got = []
    for i in range(0, len(wire), 1000):
        b.feed(wire[i : i + 1000])
        got += frames(b)
        assert b.buffered <= len(wire)
    assert got == [body]


@given(st.lists(st.binary(max_size=40), max_size=8), st.lists(st.integers(1, 30), max_size=20))
def test_split_anywhere(msgs, cuts):
    wire = b"".join(encode_frame(m) for m in msgs)
    b = FrameBuffer(HEADER_DATA)
    out, pos = [], 0
    for c in cuts + [len(wire)]:
        b.feed(wire[pos : pos + c])
        pos += c
        out += frames(b)
    assert out == msgs
