"""The built-in from_peer baseline (dist-protocol.md section 8)."""

from __future__ import annotations

import pytest

from distproxy.policy.baseline import ENTRY_IDS, OTP_INTERNAL_NAMES, THREATS
from distproxy.policy.evaluator import PolicyEngine
from distproxy.policy.model import Mode, Verdict

from .conftest import HEADER, decide, engine_from

ACCEPT_ALL = HEADER + "from_peer:\n  default: accept\n"
PEER = "ec2_node@127.0.0.1"


def engine(baseline: str = "") -> PolicyEngine:
    return engine_from(baseline + ACCEPT_ALL)


@pytest.fixture(scope="module")
def base() -> PolicyEngine:
    return engine()


def check(e: PolicyEngine, expect: str, rule: str, **kw: str) -> None:
    d = decide(e, **kw)
    assert (d.verdict.value, d.rule_id) == (expect, rule), kw


def test_every_entry_has_a_threat() -> None:
    assert set(ENTRY_IDS) == set(THREATS) and all(THREATS.values())


def test_spawn(base: PolicyEngine) -> None:
    check(base, "reject", "baseline:no-spawn", op="spawn_request", mfa="os:cmd/1")
    check(base, "reject", "baseline:no-spawn", op="spawn_request", call="os:cmd/1")
    check(base, "reject", "baseline:no-spawn", op="SPAWN_REQUEST_TT", mfa="m:f/0")
    check(base, "reject", "baseline:no-spawn", op="spawn_request", mfa="erlang:apply/2",
          payload="[fun os:cmd/1, [\"id\"]]")


def test_allow_spawn_checks_erpc_inner_mfa() -> None:
    e = engine('baseline: {allow_spawn: ["my_app:status/0", "stats:*/*"]}\n')
    check(e, "accept", "default", op="spawn_request", mfa="my_app:status/0")
    check(e, "accept", "default", op="spawn_request", call="my_app:status/0")
    check(e, "accept", "default", op="spawn_request", call="stats:get/2")
    check(e, "reject", "baseline:no-spawn", op="spawn_request", call="os:cmd/1")
    check(e, "reject", "baseline:no-spawn", op="spawn_request", mfa="my_app:status/1")
    # erpc itself is not allow-listed by allowing an inner MFA
    check(e, "reject", "baseline:no-spawn", op="spawn_request", mfa="erpc:execute_call/4",
          payload="[make_ref(), os, cmd, [\"id\"]]")


def test_rex(base: PolicyEngine) -> None:
    check(base, "accept", "default", op="reg_send", to="rex",
          payload="{self(), features_request}")
    for p in ("{'$gen_call', {self(), make_ref()}, {call, os, cmd, [\"id\"], user}}",
              "{'$gen_cast', {cast, os, cmd, [\"id\"], user}}",
              "{self(), {call, os, cmd, [\"id\"], user}}",
              "{self(), {send, x, y}}", "{x, features_request}", "features_request"):
        check(base, "reject", "baseline:rex", op="reg_send", to="rex", payload=p)
    check(base, "reject", "baseline:rex", op="monitor", to="rex")


def test_net_kernel(base: PolicyEngine) -> None:
    check(base, "accept", "default", op="reg_send", to="net_kernel",
          payload="{'$gen_call', {self(), [alias|make_ref()]}, {is_auth, x@h}}")
    check(base, "accept", "default", op="monitor", to="net_kernel")
    for req in ("{spawn, os, cmd, [\"id\"], user}", "{spawn_link, m, f, [], g}",
                "{connect, normal, 'evil@h'}", "{disconnect, 'x@h'}", "{allow, []}",
                "{new_ticktime, 1, 2}"):
        check(base, "reject", "baseline:net-kernel", op="reg_send", to="net_kernel",
              payload=f"{{'$gen_call', {{self(), make_ref()}}, {req}}}")


@pytest.mark.parametrize("name", [n for n in OTP_INTERNAL_NAMES if "*" not in n]
                         + ["kernel_sup", "my_app_sup", "ssl_sup"])
def test_internal_names(base: PolicyEngine, name: str) -> None:
    check(base, "reject", "baseline:internal-names", op="reg_send", to=name,
          payload="{'$gen_call', {self(), make_ref()}, x}")
    check(base, "reject", "baseline:internal-names", op="monitor", to=name)


def test_internal_names_monitor_by_pid_and_demonitor_pass(base: PolicyEngine) -> None:
    check(base, "accept", "default", op="monitor")
    check(base, "accept", "default", op="demonitor", to="auth")


