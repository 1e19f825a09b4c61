"""The optimised FramePump is observably the pre-optimisation pump (bench/reference_pump.py).

Same stream of frames, cut into arbitrary reads: the same bytes forwarded (in total,
once the stream ends on a frame boundary), the same replies, the same close reason,
the same stats, and the hook's decisions (calls plus reported reuses) counted the same.
Run: ``python -m pytest bench/test_pump_equivalence.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.reference_pump import ReferencePump
from distproxy.dist.control import ControlMessage, Op, build_frame
from distproxy.dist.datapath import ACCEPT, Direction, FramePump, HookResult
from distproxy.term import Atom, Pid

NODE = Atom("t@127.0.0.1")
PIDS = [Pid(NODE, i, 0, 1) for i in (1, 2, 300)]
NAMES = ["sink", "other", "dropme", "rej", "kill"]


class Token:
    def __init__(self, hook: "Hook", key: Any) -> None:
        self.hook, self.key = hook, key

    def still_valid(self) -> bool:
        return self.hook.generation == 0

    def reuse(self, count: int) -> None:
        self.hook.decided[self.key] += count


class Hook:
    """Deterministic policy: accept (cacheable) by default; drop, reject, close by name."""

    def __init__(self, cacheable: bool) -> None:
        self.cacheable = cacheable
        self.decided: Counter[Any] = Counter()
        self.generation = 0

    def __call__(self, message: ControlMessage) -> HookResult:
        target = message.target
        key = (message.kind, str(target))
        self.decided[key] += 1
        name = target.name if isinstance(target, Atom) else ""
        if name == "dropme":
            return HookResult(forward=False)
        if name == "rej":
            return HookResult(forward=False, replies=(b"p-reply",))
        if name == "kill":
            return HookResult(forward=False, close="killed")
        return HookResult(cache=Token(self, key)) if self.cacheable else ACCEPT


def frame(kind: int, who: int, name: int, size: int) -> bytes:
    payload = b"x" * size
    if kind == 0:
        return build_frame((int(Op.REG_SEND), PIDS[who], Atom(""), Atom(NAMES[name])), payload)
    if kind == 1:
        return build_frame((int(Op.SEND_SENDER), PIDS[who], PIDS[name % 3]), payload)
    if kind == 2:
        return b"\x00\x00\x00\x00"  # tick
    if kind == 3:
        return build_frame((int(Op.LINK), PIDS[who], PIDS[name % 3]))
    return b"\x00\x00\x00\x05p\x83h\x01a"  # malformed: truncated control


frames_st = st.lists(
    st.builds(frame, st.integers(0, 3),
              st.integers(0, 2), st.integers(0, 4),
              st.sampled_from([0, 5, 100, 1000, 20000, 70000])),
    min_size=1, max_size=30)


def run(pump: Any, data: bytes, cuts: list[int]) -> tuple[bytes, list[bytes], str | None]:
    forward, back, close = [], [], None
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:]):
        out = pump.receive(data[a:b])
        forward.append(out.forward)
        back.extend(out.back)
        if out.close is not None:
            close = out.close
            break
    return b"".join(forward), back, close


def check(frames: list[bytes], cuts: list[int], cacheable: bool, bad: bool) -> None:
    data = b"".join(frames) + (b"\x00\x00\x00\x05p\x83h\x01a" if bad else b"")
    ref_hook, new_hook = Hook(cacheable), Hook(cacheable)
    ref = ReferencePump(Direction.TO_PEER, ref_hook)
    new = FramePump(Direction.TO_PEER, new_hook)
    assert run(new, data, cuts) == run(ref, data, cuts)
    assert new_hook.decided == ref_hook.decided
    for f in ("frames", "ticks", "bytes_in", "bytes_forwarded", "frames_dropped"):
        assert getattr(new.stats, f) == getattr(ref.stats, f), f


@settings(max_examples=400, deadline=None)
@given(frames_st, st.lists(st.integers(0, 10**6), max_size=12), st.booleans(), st.booleans())
def test_same_as_reference(frames: list[bytes], cuts: list[int], cacheable: bool, bad: bool) -> None:
    check(frames, cuts, cacheable, bad)


def test_whole_chunk_forwarded_as_the_same_object() -> None:
    data = b"".join(frame(0, 0, 0, 10) for _ in range(50))
    pump = FramePump(Direction.TO_PEER, Hook(True))
    out = pump.receive(data)
    assert out.forward is data


def test_reload_invalidates_cached_verdicts() -> None:
    hook = Hook(True)
    pump = FramePump(Direction.TO_PEER, hook)
    f = frame(0, 0, 0, 10)
    pump.receive(f * 3)
    calls = sum(hook.decided.values())
    hook.generation = 1  # the policy changed: the next read must ask the hook again
    pump.receive(f)
    assert sum(hook.decided.values()) == calls + 1


@pytest.mark.parametrize("policy", ["unequal-trust.yaml", "allow-all.yaml", "audit.yaml"])
@pytest.mark.parametrize("direction", list(Direction))
@pytest.mark.parametrize("stateful", [False, True], ids=["plain", "stateful"])
def test_enforcer_counts_and_verdicts_as_reference(policy: str, direction: Direction, stateful: bool) -> None:
    """Real policies through the Enforcer: same bytes out and the same counters whether
    verdicts come from the pump's cache, the Enforcer's memo, or a fresh evaluation."""
    from bench.test_microbench import enforcer

    frames = [frame(k, w, t, size) for k in (0, 1, 3) for w in (0, 1) for t in (0, 1, 2)
              for size in (0, 10)]
    data = b"".join(frames * 20)
    cuts = list(range(0, len(data), 997))
    ref_e, new_e = enforcer(policy, direction, stateful), enforcer(policy, direction, stateful)
    ref = ReferencePump(direction, ref_e)
    new = FramePump(direction, new_e)
    assert run(new, data, cuts) == run(ref, data, cuts)
    assert new_e.counters.snapshot() == ref_e.counters.snapshot()
