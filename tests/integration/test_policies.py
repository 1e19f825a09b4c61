"""The example policies, enforced by a real distproxy between real nodes.

unequal-trust.yaml is the seed scenario: my_desktop commands ec2_node and bob_colo; they
may only answer it. Every refused attempt must fail the way the policy says (at once,
where the policy rejects), leave the desktop untouched, and be in the decision log with
its rule id.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distproxy.term import Atom
from distproxy.testing.cluster import PeerSpec, SeedCluster
from distproxy.testing.erlnode import ErlNode
from distproxy.testing.waiting import decisions_for, wait_until

from .conftest import POLICIES

pytestmark = pytest.mark.erlang

T = "'my_desktop@127.0.0.1'"
EC2 = "'ec2_node@127.0.0.1'"
BOB = "'bob_colo@127.0.0.1'"
PEERS = {"ec2_node": EC2, "bob_colo": BOB}
CALL_TIMEOUT_MS = 5000  # a refused call must fail well before this






@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedCluster]:
    policy = POLICIES / "unequal-trust.yaml"
    cluster = SeedCluster(tmp_path_factory.mktemp("unequal-trust"),
                          [PeerSpec("ec2_node", policy), PeerSpec("bob_colo", policy)])
    with cluster:
        assert cluster.trusted is not None
        cluster.trusted.eval("{ok, _} = dp_test_server:start(node_b_gateway), ok.")
        for peer in cluster.peer_nodes.values():
            peer.eval("{ok, _} = dp_test_server:start(svc), ok.")
        yield cluster


def trusted(cluster: SeedCluster) -> ErlNode:
    assert cluster.trusted is not None
    return cluster.trusted


# -- what the desktop may do ---------------------------------------------------------------
@pytest.mark.parametrize("peer", list(PEERS))
def test_trusted_commands_each_peer(seed: SeedCluster, peer: str) -> None:
    t, name = trusted(seed), PEERS[peer]
    assert t.eval(f"net_adm:ping({name}).") == Atom("pong")
    assert t.eval(f"rpc:call({name}, erlang, node, []).") == Atom(f"{peer}@127.0.0.1")
    assert t.eval(f"erpc:call({name}, lists, seq, [1, 3]).") == [1, 2, 3]
    assert t.eval(f"gen_server:call({{svc, {name}}}, {{echo, hello}}).") == (Atom("echo"), Atom("hello"))
    assert t.eval(
        f"process_flag(trap_exit, true), P = spawn_link({name}, erlang, exit, [done]),"
        " receive {'EXIT', P, R} -> R after 10000 -> timeout end."
    ) == Atom("done")
    assert t.eval(
        f"P = spawn({name}, timer, sleep, [50]), Ref = monitor(process, P),"
        " receive {'DOWN', Ref, process, P, R} -> R after 10000 -> timeout end."
    ) == Atom("normal")
    # The peer's own service stayed usable and saw the desktop's call.
    received = seed.peer_nodes[peer].eval("dp_test_server:received(svc).")
    assert (Atom("call"), (Atom("echo"), Atom("hello"))) in received


# -- what the peers may not do ---------------------------------------------------------------
ATTEMPTS = [
    # (id, Erlang expression run on the peer, expected result, rule id in the decision log)
    ("rpc-call-os-cmd", f"rpc:call({T}, os, cmd, [\"touch /tmp/distproxy-pwned\"], {CALL_TIMEOUT_MS}).",
     (Atom("badrpc"), Atom("notsup")), "baseline:no-spawn"),
    ("erpc-call", f"try erpc:call({T}, erlang, halt, [], {CALL_TIMEOUT_MS}) catch error:{{erpc, R}} -> R end.",
     Atom("notsup"), "baseline:no-spawn"),
    ("gen-call-auth-cookie", f"catch gen_server:call({{auth, {T}}}, get_our_cookie, {CALL_TIMEOUT_MS}).",
     None, "baseline:internal-names"),
    ("gen-call-rex", f"catch gen_server:call({{rex, {T}}}, {{call, os, cmd, [\"id\"], user}}, {CALL_TIMEOUT_MS}).",
     None, "baseline:rex"),
    ("gen-call-net-kernel-spawn",
     f"catch gen_server:call({{net_kernel, {T}}}, {{spawn, os, cmd, [\"id\"], user}}, {CALL_TIMEOUT_MS}).",
     None, "baseline:net-kernel"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
@pytest.mark.parametrize("peer", list(PEERS))
def test_peer_attempts_fail_fast_and_are_logged(seed: SeedCluster, peer: str, attempt: tuple[Any, ...]) -> None:
    _, expr, expected, rule_id = attempt
    node = seed.peer_nodes[peer]
    started = time.monotonic()
    result = node.eval(expr, timeout=30)
    elapsed = time.monotonic() - started
    if expected is not None:
        assert result == expected
    else:  # a refused gen_server:call exits with noproc at once
        assert result[0] == Atom("EXIT") and result[1][0] == Atom("noproc"), result
    assert elapsed < CALL_TIMEOUT_MS / 1000 / 2, f"refusal took {elapsed:.1f}s: it must not wait for a timeout"
    wait_until(lambda: decisions_for(seed, f"{peer}@127.0.0.1", rule_id), what=f"{rule_id} in the decision log")
    assert trusted(seed).eval("ok.") == Atom("ok")
    assert not Path("/tmp/distproxy-pwned").exists()


@pytest.mark.parametrize("peer", list(PEERS))
def test_peer_cannot_kill_or_spawn_on_the_desktop(seed: SeedCluster, peer: str) -> None:
    t, node = trusted(seed), seed.peer_nodes[peer]
    victim = t.eval("P = spawn(timer, sleep, [infinity]), register(victim, P), P.")
    # The peer knows the pid (it leaked, say): exit/2 and group_leader are dropped.
    node.eval("exit(Bin2, kill), ok.".replace("Bin2", "binary_to_term(Bin)"), data=encode_pid(victim))
    node.eval("P = binary_to_term(Bin), group_leader(self(), P), ok.", data=encode_pid(victim))
    spawned = node.eval(f"spawn({T}, erlang, halt, []).")
    assert spawned.node == Atom(f"{peer}@127.0.0.1")  # OTP hands back a dead local pid: nothing ran on T
    wait_until(lambda: decisions_for(seed, f"{peer}@127.0.0.1", "baseline:no-exit2"), what="exit2 logged")
    assert t.eval("is_process_alive(whereis(victim)).") == Atom("true")
    assert t.eval("{group_leader, GL} = process_info(whereis(victim), group_leader), node(GL).") == Atom(
        "my_desktop@127.0.0.1")
    t.eval("exit(whereis(victim), kill), ok.")


def encode_pid(pid: Any) -> bytes:
    from distproxy.term import encode

    return encode(pid)


def test_gateway_is_for_ec2_only(seed: SeedCluster) -> None:
    ec2, bob = seed.peer_nodes["ec2_node"], seed.peer_nodes["bob_colo"]
    assert ec2.eval(f"gen_server:call({{node_b_gateway, {T}}}, {{echo, from_ec2}}).") == (
        Atom("echo"), Atom("from_ec2"))
    refused = bob.eval(f"catch gen_server:call({{node_b_gateway, {T}}}, {{echo, from_bob}}, {CALL_TIMEOUT_MS}).")
    assert refused[0] == Atom("EXIT") and refused[1][0] == Atom("noproc")
    bob.eval(f"{{node_b_gateway, {T}}} ! plain_from_bob, ok.")
    received = trusted(seed).eval("dp_test_server:received(node_b_gateway).")
    assert (Atom("call"), (Atom("echo"), Atom("from_ec2"))) in received
    assert all(Atom("from_bob") not in entry[1] and entry[1] != Atom("plain_from_bob") for entry in received
               if isinstance(entry[1], tuple) or isinstance(entry[1], Atom))
    wait_until(lambda: decisions_for(seed, "bob_colo@127.0.0.1", "gateway-refused"), what="gateway-refused logged")


def test_decision_log_lines_carry_the_required_fields(seed: SeedCluster) -> None:
    seed.peer_nodes["bob_colo"].eval(f"rpc:call({T}, erlang, node, [], {CALL_TIMEOUT_MS}).")
    record = wait_until(lambda: decisions_for(seed, "bob_colo@127.0.0.1", "baseline:no-spawn"))[-1]
    for key in ("time", "peer", "direction", "op", "target", "rule_id", "verdict", "mode", "revision"):
        assert key in record, key
    assert record["direction"] == "from_peer" and record["op"] == "spawn_request"
    assert record["verdict"] == "reject" and record["mode"] == "enforce"


# -- the other example policies ----------------------------------------------------------------
def test_gateway_only_lets_through_only_the_gateway(tmp_path: Path) -> None:
    cluster = SeedCluster(tmp_path, [PeerSpec("ec2_node", POLICIES / "gateway-only.yaml")])
    with cluster:
        t, ec2 = trusted(cluster), cluster.peer_nodes["ec2_node"]
        t.eval("{ok, _} = dp_test_server:start(node_b_gateway), {ok, _} = dp_test_server:start(other), ok.")
        ec2.eval(f"{{node_b_gateway, {T}}} ! {{hello, gateway}}, {{other, {T}}} ! {{hello, other}}, ok.")
        ec2.eval(f"rpc:call({T}, erlang, node, [], {CALL_TIMEOUT_MS}).")
        # Ordering: a later message to the gateway arrives after the refused ones were handled.
        ec2.eval(f"{{node_b_gateway, {T}}} ! marker, ok.")
        wait_until(lambda: (Atom("info"), Atom("marker")) in t.eval("dp_test_server:received(node_b_gateway)."),
                   what="marker at the gateway")
        assert (Atom("info"), (Atom("hello"), Atom("gateway"))) in t.eval("dp_test_server:received(node_b_gateway).")
        assert t.eval("dp_test_server:received(other).") == []


def test_audit_forwards_everything_and_logs_would_be_denials(tmp_path: Path) -> None:
    cluster = SeedCluster(tmp_path, [PeerSpec("ec2_node", POLICIES / "audit.yaml")])
    with cluster:
        ec2 = cluster.peer_nodes["ec2_node"]
        assert ec2.eval(f"rpc:call({T}, erlang, node, []).") == Atom("my_desktop@127.0.0.1")
        record = wait_until(lambda: decisions_for(cluster, "ec2_node@127.0.0.1", "baseline:no-spawn"),
                            what="audit record")[-1]
        assert record["mode"] == "audit" and record["verdict"] == "reject" and record["action"] == "accept"


# -- hot reload ----------------------------------------------------------------------------------
def test_reload_under_load_changes_verdicts_without_dropping_the_connection(tmp_path: Path) -> None:
    policy = tmp_path / "ec2-policy.yaml"
    original = (POLICIES / "unequal-trust.yaml").read_text()
    policy.write_text(original)
    cluster = SeedCluster(tmp_path / "cluster", [PeerSpec("ec2_node", policy)])
    with cluster:
        t, ec2 = trusted(cluster), cluster.peer_nodes["ec2_node"]
        t.eval("{ok, _} = dp_test_server:start(node_b_gateway), ok.")
        assert ec2.eval(f"gen_server:call({{node_b_gateway, {T}}}, {{echo, before}}).") == (Atom("echo"), Atom("before"))
        # Load: ec2 calls the gateway in a loop; a watcher records any nodedown.
        ec2.eval(
            "Parent = self(), W = spawn(fun() -> ok = net_kernel:monitor_nodes(true), Parent ! {self(), on},"
            " (fun Loop(Downs) -> receive {nodedown, N} -> Loop([N | Downs]); {Q, ask} -> Q ! {downs, Downs}, Loop(Downs) end end)([]) end),"
            " receive {W, on} -> register(watcher, W) end,"
            f" L = spawn(fun() -> (fun Loop(Ok, Err) -> R = (catch gen_server:call({{node_b_gateway, {T}}}, {{echo, load}}, 2000)),"
            " receive {Q, ask} -> Q ! {counts, Ok, Err}, Loop(Ok, Err) after 5 ->"
            " case R of {echo, load} -> Loop(Ok + 1, Err); _ -> Loop(Ok, Err + 1) end end end)(0, 0) end),"
            " register(loader, L), ok."
        )
        # Let the load get going under the original policy before the swap.
        def successes() -> int:
            counts = ec2.eval("loader ! {self(), ask}, receive {counts, O, E} -> {O, E} after 5000 -> timeout end.")
            return counts[0] if isinstance(counts, tuple) else 0
        wait_until(lambda: successes() >= 3, what="the load's first successful calls")
        tightened = original.replace("      from_node: \"ec2_node@*\"\n      action: accept", "      from_node: \"ec2_node@*\"\n      action: reject")
        assert tightened != original
        policy.write_text(tightened)
        assert cluster.proxy is not None
        cluster.proxy.signal(signal.SIGHUP)
        wait_until(lambda: decisions_for(cluster, "ec2_node@127.0.0.1", "ec2-gateway"), timeout=15,
                   what="the new verdict for ec2-gateway")
        refused = ec2.eval(f"catch gen_server:call({{node_b_gateway, {T}}}, {{echo, later}}, {CALL_TIMEOUT_MS}).")
        assert refused[0] == Atom("EXIT") and refused[1][0] == Atom("noproc")
        # A broken file is refused; the running policy (tightened) stays.
        policy.write_text(tightened + "\n  - id: [broken\n")
        cluster.proxy.signal(signal.SIGHUP)
        wait_until(lambda: "policy reload failed" in cluster.proxy.log_text(), what="the reload error")  # type: ignore[union-attr]
        assert f"{policy}:" in cluster.proxy.log_text()
        still = ec2.eval(f"catch gen_server:call({{node_b_gateway, {T}}}, {{echo, still}}, {CALL_TIMEOUT_MS}).")
        assert still[0] == Atom("EXIT") and still[1][0] == Atom("noproc")
        counts = ec2.eval("loader ! {self(), ask}, receive {counts, O, E} -> {O, E} after 5000 -> timeout end.")
        assert counts[0] > 0 and counts[1] > 0, counts  # calls succeeded before, failed after
        assert ec2.eval("watcher ! {self(), ask}, receive {downs, D} -> D after 5000 -> timeout end.") == []
        assert Atom("my_desktop@127.0.0.1") in ec2.eval("nodes().")
