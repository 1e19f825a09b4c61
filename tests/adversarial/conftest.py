"""The hostile-peer suite's cluster: the seed scenario behind policies/unequal-trust.yaml.

ec2_node and bob_colo are real OTP nodes (ec2_node with a large atom table, so it can
mint the two million atoms of the atom-exhaustion attack); ``mallory`` is a configured
peer with no node: raw clients (tests/adversarial/raw.py) handshake as mallory to send
frames no OTP API produces.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from distproxy.testing.cluster import PeerSpec, SeedCluster
from distproxy.testing.erlnode import ErlNode, find_erl

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "unequal-trust.yaml"
ATTACKER_ATOM_TABLE = "3000000"  # ec2_node's +t: room for the 2 million fresh atoms it sends
RAW_PEER = "mallory"

pytestmark = pytest.mark.erlang


@pytest.fixture(scope="session", autouse=True)
def _erl_available() -> None:
    find_erl()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedCluster]:
    cluster = SeedCluster(tmp_path_factory.mktemp("hostile"), [
        PeerSpec("ec2_node", POLICY, node_args=("+t", ATTACKER_ATOM_TABLE)),
        PeerSpec("bob_colo", POLICY),
        PeerSpec(RAW_PEER, POLICY),
    ])
    cluster.start(start_peers=["ec2_node", "bob_colo"])
    try:
        t = trusted(cluster)
        t.eval("{ok, _} = dp_test_server:start(node_b_gateway), ok.")
        for peer in cluster.peer_nodes.values():
            peer.eval("{ok, _} = dp_test_server:start(svc), ok.")
        yield cluster
    finally:
        cluster.stop()


def trusted(cluster: SeedCluster) -> ErlNode:
    assert cluster.trusted is not None
    return cluster.trusted
