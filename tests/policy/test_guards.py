"""from_peer guards: flag gating, rates, sizes, depth, terms, funs, atom budget, caps."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings

from distproxy.dist.control import Op, frame_body, parse_frame
from distproxy.dist.flags import DFlag
from distproxy.policy import Verdict
from distproxy.policy.guards import AtomLedger, PeerGuards, learn_atoms
from distproxy.policy.model import Limits, Mode
from distproxy.policy.state import ConnectionState
from distproxy.term import Atom, DecodeError, Export, Fun, Pid, Reference, encode
from distproxy.term.atoms import ScanLimit, scan_at

from tests.term.strategies import terms

T = "my_desktop@127.0.0.1"
P = "ec2_node@127.0.0.1"
FLAGS = 0xD075F5FBD


def ppid(n: int = 1) -> Pid:
    return Pid(Atom(P), n, 0, 9)


def tpid(n: int = 1) -> Pid:
    return Pid(Atom(T), n, 0, 7)


def send(payload: Any) -> Any:
    return parse_frame(frame_body((int(Op.SEND_SENDER), ppid(), tpid()), payload))


def guards(limits: Limits = Limits(), flags: int = FLAGS, ledger: AtomLedger | None = None) -> PeerGuards:
    g = PeerGuards(ledger or AtomLedger(), ConnectionState(T, P), flags, 0.0)
    g.configure(limits, 0.0)
    return g


def refused(g: PeerGuards, message: Any, now: float = 0.0) -> str | None:
    r = g.check(message, now)
    if r is None:
        g.commit()
        return None
    return r.guard


def test_ops_need_their_negotiated_flags() -> None:
    spawn = parse_frame(frame_body((int(Op.SPAWN_REQUEST), Reference(Atom(P), 1, (1, 2, 3)), ppid(), ppid(),
                                    (Atom("m"), Atom("f"), 0), []), []))
    assert refused(guards(), spawn) is None
    g = guards(flags=FLAGS & ~DFlag.SPAWN)
    assert refused(g, spawn) == "flags"
    assert g.decision(g.check(spawn, 0.0), Mode.ENFORCE).verdict is Verdict.DISCONNECT  # type: ignore[arg-type]
    alias = parse_frame(frame_body((int(Op.ALIAS_SEND), ppid(), Reference(Atom(T), 1, (1, 2, 3))), Atom("x")))
    assert refused(guards(flags=FLAGS & ~DFlag.ALIAS), alias) == "flags"
    by_name = parse_frame(frame_body((int(Op.MONITOR_P), ppid(), Atom("svc"), Reference(Atom(P), 1, (1, 2, 3)))))
    assert refused(guards(flags=FLAGS & ~DFlag.DIST_MONITOR_NAME), by_name) == "flags"
    exit_ = parse_frame(frame_body((int(Op.PAYLOAD_EXIT), ppid(), tpid()), Atom("normal")))
    assert refused(guards(flags=FLAGS & ~DFlag.EXIT_PAYLOAD), exit_) == "flags"


def test_rate_is_a_token_bucket_on_the_given_clock() -> None:
    g = guards(Limits(frames_per_second=10, burst_seconds=1.0))
    results = [refused(g, send(Atom("ok")), now=0.0) for _ in range(12)]
    assert results[:10] == [None] * 10 and results[10:] == ["rate", "rate"]
    assert refused(g, send(Atom("ok")), now=0.5) is None  # 5 tokens came back


def test_size_depth_terms() -> None:
    assert refused(guards(Limits(max_message_bytes=100)), send(b"x" * 200)) == "size"
    deep: Any = Atom("x")
    for _ in range(600):
        deep = [deep]
    assert refused(guards(), send(deep)) == "depth"  # default max_depth 512
    assert refused(guards(Limits(max_terms=1000)), send(list(range(2000)))) == "terms"
    assert refused(guards(), send(list(range(2000)))) is None


def test_a_100000_deep_message_is_refused_without_recursion() -> None:
    depth = 100_000
    body = b"\x83" + b"l\x00\x00\x00\x01" * depth + b"j" + b"j" * depth
    frame = b"p" + encode((int(Op.SEND_SENDER), ppid(), tpid())) + body
    assert refused(guards(), parse_frame(frame)) == "depth"


def test_funs_and_exports_need_an_allowed_module() -> None:
    assert refused(guards(), send((Atom("run"), Export(Atom("os"), Atom("cmd"), 1)))) == "funs"
    assert refused(guards(), send(Export(Atom("global"), Atom("random_exit_name"), 3))) is None
    fun = Fun(Atom("evil"), 0, b"\x00" * 16, 0, 0, 0, ppid(), ())
    assert refused(guards(), send([fun])) == "funs"
    assert refused(guards(Limits(allow_funs=("evil",))), send([fun])) is None


def test_atom_budget_counts_only_atoms_t_never_sent() -> None:
    ledger = AtomLedger()
    g = guards(Limits(max_atoms=10), ledger=ledger)
    learn_atoms(ledger, parse_frame(frame_body((int(Op.SEND_SENDER), tpid(), ppid()),
                                               [Atom(f"t{i}") for i in range(50)])))
    assert refused(g, send([Atom(f"t{i}") for i in range(50)])) is None  # T's own atoms are free
    assert refused(g, send([Atom(f"new{i}") for i in range(6)])) is None
    assert refused(g, send([Atom(f"other{i}") for i in range(6)])) == "atoms"  # 6 + 6 > 10
    assert refused(g, send([Atom(f"new{i}") for i in range(6)])) is None  # already introduced
    # the node name in a pid is an atom too
    assert refused(g, send([Pid(Atom(f"n{i}@h"), 1, 0, 1) for i in range(5)])) == "atoms"
    assert len(ledger.introduced) <= 10


def test_the_atom_budget_outlives_the_connection() -> None:
    ledger = AtomLedger()
    assert refused(guards(Limits(max_atoms=5), ledger=ledger), send([Atom(f"a{i}") for i in range(5)])) is None
    fresh_connection = guards(Limits(max_atoms=5), ledger=ledger)
    assert refused(fresh_connection, send(Atom("one_more"))) == "atoms"


def test_monitor_cap_rejects() -> None:
    g = guards(Limits(max_peer_monitors=2))
    for n in range(3):
        m = parse_frame(frame_body((int(Op.MONITOR_P), ppid(), tpid(), Reference(Atom(P), 1, (n, 2, 3)))))
        r = g.check(m, 0.0)
        if r is None:
            g.state.record_from_peer(m)
    assert r is not None and r.guard == "monitors"
    assert g.decision(r, Mode.ENFORCE).verdict is Verdict.REJECT


def test_on_limit_overrides_but_not_for_malformed() -> None:
    g = guards(Limits(max_message_bytes=10, on_limit=Verdict.DISCONNECT))
    r = g.check(send(b"x" * 100), 0.0)
    assert r is not None and g.decision(r, Mode.ENFORCE).verdict is Verdict.DISCONNECT
    frame = b"p" + encode((int(Op.SEND_SENDER), ppid(), tpid())) + b"\x83\x07"  # tag 7: unknown
    assert refused(guards(), parse_frame(frame)) == "malformed"


# -- the scanner ------------------------------------------------------------------------------
def _atoms_of(term: Any, out: set[bytes]) -> None:
    if isinstance(term, Atom):
        out.add(term.name.encode())
    elif isinstance(term, (Pid, Reference)) or hasattr(term, "node"):
        out.add(term.node.name.encode())
    if isinstance(term, (list, tuple)):
        for x in term:
            _atoms_of(x, out)
    elif isinstance(term, dict):
        for k, v in term.items():
            _atoms_of(getattr(k, "term", k), out)
            _atoms_of(v, out)
    elif hasattr(term, "items") and hasattr(term, "tail"):
        for x in term.items:
            _atoms_of(x, out)
        _atoms_of(term.tail, out)
    elif isinstance(term, Export):
        out.update((term.module.name.encode(), term.function.name.encode()))
    elif isinstance(term, Fun):
        out.add(term.module.name.encode())
        _atoms_of(term.pid, out)
        _atoms_of(list(term.free_vars), out)


@settings(max_examples=300, deadline=None)
@given(terms())
def test_scanner_finds_exactly_the_atoms_and_the_end(term: Any) -> None:
    data = encode(term) + b"trailing"
    scan = scan_at(data)
    assert scan.end == len(data) - len(b"trailing")
    expected: set[bytes] = set()
    _atoms_of(term, expected)
    assert scan.atoms == expected


def test_scanner_refuses_truncation_and_huge_claims() -> None:
    data = encode([Atom("a"), b"x" * 10])
    for cut in range(1, len(data)):
        try:
            scan_at(data[:cut])
        except DecodeError:
            continue
        raise AssertionError(f"accepted a term cut at {cut}")
    huge = b"\x83l" + struct.pack(">I", 2**32 - 1) + b"j"
    try:
        scan_at(huge)
    except DecodeError as exc:
        assert not isinstance(exc, ScanLimit)
    else:
        raise AssertionError("accepted a list claiming 4 Gi elements")


def test_refs_the_peer_makes_must_name_the_peer() -> None:
    from distproxy.policy import Context, PolicyEngine, load_policy

    from .conftest import POLICIES

    engine = PolicyEngine(load_policy(POLICIES / "unequal-trust.yaml"))
    ctx = Context(P, T, FLAGS, state=ConnectionState(T, P))
    spoofed = parse_frame(frame_body((int(Op.MONITOR_P), ppid(), tpid(), Reference(Atom("bob_colo@127.0.0.1"), 1, (1, 2, 3)))))
    d = engine.evaluate(spoofed, "from_peer", ctx)
    assert d.rule_id == "baseline:sender-node" and d.verdict is Verdict.DROP and d.should_log
    honest = parse_frame(frame_body((int(Op.MONITOR_P), ppid(), tpid(), Reference(Atom(P), 1, (1, 2, 3)))))
    assert engine.evaluate(honest, "from_peer", ctx).rule_id == "monitors-by-pid"
    reply = parse_frame(frame_body((int(Op.SPAWN_REPLY), Reference(Atom(T), 1, (1, 2, 3)), tpid(), 0,
                                    Pid(Atom("bob_colo@127.0.0.1"), 1, 0, 1))))
    assert engine.evaluate(reply, "from_peer", ctx).rule_id == "baseline:sender-node"


def test_atoms_t_sends_are_learnt_once_half_the_budget_is_used() -> None:
    from distproxy.policy.guards import StatefulHooks

    ledger = AtomLedger()
    g = guards(Limits(max_atoms=10), ledger=ledger)
    out = StatefulHooks("to_peer", g.state, None, ledger)
    t_frame = parse_frame(frame_body((int(Op.SEND_SENDER), tpid(), ppid()), [Atom(f"mine{i}") for i in range(20)]))
    out.accepted(t_frame)
    assert not ledger.learning and not ledger.known & {b"mine0"}  # nothing to protect yet: no scan
    assert refused(g, send([Atom(f"p{i}") for i in range(6)])) is None
    assert ledger.learning
    out.accepted(t_frame)
    assert refused(g, send([Atom(f"q{i}") for i in range(6)])) == "atoms"  # over budget
    assert refused(g, send([Atom(f"mine{i}") for i in range(20)])) is None  # T's atoms still work
