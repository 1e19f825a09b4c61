"""The Prometheus endpoint: the seed cluster with ``metrics:`` set, traffic, a scrape."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from distproxy.term import Atom
from distproxy.testing.cluster import HOST, SeedCluster
from distproxy.testing.erlnode import ErlNode

from .conftest import POLICIES, make_cluster

pytestmark = pytest.mark.erlang

TRUSTED = f"'my_desktop@{HOST}'"
EC2 = f"ec2_node@{HOST}"
SCRAPE_TIMEOUT = 10.0
SAMPLE_WAIT = 10.0  # seconds of traffic allowed for one decision-latency sample
REREGISTER_WAIT = 20.0  # seconds for a node to register again after distproxy restarts
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(cluster: SeedCluster) -> Samples:
    assert cluster.proxy is not None
    port = cluster.proxy.ready["metrics"]
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=SCRAPE_TIMEOUT) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedCluster]:
    c = make_cluster(tmp_path_factory.mktemp("metrics"), policy=POLICIES / "unequal-trust.yaml",
                     peers=("ec2_node",), config_extra={"metrics": f"{HOST}:0"})
    with c:
        yield c


def test_counters_move_with_traffic(cluster: SeedCluster) -> None:
    trusted, ec2 = cluster.trusted, cluster.peer_nodes["ec2_node"]
    assert isinstance(trusted, ErlNode)
    before = scrape(cluster)
    assert value(before, "distproxy_handshake_failures_total", reason="unknown_node") == 0
    for _ in range(20):
        assert trusted.eval(f"rpc:call('{EC2}', erlang, node, []).") == Atom(EC2)
    # The peer may not command the trusted node (unequal-trust): a counted, non-accept verdict.
    assert ec2.eval(f"rpc:call({TRUSTED}, os, cmd, [\"id\"], 5000).") == (Atom("badrpc"), Atom("notsup"))
    after = scrape(cluster)

    assert total(after, "distproxy_connections_total", peer=EC2) >= 1
    assert value(after, "distproxy_connections_open", peer=EC2) >= 1
    sent = total(after, "distproxy_frames_total", peer=EC2, direction="to_peer", verdict="accept") - \
        total(before, "distproxy_frames_total", peer=EC2, direction="to_peer", verdict="accept")
    assert sent >= 20  # at least one request frame per rpc
    refused = [ls for (n, ls), v in after.items() if n == "distproxy_frames_total" and v > 0
               and dict(ls)["direction"] == "from_peer" and dict(ls)["verdict"] != "accept"]
    assert refused, "the refused rpc should be counted under a non-accept verdict"
    for name in ("distproxy_bytes_received_total", "distproxy_bytes_forwarded_total"):
        for direction in ("to_peer", "from_peer"):
            assert total(after, name, peer=EC2, direction=direction) > total(before, name, peer=EC2,
                                                                               direction=direction)
    # Decision latency is sampled per pump every 0.25 s: keep calling until a sample lands.
    deadline = time.monotonic() + SAMPLE_WAIT
    while total(scrape(cluster), "distproxy_decision_seconds_count", direction="to_peer") < 1:
        assert time.monotonic() < deadline, "no decision latency sample"
        trusted.eval(f"rpc:call('{EC2}', erlang, node, []).")


def test_handshake_failures_are_counted_by_category(cluster: SeedCluster, tmp_path: Path) -> None:
    before = scrape(cluster)
    stranger = ErlNode(f"stranger@{HOST}", cookie="whatever", epmd_port=cluster.front_epmd_port,
                       log_dir=tmp_path).start()
    try:
        assert stranger.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
    finally:
        stranger.stop()
    after = scrape(cluster)
    assert value(after, "distproxy_handshake_failures_total", reason="unknown_node") == \
        value(before, "distproxy_handshake_failures_total", reason="unknown_node") + 1
    # The label set is fixed: every category is exported, nothing else.
    reasons = {dict(ls)["reason"] for n, ls in after if n == "distproxy_handshake_failures_total"}
    from distproxy.proxy.metrics import FAILURE_CATEGORIES
    assert reasons == set(FAILURE_CATEGORIES)


def _wait_for_log(cluster: SeedCluster, text: str, since: int) -> None:
    assert cluster.proxy is not None
    deadline = time.monotonic() + REREGISTER_WAIT
    while text not in cluster.proxy.log_text()[since:]:
        assert time.monotonic() < deadline, f"no {text!r} in the distproxy log"
        time.sleep(0.05)


def test_cookie_rotation_as_documented(tmp_path: Path) -> None:
    """docs/DEPLOYMENT.md section 2: set the new cookie on the peer for T only, swap the
    file, restart distproxy; the nodes re-register and reconnect, no bad_cookie."""
    cluster = make_cluster(tmp_path, peers=("ec2_node",), config_extra={"metrics": f"{HOST}:0"})
    with cluster:
        trusted, ec2 = cluster.trusted, cluster.peer_nodes["ec2_node"]
        assert trusted is not None and cluster.proxy is not None
        assert ec2.eval(f"net_adm:ping({TRUSTED}).") == Atom("pong")
        new = "rotated-ec2-cookie"
        ec2.eval(f"erlang:set_cookie({TRUSTED}, '{new}'), ok.")
        cookie_file = cluster.workdir / "ec2_node.cookie"
        cookie_file.write_text(new)
        cookie_file.chmod(0o600)
        since = len(cluster.proxy.log_text())
        cluster.proxy.stop()
        cluster.start_proxy()
        # Both nodes register again in distproxy's EPMDs by themselves (OTP's erl_epmd).
        _wait_for_log(cluster, "my_desktop registered", since)
        _wait_for_log(cluster, "ec2_node registered", since)
        assert ec2.eval(f"net_adm:ping({TRUSTED}).") == Atom("pong")
        trusted.eval(f"erlang:disconnect_node('{EC2}'), ok.")
        assert trusted.eval(f"rpc:call('{EC2}', erlang, node, []).") == Atom(EC2)
        assert value(scrape(cluster), "distproxy_handshake_failures_total", reason="bad_cookie") == 0
        # The wrong order (distproxy rotated, the peer not): its dials fail as bad_cookie.
        ec2.eval(f"erlang:set_cookie({TRUSTED}, '{cluster.peer_cookie('ec2_node')}'), ok.")
        ec2.eval(f"erlang:disconnect_node({TRUSTED}), ok.")
        assert ec2.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
        assert value(scrape(cluster), "distproxy_handshake_failures_total", reason="bad_cookie") == 1
