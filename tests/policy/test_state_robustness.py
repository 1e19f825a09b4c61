"""The stateful hooks (connection state and guards) survive any well-typed frame, in
both directions and in any order: a hook that raised would drop the connection."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from distproxy.dist.control import OPS, frame_body, parse_frame
from distproxy.policy import Context, PolicyEngine, load_policy
from distproxy.policy.guards import AtomLedger, PeerGuards, StatefulHooks
from distproxy.policy.state import ConnectionState, StateLimits
from distproxy.term import Atom, Pid, Reference

from tests.term.strategies import atoms, terms

from .conftest import POLICIES

T = "my_desktop@127.0.0.1"
P = "ec2_node@127.0.0.1"
FLAGS = 0xD075F5FBD
ENGINE = PolicyEngine(load_policy(POLICIES / "unequal-trust.yaml"))

nodes = st.sampled_from([T, P, "bob_colo@127.0.0.1"]).map(Atom)
# Few distinct values, so that generated frames often refer to each other's state.
pids = st.builds(Pid, nodes, st.integers(0, 3), st.just(0), st.just(1))
refs = st.builds(Reference, nodes, st.just(1), st.sampled_from([(1, 2, 3), (4, 5, 6)]))
FIELD = {
    "any": terms(max_leaves=3), "pid": pids, "atom": atoms, "pid|atom": st.one_of(pids, atoms),
    "ref": refs, "int": st.integers(0, 3),
    "mfa": st.tuples(atoms, atoms, st.integers(0, 3)),
    "list": st.lists(st.sampled_from([Atom("link"), Atom("monitor")]), max_size=2),
}


@st.composite
def frames(draw: Any) -> Any:
    spec = draw(st.sampled_from(list(OPS.values())))
    control = (int(spec.op),) + tuple(draw(FIELD[t]) for t in spec.types)
    payload = draw(terms(max_leaves=4)) if spec.payload else None
    if spec.payload == "args":
        payload = draw(st.lists(terms(max_leaves=3), max_size=3))
    return parse_frame(frame_body(control, payload))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), frames()), max_size=20), st.integers(0, 2**32 - 1))
def test_hooks_never_raise_and_stay_bounded(steps: list[tuple[bool, Any]], seed: int) -> None:
    limits = StateLimits(max_aliases=4, max_monitors=4, max_spawns=4, max_links=4, max_unlinks=4,
                         max_exposed_pids=4, max_peer_monitors=4, max_peer_links=4)
    state = ConnectionState(T, P, limits)
    ledger = AtomLedger()
    guards = PeerGuards(ledger, state, FLAGS, 0.0)
    hooks = {True: StatefulHooks("from_peer", state, guards, ledger),
             False: StatefulHooks("to_peer", state, None, ledger)}
    ctx = Context(P, T, FLAGS, state=state)
    for from_peer, message in steps:
        h = hooks[from_peer]
        decision = h.before(message, ENGINE.policy, 1.0)
        if decision is None:
            decision = ENGINE.evaluate(message, "from_peer" if from_peer else "to_peer", ctx)
        if decision.forward:
            h.accepted(message)
    assert all(size <= 4 for size in state.sizes().values())
