"""Transparent splice: real OTP nodes talk through distproxy in both dialling directions.

The policy accepts everything (policies/allow-all.yaml); these tests prove the protocol
layer is exact: every common operation works, and its replies come back.
"""

from __future__ import annotations

import pytest

from distproxy.term import Atom
from distproxy.testing.cluster import SeedCluster
from distproxy.testing.erlnode import ErlNode

pytestmark = pytest.mark.erlang

DIRECTIONS = [
    pytest.param(("trusted", "ec2_node"), id="trusted-dials-peer"),
    pytest.param(("ec2_node", "trusted"), id="peer-dials-trusted"),
]


def q(name: str) -> str:
    """An Erlang quoted atom."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def node(cluster: SeedCluster, who: str) -> ErlNode:
    if who == "trusted":
        assert cluster.trusted is not None
        return cluster.trusted
    return cluster.peer_nodes[who]


@pytest.fixture
def pair(allow_all_cluster: SeedCluster, request: pytest.FixtureRequest) -> tuple[ErlNode, ErlNode]:
    """(caller, callee), disconnected first so that the caller's own dial sets the
    connection up: each test then crosses the listener of its direction."""
    caller, callee = node(allow_all_cluster, request.param[0]), node(allow_all_cluster, request.param[1])
    caller.eval(f"erlang:disconnect_node({q(callee.name)}), ok.")
    callee.eval(f"erlang:disconnect_node({q(caller.name)}), ok.")
    return caller, callee


def connections_via(cluster: SeedCluster, identity: str) -> int:
    """How many pairs the proxy has set up on the listener that poses as ``identity``."""
    assert cluster.proxy is not None
    return sum(1 for line in cluster.proxy.log_text().splitlines()
               if f"as {identity} from" in line and "connected" in line)


def parametrize_pairs(func):  # type: ignore[no-untyped-def]
    return pytest.mark.parametrize("pair", DIRECTIONS, indirect=True)(func)


@parametrize_pairs
def test_ping(allow_all_cluster: SeedCluster, pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    before = connections_via(allow_all_cluster, callee.name)
    assert caller.eval(f"net_adm:ping({q(callee.name)}).") == Atom("pong")
    assert callee.atom in caller.eval("nodes().")
    assert caller.atom in callee.eval("nodes().")
    # The connection crossed distproxy, on the listener that poses as the callee.
    assert connections_via(allow_all_cluster, callee.name) == before + 1


@parametrize_pairs
def test_rpc_call(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    assert caller.eval(f"rpc:call({q(callee.name)}, erlang, node, []).") == callee.atom


@parametrize_pairs
def test_erpc_call_and_cast(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    assert caller.eval(f"erpc:call({q(callee.name)}, lists, reverse, [[1,2,3]]).") == [3, 2, 1]
    got = caller.eval(
        f"Ref = make_ref(), Me = self(), erpc:cast({q(callee.name)}, erlang, send, [Me, {{cast_done, Ref}}]),"
        " receive {cast_done, Ref} -> done after 10000 -> timeout end."
    )
    assert got == Atom("done")


@parametrize_pairs
def test_gen_server_call_by_name_and_pid(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    server = f"srv_{caller.short_name}"
    callee.eval(f"{{ok, _}} = dp_test_server:start({server}), ok.")
    assert caller.eval(f"gen_server:call({{{server}, {q(callee.name)}}}, {{echo, hello}}).") == (
        Atom("echo"), Atom("hello"))
    pid, where = caller.eval(f"gen_server:call({{{server}, {q(callee.name)}}}, whoami).")
    assert where == callee.atom
    # A call to a pid: SEND_SENDER + monitor by pid; the reply comes back on an alias.
    assert caller.eval(
        f"[{{P, _}}] = [gen_server:call({{{server}, {q(callee.name)}}}, whoami)], gen_server:call(P, {{echo, 42}})."
    ) == (Atom("echo"), 42)
    assert pid.node == callee.atom


@parametrize_pairs
def test_spawn_link_exit_comes_back(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    got = caller.eval(
        f"process_flag(trap_exit, true), P = spawn_link({q(callee.name)}, erlang, exit, [bye]),"
        " receive {'EXIT', P, R} -> R after 10000 -> timeout end."
    )
    assert got == Atom("bye")


@parametrize_pairs
def test_monitor_by_pid_and_by_name(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    assert caller.eval(
        f"P = spawn({q(callee.name)}, timer, sleep, [100]), Ref = monitor(process, P),"
        " receive {'DOWN', Ref, process, P, R} -> R after 10000 -> timeout end."
    ) == Atom("normal")
    server = f"mon_{caller.short_name}"
    callee.eval(f"{{ok, _}} = dp_test_server:start({server}), ok.")
    assert caller.eval(
        f"Ref = monitor(process, {{{server}, {q(callee.name)}}}), gen_server:cast({{{server}, {q(callee.name)}}}, crash),"
        " receive {'DOWN', Ref, process, _, R} -> R after 10000 -> timeout end."
    ) == Atom("crashed")


@parametrize_pairs
def test_link_unlink_and_kill(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    got = caller.eval(
        f"process_flag(trap_exit, true), P = spawn({q(callee.name)}, timer, sleep, [infinity]),"
        " link(P), unlink(P), link(P), exit(P, kill),"
        " receive {'EXIT', P, R} -> R after 10000 -> timeout end."
    )
    assert got == Atom("killed")


@parametrize_pairs
def test_global_register_and_whereis(pair: tuple[ErlNode, ErlNode]) -> None:
    caller, callee = pair
    name = f"g_{caller.short_name}"
    assert caller.eval(f"net_adm:ping({q(callee.name)}).") == Atom("pong")
    pid = caller.eval(f"P = spawn(timer, sleep, [infinity]), yes = global:register_name({name}, P), P.")
    assert callee.eval(f"global:sync(), global:whereis_name({name}).") == pid


@pytest.mark.parametrize("size", [1024 * 1024, 64 * 1024 * 1024], ids=["1MiB", "64MiB"])
@parametrize_pairs
def test_large_message(pair: tuple[ErlNode, ErlNode], size: int) -> None:
    caller, callee = pair
    server = f"big_{caller.short_name}"
    callee.eval(f"case whereis({server}) of undefined -> {{ok, _}} = dp_test_server:start({server}), ok; _ -> ok end.")
    got = caller.eval(
        f"B = binary:copy(<<\"distproxy\">>, {size // 9}), {{size, S}} = "
        f"gen_server:call({{{server}, {q(callee.name)}}}, {{size, B}}, 60000), S =:= erlang:external_size(B).",
        timeout=120,
    )
    assert got == Atom("true")
    if size <= 1024 * 1024:  # and back: a reply of the same size
        assert caller.eval(
            f"B = binary:copy(<<1>>, {size}), {{echo, B2}} = gen_server:call({{{server}, {q(callee.name)}}}, {{echo, B}}),"
            " B =:= B2."
        ) == Atom("true")
