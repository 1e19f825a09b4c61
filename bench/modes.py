"""The four ways the benchmark connects a trusted node T to its peers.

- ``direct``: no proxy; T and the peers register in one plain ``epmd -port P`` (a child
  process in the foreground, killed at the end);
- ``relay``: :mod:`distproxy.testing.relay`, a blind Twisted byte relay that sits where
  distproxy sits (one shared cookie, since it relays the handshake untouched);
- ``allow-all`` / ``unequal-trust``: ``distproxy run`` with that policy for every peer.

In every mode the peers dial T (``net_adm:ping``), so T's frames travel the front
listener's upstream leg in the allowed direction (T -> peer), and the load runs from T.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from distproxy.term import Atom
from distproxy.testing.cluster import PeerSpec, SeedCluster
from distproxy.testing.erlnode import DEFAULT_EVAL_TIMEOUT, NODE_START_TIMEOUT, ErlNode, free_port

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
TRUSTED_ALIVE = "bench_t"
PEER_ALIVE = "bench_p"
SHARED_COOKIE = "bench-cookie"
READY_TIMEOUT = 30.0
PING_ATTEMPTS = 5
#: Every node: no scheduler busy-waiting, so idle schedulers do not steal the two cores
#: from the proxy (and from each other). Same flags in every mode.
NODE_ARGS = ("+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none")
#: The many-peers nodes: hidden, one scheduler, no async threads, small.
FANOUT_ARGS = NODE_ARGS + ("-hidden", "+S", "1:1", "+SDcpu", "1:1", "+SDio", "1", "+A", "0",
                           "+P", "4096", "+hms", "233")
MODES = ("direct", "relay", "allow-all", "unequal-trust")


def fanout_alive(i: int) -> str:
    return f"bench_f{i:03d}"


#: subprocess's preexec_fn (ErlNode wires the agent pipes with one) is not thread-safe:
#: children are spawned one at a time, and only the wait for their boot overlaps.
_SPAWN_LOCK = threading.Lock()


class BenchNode(ErlNode):
    """An ErlNode whose start can run in a thread next to others."""

    _spawning = False

    def start(self, timeout: float = NODE_START_TIMEOUT) -> "BenchNode":
        _SPAWN_LOCK.acquire()
        self._spawning = True
        try:
            super().start(timeout)
        finally:
            self._spawned()
        return self

    def _spawned(self) -> None:
        if self._spawning:
            self._spawning = False
            _SPAWN_LOCK.release()

    def eval(self, expr: str, data: bytes = b"", timeout: float = DEFAULT_EVAL_TIMEOUT) -> Any:
        self._spawned()  # the first eval of start(): the child exists, let the next one fork
        return super().eval(expr, data, timeout)


def bench_node(node: ErlNode) -> BenchNode:
    return BenchNode(name=node.name, cookie=node.cookie, epmd_port=node.epmd_port,
                     extra_args=node.extra_args, env=node.env, log_dir=node.log_dir,
                     loopback_only=node.loopback_only)


def _start_all(nodes: Sequence[ErlNode]) -> list[ErlNode]:
    """Start nodes in parallel (each start waits for the node's agent to answer)."""
    nodes = [bench_node(node) for node in nodes]
    started: list[ErlNode] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(node.start) for node in nodes]
        errors = []
        for node, fut in zip(nodes, futures):
            try:
                fut.result()
                started.append(node)
            except Exception as exc:  # stop the others, then report the first failure
                errors.append(exc)
    if errors:
        for node in started:
            node.stop()
        raise errors[0]
    return started


def _read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, int]:
    assert proc.stdout is not None
    fd, line, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise RuntimeError("the relay did not print its ready line")
        line += chunk
    return json.loads(line)


