"""The data phase, one direction, sans-IO.

After both handshakes, every byte one leg sends passes through a :class:`FramePump`:
frames are split from the receive buffer in a loop, each ``'p'`` frame is parsed into a
:class:`~distproxy.dist.control.ControlMessage` and handed to the policy hook, and the
original bytes of the frames the hook lets through are forwarded, unchanged and in order.
The hook can also ask for frames to be sent back toward the sender (a polite rejection)
or for the connection pair to be closed.

Ticks (empty frames) are forwarded as they are: each side's net_ticktime bookkeeping
then works exactly as without the proxy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from distproxy.term import DEFAULT_LIMITS, Limits

from .control import ControlMessage, parse_frame
from .errors import ProtocolError
from .framing import DEFAULT_MAX_FRAME, HEADER_DATA, FrameBuffer

__all__ = ["Direction", "HookResult", "ACCEPT", "FramePump", "PumpOutput", "TICK"]

TICK = b"\x00\x00\x00\x00"
_LEN4 = struct.Struct(">I")


class Direction(StrEnum):
    """Which way a frame travels, named from the trusted node's point of view."""

    TO_PEER = "to_peer"  # trusted -> untrusted
    FROM_PEER = "from_peer"  # untrusted -> trusted


@dataclass(frozen=True, slots=True)
class HookResult:
    """What the policy hook decided for one frame."""

    forward: bool = True
    replies: tuple[bytes, ...] = ()  # frame bodies (no length) sent back to the sender's leg
    close: str | None = None  # close the pair, with this reason


ACCEPT = HookResult()

Hook = Callable[[ControlMessage], HookResult]


def accept_all(message: ControlMessage) -> HookResult:
    """The hook used when no policy is configured: forward everything."""
    return ACCEPT


@dataclass(slots=True)
class PumpOutput:
    """Bytes to write to each leg after one ``receive`` call, already length-prefixed.

    ``forward`` is coalesced into one ``bytes`` (one write, one copy of the frames).
    """

    forward: bytes = b""
    back: list[bytes] = field(default_factory=list)
    close: str | None = None


@dataclass(slots=True)
class PumpStats:
    frames: int = 0
    ticks: int = 0
    bytes_in: int = 0
    bytes_forwarded: int = 0
    frames_dropped: int = 0


class FramePump:
    """Frames of one direction: split, classify, decide, forward."""

    __slots__ = ("direction", "hook", "limits", "buffer", "stats", "closed")

    def __init__(
        self,
        direction: Direction,
        hook: Hook = accept_all,
        max_frame: int = DEFAULT_MAX_FRAME,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.direction = direction
        self.hook = hook
        self.limits = limits
        self.buffer = FrameBuffer(HEADER_DATA, max_frame)
        self.stats = PumpStats()
        self.closed: str | None = None

    @property
    def buffered(self) -> int:
        return self.buffer.buffered

    def receive(self, data: bytes | memoryview) -> PumpOutput:
        """Take bytes from the sending leg; return what to write where.

        A protocol violation (bad length, malformed frame, unknown op) sets ``close`` with
        the reason; frames before it in the same read are still forwarded.
        """
        out = PumpOutput()
        forward: list[bytes | memoryview] = []
        if self.closed is not None:
            out.close = self.closed
            return out
        stats = self.stats
        stats.bytes_in += len(data)
        hook = self.hook
        limits = self.limits
        pack = _LEN4.pack
        try:
            self.buffer.feed(data)
            for body in self.buffer:
                size = len(body)
                if size == 0:
                    stats.ticks += 1
                    forward.append(TICK)
                    continue
                stats.frames += 1
                message = parse_frame(body, limits)
                result = hook(message)
                if result.forward:
                    forward.append(pack(size))
                    forward.append(body)
                    stats.bytes_forwarded += size + 4
                else:
                    stats.frames_dropped += 1
                if result.replies:
                    out.back.extend(pack(len(reply)) + reply for reply in result.replies)
                if result.close is not None:
                    self.closed = out.close = result.close
                    break
        except ProtocolError as exc:
            self.closed = out.close = f"{self.direction.value}: {exc}"
        if forward:
            out.forward = b"".join(forward)
        return out
