"""Typed errors of the distribution layer.

Every malformed input ends in one of these (never IndexError, struct.error, ...), so the
I/O layer can close the connection with a reason instead of crashing.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Peer sent bytes that violate the protocol. ``offset`` is where, when known."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"{reason} (at offset {offset})")


class FrameError(ProtocolError):
    """A data-phase frame (``'p'`` + control [+ payload]) is malformed."""


class FramingError(ProtocolError):
    """The length-prefixed framing itself is broken."""


class FrameTooLarge(FramingError):
    """A length prefix claims more than the configured maximum."""

    def __init__(self, length: int, maximum: int) -> None:
        self.length = length
        self.maximum = maximum
        super().__init__(f"frame length {length} exceeds maximum {maximum}", 0)


class InvalidNodeName(ProtocolError):
    """A node name a policy would not expect (or OTP would refuse)."""