def _kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@dataclass
class Setup:
    """T, its main peer, optional many-peers nodes, and whatever sits between."""

    mode: str
    workdir: Path
    fanout: int = 0
    trusted: ErlNode | None = None
    peer: ErlNode | None = None
    fanout_nodes: list[ErlNode] = field(default_factory=list)
    proxy_pid: int | None = None
    proxy_port: int | None = None  # where the peers' dist sockets must be connected
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _cluster: SeedCluster | None = None

    @property
    def t(self) -> ErlNode:
        assert self.trusted is not None
        return self.trusted

    @property
    def p(self) -> ErlNode:
        assert self.peer is not None
        return self.peer

    def start(self) -> "Setup":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            getattr(self, "_start_" + self.mode.replace("-", "_"))()
            self._connect([self.p])
        except Exception:
            self.stop()
            raise
        return self

    # -- per mode ---------------------------------------------------------------------
    def _node(self, alive: str, epmd: int, cookie: str, args: Sequence[str] = NODE_ARGS,
              extra: Sequence[str] = ()) -> ErlNode:
        return ErlNode(f"{alive}@{HOST}", cookie, epmd, [*args, *extra], log_dir=self.workdir / "nodes")

    def _start_direct(self) -> None:
        port = free_port()
        epmd = subprocess.Popen(["epmd", "-port", str(port)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self._children.append(epmd)
        self._wait_port(port)
        self._epmds = (port, port)
        self.trusted, self.peer = _start_all([self._node(TRUSTED_ALIVE, port, SHARED_COOKIE),
                                              self._node(PEER_ALIVE, port, SHARED_COOKIE)])

    def _start_relay(self) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "distproxy.testing.relay", "--trusted", TRUSTED_ALIVE],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=open(self.workdir / "relay.log", "ab"), start_new_session=True)
        self._children.append(proc)
        ready = _read_ready_line(proc, READY_TIMEOUT)
        self.proxy_pid, self.proxy_port = proc.pid, ready["listen"]
        self._epmds = (ready["front_epmd"], ready["back_epmd"])
        self.trusted, self.peer = _start_all([
            self._node(TRUSTED_ALIVE, ready["back_epmd"], SHARED_COOKIE),
            self._node(PEER_ALIVE, ready["front_epmd"], SHARED_COOKIE)])

    def _start_distproxy(self, policy: Path) -> None:
        peers = [PeerSpec(PEER_ALIVE, policy)]
        peers += [PeerSpec(fanout_alive(i), policy, hidden=True) for i in range(self.fanout)]
        cluster = SeedCluster(self.workdir, peers, trusted_alive=TRUSTED_ALIVE, node_args=NODE_ARGS)
        self._cluster = cluster
        cluster.write_config()
        proxy = cluster.start_proxy()
        assert proxy.process is not None
        self.proxy_pid, self.proxy_port = proxy.process.pid, proxy.ready["listen"]
        self._epmds = (cluster.front_epmd_port, cluster.back_epmd_port)
        self.trusted, self.peer = _start_all([cluster.trusted_node(), cluster.peer_node(PEER_ALIVE)])

    def _start_allow_all(self) -> None:
        self._start_distproxy(POLICIES / "allow-all.yaml")

    def _start_unequal_trust(self) -> None:
        self._start_distproxy(POLICIES / "unequal-trust.yaml")

    # -- helpers ----------------------------------------------------------------------
    def _wait_port(self, port: int, timeout: float = 10.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                select.select([], [], [], 0.02)  # epmd has no ready signal: poll its port

    def _connect(self, peers: Sequence[ErlNode]) -> None:
        """Each peer dials T, then starts its sink and echo server."""
        for node in peers:
            got = None
            for _attempt in range(PING_ATTEMPTS):  # a node may still be registering
                got = node.eval(f"net_adm:ping('{self.t.name}').")
                if got == Atom("pong"):
                    break
            if got != Atom("pong"):
                raise RuntimeError(f"{node.name} cannot reach {self.t.name} in mode {self.mode}: {got}")
            node.eval("{ok, _} = dp_bench:start_sink(dp_sink), {ok, _} = dp_bench:start_server(dp_echo), ok.")

    def start_fanout(self) -> list[ErlNode]:
        """Start the many-peers nodes (hidden, small), all in parallel, and connect them."""
        front_epmd = self._epmds[0]
        if self._cluster is not None:
            nodes = [self._cluster.peer_node(fanout_alive(i), extra_args=list(FANOUT_ARGS))
                     for i in range(self.fanout)]
        else:
            nodes = [self._node(fanout_alive(i), front_epmd, SHARED_COOKIE, FANOUT_ARGS)
                     for i in range(self.fanout)]
        self.fanout_nodes = _start_all(nodes)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: self._connect([n]), self.fanout_nodes))
        return self.fanout_nodes

    def stop_fanout(self) -> None:
        for node in self.fanout_nodes:
            node.stop()
        self.fanout_nodes.clear()

    def stop(self) -> None:
        for node in [*self.fanout_nodes, self.peer, self.trusted]:
            if node is not None:
                node.stop()
        self.fanout_nodes.clear()
        if self._cluster is not None:
            self._cluster.peer_nodes.clear()
            self._cluster.trusted = None
            self._cluster.stop()
        for proc in reversed(self._children):
            _kill_group(proc)
            if proc.stdout is not None:
                proc.stdout.close()
