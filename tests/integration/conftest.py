"""Fixtures for tests that run real BEAM nodes behind a real distproxy process."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path

import pytest

from distproxy.testing.cluster import PeerSpec, SeedCluster
from distproxy.testing.erlnode import find_erl

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
ALLOW_ALL = Path(os.environ.get("DISTPROXY_TEST_ALLOW_ALL", POLICIES / "allow-all.yaml"))

pytestmark = pytest.mark.erlang


@pytest.fixture(scope="session", autouse=True)
def _erl_available() -> None:
    find_erl()  # raises with an install hint: CI must have erl, so this fails, never skips


def make_cluster(tmp: Path, policy: Path = ALLOW_ALL, peers: tuple[str, ...] = ("ec2_node", "bob_colo"),
                 **kwargs: object) -> SeedCluster:
    return SeedCluster(tmp, [PeerSpec(alive, policy) for alive in peers], **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def allow_all_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedCluster]:
    cluster = make_cluster(tmp_path_factory.mktemp("allow-all"))
    with cluster:
        yield cluster


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[SeedCluster]:
    cluster = make_cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()
