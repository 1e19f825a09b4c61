"""Evaluator: each matcher, first match in order, defaults, audit modes, folding, cost."""

from __future__ import annotations

import time

import pytest

from distproxy.policy.evaluator import PolicyEngine, evaluate
from distproxy.policy.model import Context, Mode, Verdict
from distproxy.policy.samples import Sample, build_message

from .conftest import HEADER, decide, engine_from, policy_from


def rules(*body: str, default: str = "drop", extra: str = "baseline: false\n") -> PolicyEngine:
    text = extra + HEADER + f"from_peer:\n  default: {default}\n  rules:\n" + "".join(body)
    return engine_from(text)


def rule(rid: str, action: str, **kw: str) -> str:
    lines = [f"    - id: {rid}\n"]
    for k, v in kw.items():
        lines.append(f"      {k}: {v}\n")
    lines.append(f"      action: {action}\n")
    return "".join(lines)


def test_default_applies_when_nothing_matches() -> None:
    e = rules(rule("x", "accept", op="link"))
    d = decide(e, op="send")
    assert (d.verdict, d.rule_id, d.mode) == (Verdict.DROP, "default", Mode.ENFORCE)
    assert decide(e, op="link").rule_id == "x"
    assert decide(e, direction="to_peer", op="send").verdict is Verdict.ACCEPT


def test_first_match_in_file_order() -> None:
    e = rules(rule("first", "reject", op="reg_send", to="gw"),
              rule("second", "accept", op="reg_send"))
    assert decide(e, op="reg_send", to="gw").rule_id == "first"
    assert decide(e, op="reg_send", to="other").rule_id == "second"
    e2 = rules(rule("second", "accept", op="reg_send"),
               rule("first", "reject", op="reg_send", to="gw"))
    assert decide(e2, op="reg_send", to="gw").rule_id == "second"


def test_op_list_and_no_op_matches_everything() -> None:
    e = rules(rule("some", "accept", op="[link, exit2]"), rule("all", "reject"))
    assert decide(e, op="link").rule_id == "some"
    assert decide(e, op="exit2").rule_id == "some"
    assert decide(e, op="spawn_reply").rule_id == "all"


@pytest.mark.parametrize("op", ["SEND", "SEND_SENDER", "SEND_TT", "SEND_SENDER_TT"])
def test_variants_fold_into_one_kind(op: str) -> None:
    e = rules(rule("sends", "accept", op="send"))
    assert decide(e, op=op).rule_id == "sends"


@pytest.mark.parametrize("op, kind", [
    ("EXIT", "exit"), ("EXIT_TT", "exit"), ("PAYLOAD_EXIT", "exit"),
    ("PAYLOAD_EXIT_TT", "exit"), ("EXIT2", "exit2"), ("PAYLOAD_EXIT2_TT", "exit2"),
    ("MONITOR_P_EXIT", "monitor_exit"), ("PAYLOAD_MONITOR_P_EXIT", "monitor_exit"),
    ("REG_SEND_TT", "reg_send"), ("SPAWN_REQUEST_TT", "spawn_request"),
    ("ALIAS_SEND_TT", "alias_send"), ("SPAWN_REPLY_TT", "spawn_reply"),
])
def test_more_variants(op: str, kind: str) -> None:
    e = rules(rule("k", "accept", op=kind))
    kw = {"to": "x"} if kind == "reg_send" else {}
    if kind == "spawn_request":
        kw = {"mfa": "m:f/0"}
    assert decide(e, op=op, **kw).rule_id == "k"


def test_to_matcher_exact_glob_and_list() -> None:
    e = rules(rule("exact", "accept", op="reg_send", to="gw"),
              rule("glob", "accept", op="[reg_send, monitor, demonitor]", to='"app_*"'),
              rule("list", "accept", op="reg_send", to="[a, b]"))
    assert decide(e, op="reg_send", to="gw").rule_id == "exact"
    assert decide(e, op="reg_send", to="gwx").rule_id == "default"
    assert decide(e, op="monitor", to="app_x").rule_id == "glob"
    assert decide(e, op="demonitor", to="app_x").rule_id == "glob"
    assert decide(e, op="monitor").rule_id == "default"  # by pid: no name
    assert decide(e, op="reg_send", to="b").rule_id == "list"


