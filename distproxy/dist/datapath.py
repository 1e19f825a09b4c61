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
from typing import Protocol

from distproxy.term import DEFAULT_LIMITS, Limits

from .control import PASS_THROUGH, VERSION_MAGIC, ControlMessage, _message, parse_frame
from .errors import FrameTooLarge, ProtocolError
from .framing import DEFAULT_MAX_FRAME

__all__ = ["Direction", "HookResult", "ACCEPT", "FramePump", "PumpOutput", "TICK"]

TICK = b"\x00\x00\x00\x00"
#: Cached verdicts per pump; the cache is emptied when full (most traffic repeats a few
#: control terms: one per sender/receiver pair and op).
MAX_CACHED_VERDICTS = 4096
#: Longer control terms (big exit reasons, say) are decided every time.
MAX_CACHED_KEY = 512
#: Distinct control-term sizes tried per frame before a full parse.
MAX_KEY_SIZES = 8
#: A cache-hit frame at least this long that continues in later reads is streamed
#: through instead of buffered.
STREAM_MIN = 16 * 1024
_LEN4 = struct.Struct(">I")


class Direction(StrEnum):
    """Which way a frame travels, named from the trusted node's point of view."""

    TO_PEER = "to_peer"  # trusted -> untrusted
    FROM_PEER = "from_peer"  # untrusted -> trusted


class CacheToken(Protocol):
    """Attached by a hook to a result that holds for every frame of this pump whose
    control term has the same bytes (no payload read, no state, nothing to log)."""

    def still_valid(self) -> bool:
        """False once the hook would decide differently (e.g. the policy was reloaded)."""

    def reuse(self, count: int) -> None:
        """``count`` more frames were decided by this result without asking the hook."""


@dataclass(frozen=True, slots=True)
class HookResult:
    """What the policy hook decided for one frame."""

    forward: bool = True
    replies: tuple[bytes, ...] = ()  # frame bodies (no length) sent back to the sender's leg
    close: str | None = None  # close the pair, with this reason
    cache: CacheToken | None = None  # set: reuse this result for the same control bytes


ACCEPT = HookResult()


class _Always:
    """The cache token of :func:`accept_all`: always valid, nothing to count."""

    __slots__ = ()

    def still_valid(self) -> bool:
        return True

    def reuse(self, count: int) -> None:
        pass


_ACCEPT_ALWAYS = HookResult(cache=_Always())

Hook = Callable[[ControlMessage], HookResult]


def accept_all(message: ControlMessage) -> HookResult:
    """The hook used when no policy is configured: forward everything."""
    return _ACCEPT_ALWAYS


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


class _Entry:
    """What is known about one control term's bytes: its parse, and (once the hook
    said so) the result every frame starting with them gets."""

    __slots__ = ("key", "size", "has_payload", "spec", "control", "result", "hits")

    def __init__(self, key: bytes, message: ControlMessage, result: HookResult | None) -> None:
        self.key = key
        self.size = len(key)
        self.has_payload = message.payload_offset is not None
        self.spec = message.spec
        self.control = message.control
        self.result = result  # None: parse known, but the hook must see every frame
        self.hits = 0  # reuses of ``result`` not yet reported to result.cache


def _immutable(term: object, depth: int = 0) -> bool:
    """Whether a decoded control term can be shared by many messages (no list or map
    anywhere in it a hook could mutate)."""
    t = type(term)
    if t is tuple:
        return depth < 8 and all(_immutable(x, depth + 1) for x in term)  # type: ignore[attr-defined]
    return t is not list and t is not dict