def test_allow_names() -> None:
    e = engine("baseline: {allow_names: [logger, \"my_*_sup\"]}\n")
    check(e, "accept", "default", op="reg_send", to="logger", payload="x")
    check(e, "accept", "default", op="reg_send", to="my_app_sup", payload="x")
    check(e, "reject", "baseline:internal-names", op="reg_send", to="auth", payload="x")


@pytest.mark.parametrize("op, payload", [
    ("send", "{io_request, self(), make_ref(), {put_chars, unicode, os, cmd, [\"id\"]}}"),
    ("send", "{io_request, self(), make_ref(), {put_chars, os, cmd, [\"id\"]}}"),
    ("send", "{io_request, self(), r, {requests, [{put_chars, unicode, os, cmd, [\"x\"]}]}}"),
    ("alias_send", "{io_request, self(), r, {put_chars, unicode, m, f, []}}"),
    ("reg_send", "{wrapped, {io_request, self(), r, {put_chars, unicode, m, f, []}}}"),
    ("send", "{io_request, self(), r, {get_until, unicode, '', os, cmd, [\"id\"]}}"),
    ("send", "{io_request, self(), r, {get_until, '', os, cmd, [\"id\"]}}"),
    ("send", "{io_request, self(), r, {put_chars, unicode, io_lib, format, [a, b, c]}}"),
])
def test_io_mfa(base: PolicyEngine, op: str, payload: str) -> None:
    kw = {"to": "some_io_server"} if op == "reg_send" else {}
    check(base, "drop", "baseline:io-mfa", op=op, payload=payload, **kw)


def test_io_without_mfa_passes(base: PolicyEngine) -> None:
    check(base, "accept", "default", op="send",
          payload="{io_request, self(), r, {put_chars, unicode, <<\"hi\">>}}")
    check(base, "accept", "default", op="send", payload="{io_reply, r, ok}")


GLOBAL_OK = [
    "{'$gen_cast', {init_connect, {8, make_ref()}, 'ec2_node@127.0.0.1', x}}",
    "{init_connect_ack, 'ec2_node@127.0.0.1', a, b}",
    "{'$gen_call', {self(), {make_ref(), 'ec2_node@127.0.0.1'}}, {set_lock, {global, [self()]}}}",
    "{'$gen_call', {self(), {make_ref(), 'ec2_node@127.0.0.1'}}, {del_lock, {global, [self()]}}}",
    "{'$gen_cast', {lock_set, self(), true, [], t}}",
    "{'$gen_cast', {lock_set, self(), true, []}}",
    "{'$gen_cast', {exchange, 'ec2_node@127.0.0.1', [], [], t}}",
    "{'$gen_cast', {resolved, 'ec2_node@127.0.0.1', [], [], unused, [], t}}",
    "{'$gen_cast', {new_nodes, 'ec2_node@127.0.0.1', [], [], [], []}}",
    "{'$gen_cast', {in_sync, 'ec2_node@127.0.0.1', true}}",
    "{lost_connection, 'ec2_node@127.0.0.1', 1, 2, 'bob@h'}",
    "{remove_connection, 'ec2_node@127.0.0.1'}",
    "{'$gen_call', {self(), make_ref()}, {register, n, self(), fun global:random_exit_name/3}}",
    "{'$gen_call', {self(), make_ref()}, {unregister, n}}",
]
GLOBAL_BAD = [
    "{'$gen_call', {self(), make_ref()}, {registrar, fun os:cmd/1}}",
    "{'$gen_call', {self(), make_ref()}, {register, n, self(), fun os:cmd/3}}",
    "{'$gen_call', {self(), make_ref()}, {register, n, self(), not_a_fun}}",
    "{lost_connection, 'other@h', 1, 2, 'my_desktop@127.0.0.1'}",
    "{'$gen_cast', {init_connect, {8, t}, 'other@h', x}}",
    "{init_connect_ack, 'other@h', a, b}",
    "{remove_connection, 'my_desktop@127.0.0.1'}",
    "{'$gen_call', {self(), make_ref()}, stop}",
    "{'$gen_call', {self(), make_ref()}, {sync, []}}",
    "{'$gen_cast', {async_del_name, n, self()}}",
    "{'$gen_cast', {exchange_ops, 'ec2_node@127.0.0.1', t, [], []}}",
    "{'$gen_cast', {lock_is_set, 'ec2_node@127.0.0.1', t, l}}",
    "{'$gen_cast', {lock_set, trusted_pid(), true, [], t}}",
    "{whereis, n, {self(), make_ref()}}",
    "whatever",
]


@pytest.mark.parametrize("payload", GLOBAL_OK)
def test_global_documented_shapes_pass(base: PolicyEngine, payload: str) -> None:
    check(base, "accept", "default", op="reg_send", to="global_name_server", payload=payload)