def test_mfa_matcher() -> None:
    e = rules(rule("status", "accept", op="spawn_request", mfa='"my_app:status/0"'),
              rule("any_arity", "accept", op="spawn_request", mfa='"my_app:info/*"'),
              rule("globs", "reject", op="spawn_request", mfa='"os:*/*"'))
    assert decide(e, op="spawn_request", mfa="my_app:status/0").rule_id == "status"
    assert decide(e, op="spawn_request", mfa="my_app:status/1").rule_id == "default"
    assert decide(e, op="spawn_request", mfa="my_app:info/3").rule_id == "any_arity"
    assert decide(e, op="spawn_request", mfa="os:cmd/1").rule_id == "globs"
    d = decide(e, op="spawn_request", mfa="os:cmd/1")
    assert not d.payload_dependent


def test_call_matcher_sees_erpc_apply_and_rex() -> None:
    e = rules(rule("oscall", "reject", op="[spawn_request, reg_send]", call='"os:cmd/1"'),
              rule("spawns", "accept", op="spawn_request"))
    erpc = decide(e, op="spawn_request", call="os:cmd/1")
    assert erpc.rule_id == "oscall" and erpc.payload_dependent
    assert decide(e, op="spawn_request", call="os:getpid/0").rule_id == "spawns"
    # a direct spawn of os:cmd/1 is the same call
    assert decide(e, op="spawn_request", mfa="os:cmd/1").rule_id == "oscall"
    # erlang:apply(fun os:cmd/1, ["id"])
    assert decide(e, op="spawn_request", mfa="erlang:apply/2",
                  payload='[fun os:cmd/1, ["id"]]').rule_id == "oscall"
    # legacy rex shapes
    for p in ("{'$gen_call', {self(), make_ref()}, {call, os, cmd, [\"id\"], user}}",
              "{'$gen_call', {self(), make_ref()}, {block_call, os, cmd, [\"id\"], user}}",
              "{'$gen_cast', {cast, os, cmd, [\"id\"], user}}",
              "{self(), {call, os, cmd, [\"id\"], user}}"):
        assert decide(e, op="reg_send", to="rex", payload=p).rule_id == "oscall", p
    assert decide(e, op="reg_send", to="other",
                  payload="{'$gen_cast', {cast, os, cmd, [\"id\"], user}}").rule_id == "default"


def test_payload_matcher_any_of_and_lazy_decode() -> None:
    e = rules(rule("cmd", "accept", op="send", payload='["{ping, _}", "{pong, _}"]'),
              rule("fallback", "reject", op="send"))
    assert decide(e, op="send", payload="{pong, 1}").rule_id == "cmd"
    d = decide(e, op="send", payload="{other, 1}")
    assert d.rule_id == "fallback" and d.payload_dependent
    # the atom prefilter answers without decoding
    s = Sample(op="send", payload="{other, 1}")
    msg = build_message(s)
    e.evaluate(msg, s.direction, s.context())
    assert msg._payload is not None and type(msg._payload) is object  # still undecoded


def test_payload_not_decoded_for_op_rules() -> None:
    e = rules(rule("a", "accept", op="alias_send"))
    s = Sample(op="alias_send", payload="{[alias|make_ref()], ok}")
    msg = build_message(s)
    d = e.evaluate(msg, s.direction, s.context())
    assert d.rule_id == "a" and not d.payload_dependent
    assert type(msg._payload) is object  # the _MISSING sentinel: never decoded


def test_node_matchers() -> None:
    e = rules(rule("ec2", "accept", op="reg_send", from_node='"ec2_node@*"'),
              rule("to_t", "reject", op="reg_send", to_node='"my_desktop@*"'))
    assert decide(e, op="reg_send", to="x", peer="ec2_node@10.0.0.1").rule_id == "ec2"
    assert decide(e, op="reg_send", to="x", peer="bob_colo@h").rule_id == "to_t"
    assert decide(e, op="reg_send", to="x", peer="bob_colo@h",
                  trusted="other@h").rule_id == "default"


def test_to_peer_from_node_is_the_trusted_node() -> None:
    text = ("baseline: false\nto_peer:\n  default: drop\n  rules:\n"
            "    - id: t\n      to_node: \"bob_*\"\n      action: reject\n"
            "from_peer: {default: accept}\n")
    e = engine_from(text)
    assert decide(e, direction="to_peer", op="link", peer="bob_colo@h").rule_id == "t"
    assert decide(e, direction="to_peer", op="link", peer="ec2@h").rule_id == "default"


