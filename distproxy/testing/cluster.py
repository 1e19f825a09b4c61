"""The seed scenario on loopback: a trusted node, untrusted peers, and distproxy between.

``SeedCluster`` writes a distproxy config (cookies in files, one policy per peer), starts
``distproxy run`` as a subprocess (exactly as an operator would), waits for its ready line,
then starts the real nodes:

- the trusted node registers in the back EPMD and routes every dial through distproxy
  with the shipped ``distproxy_epmd`` module;
- each peer registers in the front EPMD and finds the trusted node there (as distproxy).

Both EPMDs are served by distproxy itself, so no system epmd is involved.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .erlnode import ErlNode, free_port

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
DEFAULT_TRUSTED = "my_desktop"
DEFAULT_PEERS = ("ec2_node", "bob_colo")


@dataclass
class PeerSpec:
    alive: str
    policy: Path
    cookie: str = ""
    hidden: bool = False
    config_extra: dict[str, Any] = field(default_factory=dict)  # more keys for its peers[] entry (tls, ...)
    node_args: Sequence[str] = ()  # more erl arguments for this peer only (-proto_dist inet_tls ...)

    @property
    def name(self) -> str:
        return f"{self.alive}@{HOST}"


@dataclass
class ProxyProcess:
    """``distproxy run --config FILE`` as a child process."""

    config_path: Path
    log_path: Path
    extra_args: Sequence[str] = ()
    command_prefix: Sequence[str] = ()  # e.g. ("ip", "netns", "exec", NS)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    ready: dict[str, Any] = field(default_factory=dict, init=False)

    def start(self, timeout: float = READY_TIMEOUT) -> "ProxyProcess":
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [*self.command_prefix, sys.executable, "-m", "distproxy", "run", "--config", str(self.config_path),
                 "--ready-line", "--stop-on-stdin-eof", *self.extra_args],
                # Our end of stdin closes when this process dies, however it dies, so an
                # orphaned proxy shuts itself down.
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
            if not ready:
                self.stop()
                raise RuntimeError(f"distproxy did not become ready in {timeout}s:\n{self.log_text()}")
            chunk = os.read(fd, 4096)
            if not chunk:
                self.stop()
                raise RuntimeError(f"distproxy exited before it was ready:\n{self.log_text()}")
            line += chunk
        self.ready = json.loads(line.split(b"\n", 1)[0])
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        for pipe in (self.process.stdout, self.process.stdin):
            if pipe is not None:
                pipe.close()
        return self.process.returncode


@dataclass
class SeedCluster:
    """my_desktop (trusted) plus peers behind distproxy, all on 127.0.0.1."""

    workdir: Path
    peers: Sequence[PeerSpec]
    trusted_alive: str = DEFAULT_TRUSTED
    trusted_cookie: str = "trusted-cookie-never-leaves"
    config_extra: dict[str, Any] = field(default_factory=dict)
    node_args: Sequence[str] = ()
    trusted_uses_epmd_module: bool = True
    epmd_ports: tuple[int, int] | None = None  # (front, back) of existing EPMDs; None: fresh ports
    trusted_args: Sequence[str] = ()  # more erl arguments for the trusted node only

    front_epmd_port: int = field(default=0, init=False)
    back_epmd_port: int = field(default=0, init=False)
    proxy: ProxyProcess | None = field(default=None, init=False)
    trusted: ErlNode | None = field(default=None, init=False)
    peer_nodes: dict[str, ErlNode] = field(default_factory=dict, init=False)

    @property
    def trusted_name(self) -> str:
        return f"{self.trusted_alive}@{HOST}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "distproxy.yaml"

    @property
    def decision_log(self) -> Path:
        return self.workdir / "var" / "decisions.jsonl"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.front_epmd_port, self.back_epmd_port = self.epmd_ports or (free_port(), free_port())

        def cookie_file(name: str, value: str) -> str:
            path = self.workdir / f"{name}.cookie"
            path.write_text(value)
            path.chmod(0o600)
            return path.name

        config: dict[str, Any] = {
            "trusted": {"name": self.trusted_name,
                        "cookie_file": cookie_file(self.trusted_alive, self.trusted_cookie)},
            "listen": f"{HOST}:0",
            "front_epmd": {"serve": f"{HOST}:{self.front_epmd_port}"},
            "back_epmd": {"serve": f"{HOST}:{self.back_epmd_port}"},
            "peers": [
                {"name": peer.name, "cookie_file": cookie_file(peer.alive, peer.cookie or f"{peer.alive}-cookie"),
                 "policy": str(peer.policy), **({"hidden": True} if peer.hidden else {}), **peer.config_extra}
                for peer in self.peers
            ],
        }
        config.update(self.config_extra)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def peer_cookie(self, alive: str) -> str:
        for peer in self.peers:
            if peer.alive == alive:
                return peer.cookie or f"{peer.alive}-cookie"
        raise KeyError(alive)

    def start_proxy(self, extra_args: Sequence[str] = ()) -> ProxyProcess:
        self.proxy = ProxyProcess(self.config_path, self.workdir / "distproxy.log", extra_args).start()
        return self.proxy

    def trusted_node(self, **overrides: Any) -> ErlNode:
        args = [*self.node_args, *self.trusted_args]
        if self.trusted_uses_epmd_module:
            args += ["-epmd_module", "distproxy_epmd", "-distproxy_address", HOST]
        settings: dict[str, Any] = dict(name=self.trusted_name, cookie=self.trusted_cookie,
                                        epmd_port=self.back_epmd_port, extra_args=args,
                                        log_dir=self.workdir / "nodes")
        settings.update(overrides)
        return ErlNode(**settings)

    def peer_node(self, alive: str, **overrides: Any) -> ErlNode:
        spec = next(peer for peer in self.peers if peer.alive == alive)
        settings: dict[str, Any] = dict(name=f"{alive}@{HOST}", cookie=self.peer_cookie(alive),
                                        epmd_port=self.front_epmd_port,
                                        extra_args=[*self.node_args, *spec.node_args],
                                        log_dir=self.workdir / "nodes")
        settings.update(overrides)
        return ErlNode(**settings)

    def start(self, start_peers: Sequence[str] | None = None) -> "SeedCluster":
        """Write the config, start distproxy, the trusted node and the peers (all of
        them, or only those named in ``start_peers``)."""
        self.write_config()
        self.start_proxy()
        try:
            self.trusted = self.trusted_node().start()
            for peer in self.peers:
                if start_peers is None or peer.alive in start_peers:
                    self.peer_nodes[peer.alive] = self.peer_node(peer.alive).start()
        except Exception:
            self.stop()
            raise
        return self

    def decisions(self) -> list[dict[str, Any]]:
        if not self.decision_log.exists():
            return []
        return [json.loads(line) for line in self.decision_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        for node in list(self.peer_nodes.values()):
            node.stop()
        self.peer_nodes.clear()
        if self.trusted is not None:
            self.trusted.stop()
            self.trusted = None
        if self.proxy is not None:
            self.proxy.stop()

    def __enter__(self) -> "SeedCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def temp_workdir(prefix: str = "distproxy-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
