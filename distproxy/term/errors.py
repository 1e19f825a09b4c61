"""Exceptions of the codec: the only ones hostile input can provoke."""

from __future__ import annotations


class DecodeError(ValueError):
    """Malformed, truncated, over-limit or refused input.

    ``offset`` is the byte position (in the buffer passed in) where decoding failed, and
    ``reason`` says why, so a proxy can log a one-line verdict about a hostile frame.
    """

    __slots__ = ("offset", "reason")

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self):  # keep picklable despite the custom __init__
        return (type(self), (self.offset, self.reason))


class EncodeError(ValueError):
    """A Python value with no External Term Format encoding (None, str, a cycle, ...)."""
