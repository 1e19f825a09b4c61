"""Length-prefixed framing: ``{packet,2}`` during the handshake, ``{packet,4}`` after.

:class:`FrameBuffer` is fed whatever TCP delivered and hands out complete frame bodies
as memoryviews. Every view is over an immutable ``bytes`` object, so it stays valid
(and the buffer can keep growing) however long the caller holds it: frames that lie
wholly inside one ``feed`` chunk are zero-copy slices of that chunk; a frame split over
several chunks is accumulated in a bytearray and copied out once.

A length prefix over ``max_frame`` fails as soon as its bytes are seen, before any of
the claimed body is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .errors import FrameTooLarge, FramingError

__all__ = [
    "HEADER_HANDSHAKE",
    "HEADER_DATA",
    "DEFAULT_MAX_FRAME",
    "MAX_HANDSHAKE_MESSAGE",
    "FrameBuffer",
    "FrameTooLarge",
    "FramingError",
    "encode_frame",
]

#: Length-prefix sizes: handshake messages use 2 bytes, data frames 4.
HEADER_HANDSHAKE = 2
HEADER_DATA = 4
#: Default cap on one data frame (OTP itself has none once FRAGMENTS is stripped).
DEFAULT_MAX_FRAME = 128 * 1024 * 1024
#: A u16 length cannot exceed this anyway.
MAX_HANDSHAKE_MESSAGE = 0xFFFF

_HEADERS = {HEADER_HANDSHAKE: struct.Struct(">H"), HEADER_DATA: struct.Struct(">I")}
_EMPTY = memoryview(b"")


def encode_frame(body: bytes | memoryview, header: int = HEADER_DATA) -> bytes:
    """Prefix ``body`` with its length (2 or 4 bytes)."""
    st = _HEADERS[header]
    if len(body) >= 1 << (8 * header):
        raise FramingError(f"body of {len(body)} bytes does not fit a {header}-byte length")
    return st.pack(len(body)) + bytes(body)


class FrameBuffer:
    """Split a byte stream into frames.

    Usage: ``buf.feed(data)`` then ``for body in buf: ...``. A zero-length data frame is
    a tick and comes out as an empty memoryview (``len(body) == 0``). After any
    :class:`FramingError` the buffer is broken and keeps raising.
    """

    __slots__ = ("_header", "_st", "max_frame", "_data", "_pos", "_acc", "_error")

    def __init__(self, header: int = HEADER_HANDSHAKE, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._header = header
        self._st = _HEADERS[header]
        self.max_frame = max_frame
        self._data: bytes = b""  # immutable chunk being consumed from _pos
        self._pos = 0
        self._acc: bytearray | None = None  # used while a frame spans chunks
        self._error: FramingError | None = None

    @property
    def header_size(self) -> int:
        return self._header

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out (for back-pressure decisions)."""
        if self._acc is not None:
            return len(self._acc)
        return len(self._data) - self._pos

    def switch(self, header: int) -> None:
        """Change the length-prefix size at a frame boundary, keeping buffered bytes.

        Called right after the last handshake message: data frames that arrived in the
        same read are then split with the new header size.
        """
        self._header = header
        self._st = _HEADERS[header]
        if self._error is None:
            self._check_header()

    def take_rest(self) -> bytes:
        """Remove and return every buffered byte (e.g. to hand to another parser)."""
        if self._acc is not None:
            rest = bytes(self._acc)
            self._acc = None
        else:
            rest = self._data[self._pos :]
        self._data, self._pos = b"", 0
        return rest

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. Raises FrameTooLarge at once on an oversized length."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        if self._acc is not None:
            self._acc += data
        elif self._pos < len(self._data):
            acc = bytearray(memoryview(self._data)[self._pos :])
            acc += data
            self._acc = acc
            self._data, self._pos = b"", 0
        else:
            self._data = data if type(data) is bytes else bytes(data)
            self._pos = 0
        self._check_header()

    def _check_header(self) -> None:
        h = self._header
        if self._acc is not None:
            if len(self._acc) >= h:
                self._check_length(self._st.unpack_from(self._acc, 0)[0])
        elif len(self._data) - self._pos >= h:
            self._check_length(self._st.unpack_from(self._data, self._pos)[0])

    def _check_length(self, n: int) -> None:
        if n > self.max_frame:
            self._error = FrameTooLarge(n, self.max_frame)
            raise self._error

    def next_frame(self) -> memoryview | None:
        """The next complete frame body, or None if more bytes are needed."""
        if self._error is not None:
            raise self._error
        h = self._header
        acc = self._acc
        if acc is not None:
            if len(acc) < h:
                return None
            n = self._st.unpack_from(acc, 0)[0]
            self._check_length(n)
            end = h + n
            if len(acc) < end:
                return None
            body = bytes(memoryview(acc)[h:end]) if n else b""
            self._data = bytes(memoryview(acc)[end:])
            self._pos = 0
            self._acc = None
            self._check_header()
            return memoryview(body) if n else _EMPTY
        data, pos = self._data, self._pos
        if len(data) - pos < h:
            return None
        n = self._st.unpack_from(data, pos)[0]
        self._check_length(n)
        start = pos + h
        end = start + n
        if end > len(data):
            return None
        self._pos = end
        if end == len(data):
            self._data, self._pos = b"", 0
        return memoryview(data)[start:end] if n else _EMPTY

    def __iter__(self) -> Iterator[memoryview]:
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame
