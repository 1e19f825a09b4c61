"""Connection lifecycle through distproxy: restarts, simultaneous dials, ticks, memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from distproxy.term import Atom

from .conftest import make_cluster

pytestmark = pytest.mark.erlang

TRUSTED = "'my_desktop@127.0.0.1'"
EC2 = "'ec2_node@127.0.0.1'"


def test_peer_restart_with_new_creation_reconnects(tmp_path: Path) -> None:
    with make_cluster(tmp_path, peers=("ec2_node",)) as cluster:
        trusted = cluster.trusted
        assert trusted is not None
        assert trusted.eval(f"net_adm:ping({EC2}).") == Atom("pong")
        old_pid = trusted.eval(f"rpc:call({EC2}, erlang, whereis, [dp_agent]).")
        cluster.peer_nodes["ec2_node"].stop()
        assert trusted.eval(
            f"net_kernel:monitor_nodes(true), case lists:member({EC2}, nodes()) of"
            f" true -> receive {{nodedown, {EC2}}} -> down after 15000 -> still_up end; false -> down end."
        ) == Atom("down")
        cluster.peer_nodes["ec2_node"] = cluster.peer_node("ec2_node").start()
        assert trusted.eval(f"net_adm:ping({EC2}).") == Atom("pong")
        new_pid = trusted.eval(f"rpc:call({EC2}, erlang, whereis, [dp_agent]).")
        assert new_pid.node == old_pid.node
        assert new_pid.creation != old_pid.creation  # a new incarnation, seen through the proxy
        assert cluster.peer_nodes["ec2_node"].eval(f"rpc:call({TRUSTED}, erlang, node, []).") == Atom(
            "my_desktop@127.0.0.1")


def test_both_sides_dialling_at_once(tmp_path: Path) -> None:
    with make_cluster(tmp_path, peers=("ec2_node",)) as cluster:
        trusted, peer = cluster.trusted, cluster.peer_nodes["ec2_node"]
        assert trusted is not None
        for _ in range(3):
            a = trusted.submit(f"net_adm:ping({EC2}).")
            b = peer.submit(f"net_adm:ping({TRUSTED}).")
            assert trusted.result(a) == Atom("pong")
            assert peer.result(b) == Atom("pong")
            assert trusted.eval(f"rpc:call({EC2}, erlang, node, []).") == Atom("ec2_node@127.0.0.1")
            assert peer.eval(f"rpc:call({TRUSTED}, erlang, node, []).") == Atom("my_desktop@127.0.0.1")
            # Disconnect, and wait until the peer has seen it too before dialling again.
            peer.eval(
                "Parent = self(), W = spawn(fun() -> ok = net_kernel:monitor_nodes(true), Parent ! {self(), watching},"
                f" receive {{nodedown, {TRUSTED}}} -> receive {{Q, asked}} -> Q ! down end end end),"
                " receive {W, watching} -> register(watcher, W) end, ok."
            )
            trusted.eval(f"erlang:disconnect_node({EC2}), ok.")
            assert peer.eval("watcher ! {self(), asked}, receive down -> ok after 15000 -> timeout end.") == Atom("ok")


def test_ticks_keep_an_idle_connection_alive(tmp_path: Path) -> None:
    # net_ticktime 4 s: without ticks crossing the proxy the connection would drop
    # after about 4 s of silence; we stay idle for 3 tick times.
    with make_cluster(tmp_path, peers=("ec2_node",), node_args=["-kernel", "net_ticktime", "4"]) as cluster:
        trusted = cluster.trusted
        assert trusted is not None
        assert trusted.eval(f"net_adm:ping({EC2}).") == Atom("pong")
        assert trusted.eval(
            f"net_kernel:monitor_nodes(true), receive {{nodedown, {EC2}}} -> went_down after 12000 -> stayed_up end.",
            timeout=30,
        ) == Atom("stayed_up")
        assert Atom("ec2_node@127.0.0.1") in trusted.eval("nodes().")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def current_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_when_a_64mib_message_crosses(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    with make_cluster(tmp_path, peers=("ec2_node",)) as cluster:
        trusted, peer = cluster.trusted, cluster.peer_nodes["ec2_node"]
        assert trusted is not None and cluster.proxy is not None and cluster.proxy.process is not None
        pid = cluster.proxy.process.pid
        peer.eval("{ok, _} = dp_test_server:start(big), ok.")
        assert trusted.eval(f"net_adm:ping({EC2}).") == Atom("pong")
        idle = current_rss_bytes(pid)
        for _ in range(3):
            assert trusted.eval(
                f"B = binary:copy(<<3>>, {size}), {{size, S}} = gen_server:call({{big, {EC2}}}, {{size, B}}, 60000), S > {size}.",
                timeout=120,
            ) == Atom("true")
        # One message is buffered once; repeated messages do not accumulate.
        assert peak_rss_bytes(pid) - idle < 3 * size
        assert current_rss_bytes(pid) - idle < 2 * size


def test_registering_in_existing_system_epmds(tmp_path: Path) -> None:
    """Instead of serving EPMD itself, distproxy registers in real epmd daemons (as a
    node does, keeping the ALIVE2 socket open) and looks the real nodes up there."""
    import shutil
    import subprocess

    from distproxy.testing.erlnode import free_port

    epmd_bin = shutil.which("epmd")
    assert epmd_bin, "epmd ships with erlang-nox"
    front, back = free_port(), free_port()
    daemons = [subprocess.Popen([epmd_bin, "-port", str(port), "-address", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in (front, back)]
    try:
        cluster = make_cluster(tmp_path, peers=("ec2_node",), epmd_ports=(front, back), config_extra={
            "front_epmd": {"register_in": f"127.0.0.1:{front}"},
            "back_epmd": {"register_in": f"127.0.0.1:{back}"},
        })
        with cluster:
            t, ec2 = cluster.trusted, cluster.peer_nodes["ec2_node"]
            assert t is not None
            assert t.eval(f"net_adm:ping({EC2}).") == Atom("pong")
            ec2.eval(f"erlang:disconnect_node({TRUSTED}), ok.")
            assert ec2.eval(f"net_adm:ping({TRUSTED}).") == Atom("pong")
            # The system epmd lists distproxy's registration of the trusted node's name.
            names = ec2.eval("net_adm:names(\"127.0.0.1\").")
            assert names[0] == Atom("ok") and any(n == [ord(c) for c in "my_desktop"] for n, _ in names[1])
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(timeout=10)