@pytest.mark.parametrize("payload", GLOBAL_BAD)
def test_global_other_shapes_rejected(base: PolicyEngine, payload: str) -> None:
    check(base, "reject", "baseline:global", op="reg_send", to="global_name_server",
          payload=payload)


def test_pg() -> None:
    e = engine("baseline: {pg_scopes: [pg, \"app_scope_*\"]}\n")
    for p in ("{discover, self()}", "{join, self(), g, [self()]}",
              "{leave, self(), [self()], [g]}", "{'$gen_cast', {sync, self(), []}}"):
        check(e, "accept", "default", op="reg_send", to="app_scope_1", payload=p)
    check(e, "drop", "baseline:pg", op="reg_send", to="pg",
          payload="{'$gen_call', {self(), make_ref()}, {join_local, g, []}}")
    check(e, "accept", "default", op="reg_send", to="not_a_scope", payload="x")


def test_signals(base: PolicyEngine) -> None:
    check(base, "drop", "baseline:no-exit2", op="exit2", payload="kill")
    check(base, "drop", "baseline:no-exit2", op="EXIT2", payload="kill")
    check(base, "drop", "baseline:no-group-leader", op="group_leader")
    check(base, "drop", "baseline:no-node-link", op="node_link")


def test_sender_spoofing(base: PolicyEngine) -> None:
    check(base, "drop", "baseline:sender-node", op="link", from_node="other@h")
    check(base, "drop", "baseline:sender-node", op="reg_send", to="x", payload="y",
          from_node="other@h")
    check(base, "accept", "default", op="link")
    check(base, "accept", "default", op="SEND", payload="x")  # SEND has no sender


def test_reply_ops_are_left_to_the_file(base: PolicyEngine) -> None:
    for op in ("alias_send", "send", "monitor_exit", "exit", "spawn_reply",
               "unlink_id_ack", "demonitor"):
        check(base, "accept", "default", op=op)


def test_file_cannot_override_baseline() -> None:
    text = HEADER + ("from_peer:\n  default: accept\n  rules:\n"
                     "    - id: let-rex\n      op: reg_send\n      to: rex\n"
                     "      action: accept\n")
    e = engine_from(text)
    check(e, "reject", "baseline:rex", op="reg_send", to="rex",
          payload="{'$gen_call', {self(), make_ref()}, {call, os, cmd, [], user}}")


def test_disable_entries_and_opt_out() -> None:
    e = engine("baseline: {disable: [baseline:rex, no-exit2]}\n")
    check(e, "accept", "default", op="reg_send", to="rex", payload="anything")
    check(e, "accept", "default", op="exit2")
    check(e, "drop", "baseline:no-group-leader", op="group_leader")
    off = engine("baseline: false\n")
    check(off, "accept", "default", op="spawn_request", call="os:cmd/1")
    off2 = engine("baseline: {enabled: false}\n")
    check(off2, "accept", "default", op="exit2")


def test_baseline_never_applies_to_peer() -> None:
    e = engine()
    check(e, "accept", "default", direction="to_peer", op="spawn_request", call="os:cmd/1")
    check(e, "accept", "default", direction="to_peer", op="exit2")


def test_baseline_audit_mode() -> None:
    e = engine("baseline: {mode: audit}\n")
    d = decide(e, op="spawn_request", call="os:cmd/1")
    assert (d.verdict, d.mode, d.action, d.rule_id) == (
        Verdict.REJECT, Mode.AUDIT, Verdict.ACCEPT, "baseline:no-spawn")
    # an enforced file rule still applies after an audit baseline hit
    text = "baseline: {mode: audit}\n" + HEADER + (
        "from_peer:\n  default: accept\n  rules:\n"
        "    - id: hard\n      op: spawn_request\n      action: drop\n")
    d = decide(engine_from(text), op="spawn_request", call="os:cmd/1")
    assert (d.rule_id, d.action) == ("hard", Verdict.DROP)


def test_io_lib_put_chars_allowed_by_default(base: PolicyEngine) -> None:
    fmt = "{io_request, self(), r, {put_chars, unicode, io_lib, format, [\"hi~n\", []]}}"
    check(base, "accept", "default", op="send", payload=fmt)
    check(base, "accept", "default", op="send",
          payload="{io_request, self(), r, {get_until, unicode, '', io_lib, fread, [\"~d\"]}}")
    strict = engine("baseline: {allow_io_mfa: []}\n")
    check(strict, "drop", "baseline:io-mfa", op="send", payload=fmt)
    custom = engine('baseline: {allow_io_mfa: ["my_fmt:line/1"]}\n')
    check(custom, "accept", "default", op="send",
          payload="{io_request, self(), r, {put_chars, unicode, my_fmt, line, [x]}}")
    check(custom, "drop", "baseline:io-mfa", op="send", payload=fmt)