class FramePump:
    """Frames of one direction: split, classify, decide, forward.

    The hot path works on the received chunk itself: frames are located by their length
    prefixes, and a run of consecutive accepted frames is forwarded as one slice of the
    chunk (the chunk itself when all of it is accepted). A frame whose control term has
    the bytes of one already decided with a cacheable result (see :class:`CacheToken`)
    is not decoded nor decided again: ETF is prefix-free, so equal bytes are the same
    complete term; without a cacheable result the control term's parse is still reused
    (the hook sees a fresh message for every frame).
    A frame that spans reads is accumulated and forwarded whole, unless its control term
    is a cache hit: then its bytes are streamed through as they come, unbuffered.
    """

    __slots__ = ("direction", "hook", "limits", "max_frame", "stats", "closed", "_cache",
                 "_sizes", "_last", "_token", "_touched", "_pending", "_pending_len", "_need", "_through")

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
        self.max_frame = max_frame
        self.stats = PumpStats()
        self.closed: str | None = None
        self._cache: dict[bytes, _Entry] = {}
        self._sizes: list[int] = []  # distinct key lengths in the cache, most recent first
        self._last: _Entry | None = None  # the entry that decided the previous frame
        self._token: CacheToken | None = None  # the latest reusable result's token
        self._touched: list[_Entry] = []  # entries with unreported hits
        # A frame that spans reads, so far. A bytearray, not a list of the reads: each
        # read is released as soon as it is copied in (holding them fragments the heap,
        # which showed as a third copy of a 64 MiB frame in peak RSS), and growing it in
        # place is a remap, not a copy, for big frames.
        self._pending = bytearray()
        self._need = 0  # total bytes (header included) of the pending frame, once known
        self._through = 0  # bytes of a cache-hit frame still to stream through unchanged

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def receive(self, data: bytes | memoryview) -> PumpOutput:
        """Take bytes from the sending leg; return what to write where.

        A protocol violation (bad length, malformed frame, unknown op) sets ``close`` with
        the reason; frames before it in the same read are still forwarded.
        """
        out = PumpOutput()
        if self.closed is not None:
            out.close = self.closed
            return out
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        self.stats.bytes_in += n
        if n == 0:
            return out
        token = self._token
        if token is not None and not token.still_valid():
            self._forget()
        pieces: list[bytes | memoryview] = []
        pos = 0
        try:
            if self._through:
                pos = min(self._through, n)
                self._through -= pos
                self.stats.bytes_forwarded += pos
                if pos == n:
                    out.forward = data
                    return out
                pieces.append(memoryview(data)[:pos])
            if self._pending:
                pos = self._complete_pending(data, pos, out, pieces)
            if pos < n and out.close is None:
                self._scan(data, pos, out, pieces)
        except ProtocolError as exc:
            self.closed = out.close = f"{self.direction.value}: {exc}"
        finally:
            if self._touched:
                for entry in self._touched:
                    entry.result.cache.reuse(entry.hits)  # type: ignore[union-attr]
                    entry.hits = 0
                self._touched.clear()
        if pieces:
            if len(pieces) == 1 and type(pieces[0]) is bytes:
                out.forward = pieces[0]  # type: ignore[assignment]
            else:
                out.forward = b"".join(pieces)
        return out

    # -- frames that span reads -------------------------------------------------------------

    def _complete_pending(self, data: bytes, pos: int, out: PumpOutput,
                          pieces: list[bytes | memoryview]) -> int:
        """Add ``data[pos:]`` to the pending frame; decide it once whole. Returns where
        the next frame starts (``len(data)`` if all of it went to the pending frame)."""
        n = len(data)
        if self._need == 0:  # the length prefix itself was split: rejoin the (few) bytes
            head = bytes(self._pending) + data[pos:]
            self._pending = bytearray()
            # Decide from the rejoined bytes; pieces refer to ``head``, not ``data``.
            self._scan(head, 0, out, pieces)
            return n
        missing = self._need - len(self._pending)
        if n - pos < missing:
            self._pending += memoryview(data)[pos:]
            return n
        self._pending += memoryview(data)[pos : pos + missing]
        frame = bytes(self._pending)  # Twisted writes bytes only
        self._pending = bytearray()
        self._need = 0
        self.stats.frames += 1
        entry = self._find(frame, 4, len(frame))
        if entry is not None and entry.result is not None:
            self._account(entry)
            forward = True
        else:
            forward = self._decide(frame, 0, len(frame), out, entry)
        if forward:
            pieces.append(frame)
            self.stats.bytes_forwarded += len(frame)
        return pos + missing

    # -- the hot loop -----------------------------------------------------------------------

    def _scan(self, data: bytes, pos: int, out: PumpOutput, pieces: list[bytes | memoryview]) -> None:
        """Decide every complete frame in ``data[pos:]``, forwarding runs of accepted ones
        as slices; start a pending (or streamed) frame with an incomplete tail."""
        n = len(data)
        stats = self.stats
        max_frame = self.max_frame
        unpack = _LEN4.unpack_from
        run = pos  # start of the current run of accepted frames
        frames = ticks = 0
        try:
            while n - pos >= 4:
                size = unpack(data, pos)[0]
                end = pos + 4 + size
                if size == 0:
                    ticks += 1
                    pos = end
                    continue
                if size > max_frame:
                    raise FrameTooLarge(size, max_frame)
                if end > n:
                    if self._stream_through(data, pos, end):
                        pos = n
                    break
                frames += 1
                entry = self._find(data, pos + 4, end)
                if entry is not None and entry.result is not None:
                    if entry.hits == 0:
                        self._touched.append(entry)
                    entry.hits += 1
                    pos = end
                    continue
                if not self._decide(data, pos, end, out, entry):
                    if pos > run:
                        pieces.append(memoryview(data)[run:pos])
                        stats.bytes_forwarded += pos - run
                    run = end
                pos = end
                if out.close is not None:
                    break
        finally:
            stats.frames += frames
            stats.ticks += ticks
            if pos > run:
                if run == 0 and pos == n:
                    pieces.append(data)
                else:
                    pieces.append(memoryview(data)[run:pos])
                stats.bytes_forwarded += pos - run
            stats.bytes_forwarded -= 4 * ticks  # ticks are forwarded but not counted as data
        if pos < n and out.close is None:
            self._start_pending(data, pos)

    def _find(self, data: bytes, body: int, end: int) -> _Entry | None:
        """The entry whose control bytes start the frame body at ``body``, if the rest
        of the frame fits it (a payload follows exactly when the op has one)."""
        if data[body] != PASS_THROUGH or not self._cache:
            return None
        start = body + 1
        entry = self._last
        if entry is None or not data.startswith(entry.key, start, end):
            entry = None
            cache = self._cache
            for size in self._sizes:
                if start + size <= end:
                    entry = cache.get(data[start : start + size])
                    if entry is not None:
                        break
            if entry is None:
                return None
        stop = start + entry.size
        if entry.has_payload:
            if stop >= end or data[stop] != VERSION_MAGIC:
                return None
        elif stop != end:
            return None
        self._last = entry
        return entry

    def _account(self, entry: _Entry) -> None:
        if entry.hits == 0:
            self._touched.append(entry)
        entry.hits += 1

    def _decide(self, data: bytes, pos: int, end: int, out: PumpOutput, entry: _Entry | None) -> bool:
        """Ask the hook about the frame at ``data[pos:end]`` (length prefix included;
        ``entry``: its control term's known parse, if any). Returns whether to forward
        it; replies and close go to ``out``; what can be reused is remembered."""
        stats = self.stats
        body = memoryview(data)[pos + 4 : end]
        if entry is None:
            message = parse_frame(body, self.limits)
        else:
            message = _message(entry.spec, entry.control, body,
                               entry.size + 1 if entry.has_payload else None, self.limits)
        result = self.hook(message)
        if result is ACCEPT and entry is not None:  # the common case under stateful hooks
            return True
        reusable = (result.cache is not None and result.forward and not result.replies
                    and result.close is None)
        if entry is None:
            self._remember(data, pos + 5, message, result if reusable else None)
        elif reusable:
            entry.result = result
        if reusable:
            self._token = result.cache
        if not result.forward:
            stats.frames_dropped += 1
        if result.replies:
            pack = _LEN4.pack
            out.back.extend(pack(len(reply)) + reply for reply in result.replies)
        if result.close is not None:
            self.closed = out.close = result.close
        return result.forward

    def _remember(self, data: bytes, start: int, message: ControlMessage,
                  result: HookResult | None) -> None:
        stop = message.payload_offset
        size = (len(message.frame) if stop is None else stop) - 1
        if size > MAX_CACHED_KEY or (result is None and not _immutable(message.control)):
            return
        if len(self._cache) >= MAX_CACHED_VERDICTS:
            self._forget()
        if size not in self._sizes:
            if len(self._sizes) >= MAX_KEY_SIZES:
                return
            self._sizes.insert(0, size)
        key = data[start : start + size]
        entry = _Entry(key, message, result)
        self._cache[key] = entry
        self._last = entry

    def _forget(self) -> None:
        """Drop every cached verdict (full, or the hook's results went stale)."""
        for entry in self._touched:
            entry.result.cache.reuse(entry.hits)  # type: ignore[union-attr]
            entry.hits = 0
        self._touched.clear()
        self._cache.clear()
        self._sizes.clear()
        self._last = None
        self._token = None

    def _stream_through(self, data: bytes, pos: int, end: int) -> bool:
        """A frame that continues in later reads: if its control bytes are a cache hit,
        forward what is here and stream the rest (``_through``) without buffering."""
        n = len(data)
        if end - pos < STREAM_MIN or n - pos < 6:
            return False
        entry = self._find(data, pos + 4, n)
        if entry is None or entry.result is None:
            return False
        self._account(entry)
        self.stats.frames += 1
        self._through = end - n
        return True

    def _start_pending(self, data: bytes, pos: int) -> None:
        rest = memoryview(data)[pos:]
        self._pending = bytearray(rest)
        self._need = 4 + _LEN4.unpack_from(data, pos)[0] if len(rest) >= 4 else 0