def test_rule_mode_audit_is_a_shadow() -> None:
    e = rules(rule("try", "drop", op="send", mode="audit"),
              rule("ok", "accept", op="send"))
    d = decide(e, op="send")
    assert (d.verdict, d.rule_id, d.mode, d.action) == (
        Verdict.DROP, "try", Mode.AUDIT, Verdict.ACCEPT)
    assert d.forward and d.should_log
    # an audit rule never opens a hole that a later enforced rule closes
    e2 = rules(rule("try", "accept", op="send", mode="audit"),
               rule("deny", "drop", op="send"))
    d2 = decide(e2, op="send")
    assert (d2.rule_id, d2.action) == ("deny", Verdict.DROP)


def test_file_mode_audit() -> None:
    text = "mode: audit\nbaseline: false\n" + HEADER + \
        "from_peer:\n  default: drop\n  rules:\n" + rule("r", "reject", op="link")
    e = engine_from(text)
    d = decide(e, op="link")
    assert (d.verdict, d.mode, d.action, d.rule_id) == (
        Verdict.REJECT, Mode.AUDIT, Verdict.ACCEPT, "r")
    d = decide(e, op="send")
    assert (d.verdict, d.mode, d.action, d.rule_id) == (
        Verdict.DROP, Mode.AUDIT, Verdict.ACCEPT, "default")
    # a rule can be enforced inside an audit file
    text2 = text + "      mode: enforce\n"
    assert decide(engine_from(text2), op="link").action is Verdict.REJECT


def test_disconnect_and_log() -> None:
    e = rules(rule("cut", "disconnect", op="node_link", log="true"),
              rule("seen", "accept", op="link", log="true"))
    d = decide(e, op="node_link")
    assert d.action is Verdict.DISCONNECT and d.log
    d = decide(e, op="link")
    assert d.action is Verdict.ACCEPT and d.should_log
    assert not decide(rules(rule("quiet", "accept", op="link")), op="link").should_log


def test_functional_evaluate_caches_the_engine() -> None:
    p = policy_from("baseline: false\n" + HEADER + "from_peer: {default: reject}\n")
    s = Sample(op="link")
    m = build_message(s)
    assert evaluate(p, m, "from_peer", s.context()).verdict is Verdict.REJECT
    from distproxy.policy.evaluator import engine_for

    assert engine_for(p) is engine_for(p)


def test_decisions_are_preallocated_and_frozen() -> None:
    e = rules(rule("a", "accept", op="link"))
    d1, d2 = decide(e, op="link"), decide(e, op="link")
    assert d1 is d2
    with pytest.raises(AttributeError):
        d1.verdict = Verdict.DROP  # type: ignore[misc]


def test_speed_of_op_and_name_rules(unequal: PolicyEngine) -> None:
    """A few microseconds per frame for op/name rules (generous bound for slow CI)."""
    s = Sample(op="spawn_reply")
    m = build_message(s)
    ctx = s.context()
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        unequal.evaluate(m, "from_peer", ctx)
    per = (time.perf_counter() - t0) / n
    assert per < 20e-6, per


def test_context_helpers() -> None:
    c = Context("p@h", "t@h", 0)
    assert c.sender_node("from_peer") == "p@h" and c.receiver_node("from_peer") == "t@h"
    assert c.sender_node("to_peer") == "t@h"


def test_name_prefilter_cache_is_bounded_and_correct() -> None:
    from distproxy.policy import evaluator as ev

    e = rules(rule("gw", "accept", op="[reg_send, monitor]", to='"gw_*"'))
    table = e._tables["from_peer"]
    for i in range(ev.MAX_NAME_CACHE + 50):
        name = f"gw_{i}" if i % 2 else f"other_{i}"
        assert table.for_name("reg_send", name) == (
            table.by_kind["reg_send"] if i % 2 else ())
    assert len(table.by_name) == ev.MAX_NAME_CACHE
    assert decide(e, op="monitor", to="gw_x").rule_id == "gw"
    assert decide(e, op="monitor").rule_id == "default"  # by pid: name None


def test_kind_names_match_control_kinds() -> None:
    from distproxy.dist.control import Kind
    from distproxy.policy.model import KIND_NAMES
    from distproxy.policy.samples import KIND_OPS

    assert set(KIND_NAMES) == {k.value for k in Kind} == set(KIND_OPS)
