"""Micro-benchmarks of the per-frame path: frame split, control decode, verdict, pump.

    python -m pytest bench/test_microbench.py --benchmark-only

Not part of the default test run (pyproject's testpaths is ``tests``). Each benchmark
processes one realistic read: ``FRAMES`` small REG_SEND frames from one sender, as a
node batches them; divide the time by ``FRAMES`` for the cost per frame. The reference
pump (the data path before the hot-path work) runs the same reads for comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.reference_pump import ReferencePump
from distproxy.dist.control import Op, build_frame, parse_frame
from distproxy.dist.datapath import Direction, FramePump, accept_all
from distproxy.dist.framing import HEADER_DATA, FrameBuffer
from distproxy.enforcement import Enforcer
from distproxy.policy import Context, Counters, PolicyEngine, PolicyStore, load_policy
from distproxy.policy.guards import StatefulHooks
from distproxy.policy.state import ConnectionState
from distproxy.term import Atom, Pid

POLICIES = Path(__file__).resolve().parents[1] / "policies"
TRUSTED = "bench_t@127.0.0.1"
PEER = "bench_p@127.0.0.1"
FRAMES = 1000
SENDER = Pid(Atom(TRUSTED), 4711, 0, 1701234567)
SMALL = build_frame((int(Op.REG_SEND), SENDER, Atom(""), Atom("dp_sink")), (Atom("bench"), 12345))
KIB = build_frame((int(Op.REG_SEND), SENDER, Atom(""), Atom("dp_sink")), b"\x07" * 1024)
READ = SMALL * FRAMES


def enforcer(policy: str, direction: Direction, stateful: bool = False) -> Enforcer:
    store = PolicyStore({PEER: str(POLICIES / policy)})
    ctx = Context(peer_node=PEER, trusted_node=TRUSTED, negotiated_flags=0)
    hooks = StatefulHooks(direction.value, ConnectionState(TRUSTED, PEER)) if stateful else None
    return Enforcer(store, Counters(), None, ctx, direction, lambda: 0.0, hooks)


def drain(pump: Any, data: bytes) -> int:
    return len(pump.receive(data).forward)


# -- pieces of the path ----------------------------------------------------------------------

def test_split_framebuffer(benchmark: Any) -> None:
    """Splitting a read into frames with the handshake-era FrameBuffer (memoryviews)."""
    def split() -> int:
        buf = FrameBuffer(HEADER_DATA)
        buf.feed(READ)
        return sum(1 for _ in buf)
    assert benchmark(split) == FRAMES


def test_parse_frame_small(benchmark: Any) -> None:
    """Decoding one control term (the cost of every cache miss)."""
    body = memoryview(SMALL)[4:]
    assert benchmark(parse_frame, body).op is Op.REG_SEND


def test_evaluate_unequal_trust_to_peer(benchmark: Any) -> None:
    engine = PolicyEngine(load_policy(POLICIES / "unequal-trust.yaml"))
    message = parse_frame(memoryview(SMALL)[4:])
    ctx = Context(peer_node=PEER, trusted_node=TRUSTED)
    assert benchmark(engine.evaluate, message, Direction.TO_PEER, ctx).verdict.value == "accept"


# -- a whole read through the pump -------------------------------------------------------------

@pytest.mark.parametrize("pump_class", [FramePump, ReferencePump], ids=["pump", "reference"])
def test_read_accept_all(benchmark: Any, pump_class: Any) -> None:
    pump = pump_class(Direction.TO_PEER, accept_all)
    assert benchmark(drain, pump, READ) == len(READ)


@pytest.mark.parametrize("pump_class", [FramePump, ReferencePump], ids=["pump", "reference"])
def test_read_unequal_trust_to_peer(benchmark: Any, pump_class: Any) -> None:
    pump = pump_class(Direction.TO_PEER, enforcer("unequal-trust.yaml", Direction.TO_PEER))
    assert benchmark(drain, pump, READ) == len(READ)


@pytest.mark.parametrize("pump_class", [FramePump, ReferencePump], ids=["pump", "reference"])
def test_read_unequal_trust_to_peer_stateful(benchmark: Any, pump_class: Any) -> None:
    """As the service builds it: stateful hooks on every frame (never a cached verdict)."""
    pump = pump_class(Direction.TO_PEER, enforcer("unequal-trust.yaml", Direction.TO_PEER, stateful=True))
    assert benchmark(drain, pump, READ) == len(READ)


@pytest.mark.parametrize("pump_class", [FramePump, ReferencePump], ids=["pump", "reference"])
def test_read_1kib_frames(benchmark: Any, pump_class: Any) -> None:
    data = KIB * 200
    pump = pump_class(Direction.TO_PEER, enforcer("unequal-trust.yaml", Direction.TO_PEER))
    assert benchmark(drain, pump, data) == len(data)


@pytest.mark.parametrize("pump_class", [FramePump, ReferencePump], ids=["pump", "reference"])
def test_read_64kib_frame_in_64kib_reads(benchmark: Any, pump_class: Any) -> None:
    """64 KiB frames arriving in 64 KiB reads: each frame spans two reads."""
    frame = build_frame((int(Op.REG_SEND), SENDER, Atom(""), Atom("dp_sink")), b"\x07" * 65536)
    stream = frame * 16
    reads = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    pump = pump_class(Direction.TO_PEER, enforcer("unequal-trust.yaml", Direction.TO_PEER))

    def run() -> int:
        return sum(len(pump.receive(r).forward) for r in reads)
    assert benchmark(run) == len(stream)
