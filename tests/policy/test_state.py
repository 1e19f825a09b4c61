"""Connection state: what T asked for makes the matching from_peer frames replies."""

from __future__ import annotations

from typing import Any

import pytest

from distproxy.dist.control import Op, frame_body, parse_frame
from distproxy.policy import Context, PolicyEngine, Verdict, load_policy
from distproxy.policy.loader import PolicyLoadError, load_policy_text
from distproxy.policy.state import ConnectionState, StateLimits
from distproxy.term import Atom, ImproperList, Pid, Reference

from .conftest import POLICIES

T = "my_desktop@127.0.0.1"
P = "ec2_node@127.0.0.1"
FLAGS = 0xD075F5FBD


def tpid(n: int = 1) -> Pid:
    return Pid(Atom(T), n, 0, 7)


def ppid(n: int = 1) -> Pid:
    return Pid(Atom(P), n, 0, 9)


def tref(n: int = 1) -> Reference:
    return Reference(Atom(T), 7, (n, 2, 3))


def pref(n: int = 1) -> Reference:
    return Reference(Atom(P), 9, (n, 2, 3))


def msg(op: Op, *fields: Any, payload: Any = None) -> Any:
    return parse_frame(frame_body((int(op),) + fields, payload))


def alias(ref: Reference) -> ImproperList:
    return ImproperList((Atom("alias"),), ref)


@pytest.fixture
def state() -> ConnectionState:
    return ConnectionState(T, P)


def test_gen_call_alias_is_a_reply_once(state: ConnectionState) -> None:
    reply = msg(Op.ALIAS_SEND, ppid(), tref(), payload=(alias(tref()), Atom("ok")))
    assert not state.is_reply(reply)
    call = msg(Op.REG_SEND, tpid(), Atom(""), Atom("svc"),
               payload=(Atom("$gen_call"), (tpid(), alias(tref())), Atom("status")))
    state.record_to_peer(call)
    assert state.is_reply(reply)
    state.record_from_peer(reply)
    assert not state.is_reply(reply)  # the reply retired it


def test_demonitor_retires_the_alias(state: ConnectionState) -> None:
    state.record_to_peer(msg(Op.MONITOR_P, tpid(), Atom("svc"), tref()))
    state.record_to_peer(msg(Op.SEND_SENDER, tpid(), ppid(), payload={Atom("k"): [alias(tref())]}))
    reply = msg(Op.ALIAS_SEND, ppid(), tref(), payload=Atom("x"))
    assert state.is_reply(reply)
    state.record_to_peer(msg(Op.DEMONITOR_P, tpid(), Atom("svc"), tref()))
    assert not state.is_reply(reply)


def test_forged_alias_from_another_node_is_not_recorded(state: ConnectionState) -> None:
    state.record_to_peer(msg(Op.SEND_SENDER, tpid(), ppid(), payload=alias(pref())))
    assert not state.is_reply(msg(Op.ALIAS_SEND, ppid(), pref(), payload=Atom("x")))


def test_down_only_for_monitors_t_set(state: ConnectionState) -> None:
    down = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(), tpid(), tref(), payload=Atom("normal"))
    assert not state.is_reply(down)
    state.record_to_peer(msg(Op.MONITOR_P, tpid(), ppid(), tref()))
    assert state.is_reply(down)
    other_t_pid = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(), tpid(2), tref(), payload=Atom("normal"))
    assert not state.is_reply(other_t_pid)
    state.record_from_peer(down)
    assert not state.is_reply(down)


def test_erpc_spawn_reply_and_down(state: ConnectionState) -> None:
    req = msg(Op.SPAWN_REQUEST, tref(5), tpid(), tpid(9), (Atom("erpc"), Atom("execute_call"), 4),
              [Atom("monitor")], payload=[tref(6), Atom("m"), Atom("f"), []])
    reply = msg(Op.SPAWN_REPLY, tref(5), tpid(), 2, ppid(3))
    down = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(3), tpid(), tref(5), payload=(tref(6), Atom("return"), 1))
    assert not state.is_reply(reply) and not state.is_reply(down)
    state.record_to_peer(req)
    assert state.is_reply(reply)
    state.record_from_peer(reply)
    assert not state.is_reply(reply)  # one reply per request
    assert state.is_reply(down)
    # T exposed its group leader in the request: the peer may write output to it.
    assert state.is_reply(msg(Op.SEND_SENDER, ppid(3), tpid(9), payload=Atom("io")))


def test_spawn_link_creates_the_link_the_exit_needs(state: ConnectionState) -> None:
    state.record_to_peer(msg(Op.SPAWN_REQUEST, tref(5), tpid(), tpid(), (Atom("m"), Atom("f"), 0),
                             [Atom("link")], payload=[]))
    exit_ = msg(Op.PAYLOAD_EXIT, ppid(3), tpid(), payload=Atom("done"))
    assert not state.is_reply(exit_)
    reply = msg(Op.SPAWN_REPLY, tref(5), tpid(), 1, ppid(3))
    state.record_from_peer(reply)
    assert state.is_reply(exit_)
    state.record_from_peer(exit_)
    assert not state.is_reply(exit_)


