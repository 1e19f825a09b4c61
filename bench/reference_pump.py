"""The frame pump as it was before the hot-path work (commit 3dfa437), kept as the
reference the optimised :class:`distproxy.dist.datapath.FramePump` is checked against
(``bench/test_pump_equivalence.py``) and measured against (``bench/test_microbench.py``).
"""

from __future__ import annotations

from distproxy.dist.control import parse_frame
from distproxy.dist.datapath import TICK, Direction, Hook, PumpOutput, PumpStats, _LEN4, accept_all
from distproxy.dist.errors import ProtocolError
from distproxy.dist.framing import DEFAULT_MAX_FRAME, HEADER_DATA, FrameBuffer
from distproxy.term import DEFAULT_LIMITS, Limits

__all__ = ["ReferencePump"]


class ReferencePump:
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
