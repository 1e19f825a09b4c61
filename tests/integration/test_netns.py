"""The seed scenario across real network stacks: one Linux network namespace per host.

```
 ns "ec2"  10.199.77.2 ──veth── 10.199.77.1 ┐ ns "desk": distproxy (front EPMD :4369, listeners)
 ns "bob"  10.199.77.3 ──veth── 10.199.77.1 ┘           my_desktop on 127.0.0.1 only, back EPMD 127.0.0.1:4371
```

Each peer namespace has one point-to-point route, to distproxy's address, and its own
EPMD; the desktop namespace does not forward. The test proves the scenario works across
the namespaces (the trusted node rpc's a peer, a peer's ping reaches it through
distproxy) and that a peer cannot reach the trusted node's port, nor the other peer.
Needs root and iproute2 (skips otherwise, saying why); everything it makes it removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from distproxy.term import Atom
from distproxy.testing.cluster import ProxyProcess
from distproxy.testing.erlnode import ErlNode

from .conftest import POLICIES

pytestmark = pytest.mark.erlang

SUBNET_PREFIX = "10.199.77"  # only ever configured inside the namespaces this test creates
DESK_ADDRESS = f"{SUBNET_PREFIX}.1"
PEER_ADDRESSES = {"ec2": f"{SUBNET_PREFIX}.2", "bob": f"{SUBNET_PREFIX}.3"}
BACK_EPMD_PORT = 4371  # the trusted node's EPMD, served by distproxy on the desktop's loopback
CONNECT_TIMEOUT_MS = 2000
IP_TIMEOUT = 10.0
DESK = "my_desktop"


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=IP_TIMEOUT)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root, as CI does)"
    if shutil.which("ip") is None:
        return "iproute2's 'ip' is not installed (apt-get install iproute2)"
    if shutil.which("epmd") is None:
        return "epmd is not on PATH (it comes with erlang-nox)"
    probe = f"dpprobe{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace here: {getattr(exc, 'stderr', b'') or exc}"
    _run("ip", "netns", "del", probe)
    return None


@dataclass
class Hosts:
    """Three namespaces wired as in the module docstring; ``close`` removes them."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    made: list[str] = field(default_factory=list)
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"dp{host}{self.tag}"

    def prefix(self, host: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.ns(host))

    def build(self) -> "Hosts":
        for host in ("desk", *PEER_ADDRESSES):
            _run("ip", "netns", "add", self.ns(host))
            self.made.append(self.ns(host))
            _run(*self.prefix(host), "ip", "link", "set", "lo", "up")
        for host, address in PEER_ADDRESSES.items():
            desk_end, peer_end = f"d{host}{self.tag}", f"p{host}{self.tag}"
            _run("ip", "link", "add", desk_end, "netns", self.ns("desk"), "type", "veth",
                 "peer", "name", peer_end, "netns", self.ns(host))
            # Point-to-point: the desktop reaches this peer; the peer reaches only the desktop.
            _run(*self.prefix("desk"), "ip", "addr", "add", DESK_ADDRESS, "peer", address, "dev", desk_end)
            _run(*self.prefix(host), "ip", "addr", "add", address, "peer", DESK_ADDRESS, "dev", peer_end)
            _run(*self.prefix("desk"), "ip", "link", "set", desk_end, "up")
            _run(*self.prefix(host), "ip", "link", "set", peer_end, "up")
        return self

    def epmd(self, host: str) -> None:
        """Each peer host's own EPMD, in the foreground so that it can be stopped by pid."""
        self.daemons.append(subprocess.Popen([*self.prefix(host), "epmd"], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.terminate()
            try:
                daemon.wait(timeout=IP_TIMEOUT)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=IP_TIMEOUT)
        for ns in reversed(self.made):  # deleting a namespace deletes its veth ends too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=IP_TIMEOUT)
        self.made.clear()


@dataclass
class Scenario:
    hosts: Hosts
    proxy: ProxyProcess
    trusted: ErlNode
    peers: dict[str, ErlNode]


def _cookie(workdir: Path, name: str, value: str) -> str:
    path = workdir / f"{name}.cookie"
    path.write_text(value)
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("netns")
    hosts = Hosts()
    nodes: list[ErlNode] = []
    proxy: ProxyProcess | None = None
    try:
        hosts.build()
        for host in PEER_ADDRESSES:
            hosts.epmd(host)
        config = {
            "trusted": {"name": f"{DESK}@{DESK_ADDRESS}", "cookie_file": _cookie(workdir, DESK, "trusted-cookie")},
            "listen": f"{DESK_ADDRESS}:0",
            "front_epmd": {"serve": f"{DESK_ADDRESS}:4369"},
            "back_epmd": {"serve": f"127.0.0.1:{BACK_EPMD_PORT}"},
            "peers": [{"name": f"{alive}@{address}", "cookie_file": _cookie(workdir, alive, f"{alive}-cookie"),
                       "policy": str(POLICIES / "unequal-trust.yaml")}
                      for alive, address in (("ec2_node", PEER_ADDRESSES["ec2"]), ("bob_colo", PEER_ADDRESSES["bob"]))],
        }
        config_path = workdir / "distproxy.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        proxy = ProxyProcess(config_path, workdir / "distproxy.log", command_prefix=hosts.prefix("desk")).start()
        trusted = ErlNode(f"{DESK}@{DESK_ADDRESS}", cookie="trusted-cookie", epmd_port=BACK_EPMD_PORT,
                          extra_args=["-epmd_module", "distproxy_epmd", "-distproxy_address", "127.0.0.1"],
                          log_dir=workdir / "nodes", command_prefix=hosts.prefix("desk"))
        nodes.append(trusted.start())
        peers = {}
        for alive, host in (("ec2_node", "ec2"), ("bob_colo", "bob")):
            # loopback_only=False: a peer listens on its own host's address, like a real one.
            peer = ErlNode(f"{alive}@{PEER_ADDRESSES[host]}", cookie=f"{alive}-cookie", log_dir=workdir / "nodes",
                           loopback_only=False, command_prefix=hosts.prefix(host))
            nodes.append(peer.start())
            peers[host] = peer
        yield Scenario(hosts, proxy, trusted, peers)
    finally:
        for node in reversed(nodes):
            node.stop()
        if proxy is not None:
            proxy.stop()
        hosts.close()


def test_trusted_node_calls_a_peer_across_namespaces(scenario: Scenario) -> None:
    ec2 = scenario.peers["ec2"]
    assert scenario.trusted.eval(f"rpc:call('{ec2.name}', erlang, node, []).") == ec2.atom
    assert "connected" in scenario.proxy.log_text()


def test_peer_ping_reaches_the_trusted_node_through_distproxy(scenario: Scenario) -> None:
    bob = scenario.peers["bob"]
    assert bob.eval(f"net_adm:ping('{scenario.trusted.name}').") == Atom("pong")
    # It crossed distproxy, which applies bob's policy: unequal trust lets it answer, not command.
    assert bob.eval(f"rpc:call('{scenario.trusted.name}', erlang, node, []).") == (Atom("badrpc"), Atom("notsup"))
    assert f"as {scenario.trusted.name} from {PEER_ADDRESSES['bob']}:" in scenario.proxy.log_text()


def test_peer_cannot_reach_the_trusted_nodes_port(scenario: Scenario) -> None:
    trusted_port = scenario.trusted.eval(
        f"{{port, P, _}} = erl_epmd:port_please(\"{DESK}\", {{127,0,0,1}}), P.")
    for peer in scenario.peers.values():
        result = peer.eval(
            f"gen_tcp:connect({{{DESK_ADDRESS.replace('.', ',')}}}, {trusted_port}, [], {CONNECT_TIMEOUT_MS}).")
        assert result == (Atom("error"), Atom("econnrefused"))  # T listens on the desktop's loopback only


def test_peers_cannot_reach_each_other(scenario: Scenario) -> None:
    bob_address = PEER_ADDRESSES["bob"].replace(".", ",")
    result = scenario.peers["ec2"].eval(f"gen_tcp:connect({{{bob_address}}}, 4369, [], {CONNECT_TIMEOUT_MS}).")
    assert result[0] == Atom("error")
    assert result[1] in (Atom("ehostunreach"), Atom("enetunreach"), Atom("timeout"))