def test_failed_spawn_retires_its_monitor(state: ConnectionState) -> None:
    state.record_to_peer(msg(Op.SPAWN_REQUEST, tref(5), tpid(), tpid(), (Atom("m"), Atom("f"), 0),
                             [Atom("monitor")], payload=[]))
    state.record_from_peer(msg(Op.SPAWN_REPLY, tref(5), tpid(), 0, Atom("badarg")))
    assert not state.is_reply(msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(3), tpid(), tref(5), payload=Atom("x")))


def test_links_and_unlink_ids(state: ConnectionState) -> None:
    exit_ = msg(Op.PAYLOAD_EXIT, ppid(), tpid(), payload=Atom("kill"))
    ack = msg(Op.UNLINK_ID_ACK, 4, ppid(), tpid())
    assert not state.is_reply(exit_) and not state.is_reply(ack)
    state.record_to_peer(msg(Op.LINK, tpid(), ppid()))
    assert state.is_reply(exit_)
    assert not state.is_reply(ack)
    state.record_to_peer(msg(Op.UNLINK_ID, 4, tpid(), ppid()))
    assert state.is_reply(ack)
    assert state.is_reply(exit_)  # still linked until the ack
    state.record_from_peer(ack)
    assert not state.is_reply(exit_) and not state.is_reply(ack)


def test_send_only_to_exposed_pids(state: ConnectionState) -> None:
    to_t = msg(Op.SEND_SENDER, ppid(), tpid(4), payload=Atom("hi"))
    assert not state.is_reply(to_t)
    state.record_to_peer(msg(Op.SEND_SENDER, tpid(1), ppid(), payload={Atom("reply_to"): tpid(4)}))
    assert state.is_reply(to_t)
    assert state.is_reply(msg(Op.SEND_SENDER, ppid(), tpid(1), payload=Atom("hi")))  # the sender


def test_tables_are_bounded_and_count_evictions() -> None:
    state = ConnectionState(T, P, StateLimits(max_monitors=3))
    for n in range(5):
        state.record_to_peer(msg(Op.MONITOR_P, tpid(), ppid(), tref(n)))
    assert len(state.monitors) == 3 and state.evictions["monitors"] == 2
    oldest = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(), tpid(), tref(0), payload=Atom("x"))
    newest = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(), tpid(), tref(4), payload=Atom("x"))
    assert not state.is_reply(oldest) and state.is_reply(newest)


# -- the reply matcher in policies ----------------------------------------------------------
def test_unequal_trust_accepts_replies_and_drops_forgeries(state: ConnectionState) -> None:
    engine = PolicyEngine(load_policy(POLICIES / "unequal-trust.yaml"))
    ctx = Context(P, T, FLAGS, state=state)
    forged = msg(Op.ALIAS_SEND, ppid(), tref(), payload=(alias(tref()), Atom("ok")))
    d = engine.evaluate(forged, "from_peer", ctx)
    assert d.verdict is Verdict.DROP and d.rule_id == "unsolicited-replies" and d.payload_dependent
    state.record_to_peer(msg(Op.MONITOR_P, tpid(), Atom("svc"), tref()))
    state.record_to_peer(msg(Op.REG_SEND, tpid(), Atom(""), Atom("svc"),
                             payload=(Atom("$gen_call"), (tpid(), alias(tref())), Atom("s"))))
    d = engine.evaluate(forged, "from_peer", ctx)
    assert d.verdict is Verdict.ACCEPT and d.rule_id == "gen-call-replies"
    fake_down = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(), tpid(), tref(99), payload=Atom("x"))
    assert engine.evaluate(fake_down, "from_peer", ctx).rule_id == "unsolicited-replies"
    fake_exit = msg(Op.PAYLOAD_EXIT, ppid(), tpid(), payload=Atom("kill"))
    assert engine.evaluate(fake_exit, "from_peer", ctx).verdict is Verdict.DROP


def test_without_state_explain_assumes_a_reply() -> None:
    engine = PolicyEngine(load_policy(POLICIES / "unequal-trust.yaml"))
    d = engine.evaluate(msg(Op.ALIAS_SEND, ppid(), tref(), payload=Atom("x")), "from_peer", Context(P, T, FLAGS))
    assert d.rule_id == "gen-call-replies"


def test_reply_false_matches_only_non_replies(state: ConnectionState) -> None:
    policy = load_policy_text("""
to_peer: {default: accept}
from_peer:
  default: accept
  rules:
    - {id: unsolicited, op: monitor_exit, reply: false, action: drop}
""")
    engine = PolicyEngine(policy)
    ctx = Context(P, T, FLAGS, state=state)
    down = msg(Op.PAYLOAD_MONITOR_P_EXIT, ppid(), tpid(), tref(), payload=Atom("x"))
    assert engine.evaluate(down, "from_peer", ctx).verdict is Verdict.DROP
    state.record_to_peer(msg(Op.MONITOR_P, tpid(), ppid(), tref()))
    assert engine.evaluate(down, "from_peer", ctx).verdict is Verdict.ACCEPT


def test_loader_checks_reply() -> None:
    with pytest.raises(PolicyLoadError, match="'reply' applies to op"):
        load_policy_text("""
to_peer: {default: accept}
from_peer:
  default: drop
  rules:
    - {id: r, op: reg_send, reply: true, action: accept}
""")
    with pytest.raises(PolicyLoadError, match="reply: expected true or false"):
        load_policy_text("""
to_peer: {default: accept}
from_peer:
  default: drop
  rules:
    - {id: r, op: alias_send, reply: yes please, action: accept}
""")
