"""TLS on the untrusted leg, with real OTP nodes running ``-proto_dist inet_tls``.

The trusted node speaks plain TCP on loopback; ec2_node's certificate is signed by the
peers' CA and bound to its node name (CN); bob_colo is pinned to a self-signed
certificate; carol_plain has no TLS, and shares the front port with the TLS peers.
Impostors pose as bob_colo (which is started only by the test that needs it).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from distproxy.config import ConfigError, load_config
from distproxy.term import Atom
from distproxy.testing.cluster import HOST, PeerSpec, SeedCluster
from distproxy.testing.erlnode import ErlNode

from .certs import Authority, Issued, issue, make_ca, tls_dist_args, write_ssl_dist_optfile
from .conftest import ALLOW_ALL

pytestmark = pytest.mark.erlang

TRUSTED = f"'my_desktop@{HOST}'"
EC2 = f"ec2_node@{HOST}"
BOB = f"bob_colo@{HOST}"
CAROL = f"carol_plain@{HOST}"
LOG_WAIT = 10.0  # seconds to wait for distproxy's log line about a refusal
LOG_POLL = 0.05


@dataclass
class Pki:
    directory: Path
    proxy_ca: Authority  # signs distproxy's certificate; every TLS peer trusts it
    peers_ca: Authority  # signs ec2_node's certificate
    rogue_ca: Authority  # trusted by nobody
    proxy: Issued
    ec2: Issued
    bob: Issued  # self-signed, pinned

    def optfile(self, name: str, own: Issued | None, trusts: Path | None = None) -> Path:
        """An ssl_dist_optfile presenting ``own`` (None: a client without a certificate)."""
        path = self.directory / f"{name}.optfile"
        if own is None:
            trust = trusts or self.proxy_ca.pem
            path.write_text(f'[{{server, [{{cacertfile, "{trust}"}}]}},\n'
                            f' {{client, [{{cacertfile, "{trust}"}}, {{verify, verify_peer}},'
                            f' {{server_name_indication, disable}}]}}].\n')
            return path
        return write_ssl_dist_optfile(path, own, trusts or self.proxy_ca.pem)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    proxy_ca, peers_ca, rogue_ca = make_ca(d, "proxy-ca"), make_ca(d, "peers-ca"), make_ca(d, "rogue-ca")
    return Pki(d, proxy_ca, peers_ca, rogue_ca,
               proxy=issue(d, f"my_desktop@{HOST}", proxy_ca),
               ec2=issue(d, EC2, peers_ca),
               bob=issue(d, BOB, None, file_stem="bob-self-signed"))


@pytest.fixture(scope="module")
def cluster(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedCluster]:
    peers = [
        PeerSpec("ec2_node", ALLOW_ALL, config_extra={"tls": {"ca": str(pki.peers_ca.pem)}},
                 node_args=tls_dist_args(pki.optfile("ec2", pki.ec2))),
        PeerSpec("bob_colo", ALLOW_ALL, config_extra={"tls": {"pin_sha256": pki.bob.sha256}},
                 node_args=tls_dist_args(pki.optfile("bob", pki.bob))),
        PeerSpec("carol_plain", ALLOW_ALL),
    ]
    c = SeedCluster(tmp_path_factory.mktemp("tls"), peers,
                    config_extra={"tls": {"cert": str(pki.proxy.cert), "key": str(pki.proxy.key)},
                                  "metrics": f"{HOST}:0"})
    c.start(start_peers=("ec2_node", "carol_plain"))
    try:
        yield c
    finally:
        c.stop()


def wait_for_log(cluster: SeedCluster, text: str, since: int = 0) -> str:
    """The first distproxy log line (after offset ``since``) containing ``text``."""
    assert cluster.proxy is not None
    deadline = time.monotonic() + LOG_WAIT
    while True:
        for line in cluster.proxy.log_text()[since:].splitlines():
            if text in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {text!r}:\n{cluster.proxy.log_text()[since:]}")
        time.sleep(LOG_POLL)


def log_offset(cluster: SeedCluster) -> int:
    assert cluster.proxy is not None
    return len(cluster.proxy.log_text())


def impostor(cluster: SeedCluster, optfile: Path | None) -> ErlNode:
    """A node named bob_colo with the given TLS options (None: plain TCP)."""
    args = tls_dist_args(optfile) if optfile is not None else []
    return cluster.peer_node("bob_colo", extra_args=args).start()


def test_tls_peer_pings_and_calls_the_trusted_node(cluster: SeedCluster) -> None:
    ec2 = cluster.peer_nodes["ec2_node"]
    assert ec2.eval(f"net_adm:ping({TRUSTED}).") == Atom("pong")
    assert ec2.eval(f"rpc:call({TRUSTED}, erlang, node, []).") == Atom(f"my_desktop@{HOST}")
    # The peer's side really is TLS (OTP's own view), and distproxy bound it by certificate.
    assert ec2.eval("init:get_argument(proto_dist).") == (Atom("ok"), [[list(b"inet_tls")]])
    assert "identifies ec2_node@127.0.0.1" in wait_for_log(cluster, "certificate CN=ec2_node@127.0.0.1")


def test_trusted_node_dials_tls_peers(cluster: SeedCluster) -> None:
    trusted = cluster.trusted
    assert trusted is not None
    trusted.eval(f"erlang:disconnect_node('{EC2}'), ok.")
    assert trusted.eval(f"rpc:call('{EC2}', erlang, node, []).") == Atom(EC2)  # CA-verified, name-bound
    bob = cluster.peer_node("bob_colo").start()  # pinned self-signed certificate
    try:
        assert trusted.eval(f"rpc:call('{BOB}', lists, reverse, [[1,2,3]]).") == [3, 2, 1]
        assert bob.eval(f"net_adm:ping({TRUSTED}).") == Atom("pong")
    finally:
        bob.stop()


def test_plain_peer_shares_the_port_with_tls_peers(cluster: SeedCluster) -> None:
    carol = cluster.peer_nodes["carol_plain"]
    assert carol.eval(f"rpc:call({TRUSTED}, erlang, node, []).") == Atom(f"my_desktop@{HOST}")


def test_missing_client_certificate_is_refused(cluster: SeedCluster, pki: Pki) -> None:
    since = log_offset(cluster)
    before = handshake_failures(cluster)
    node = impostor(cluster, pki.optfile("no-cert", None))
    try:
        assert node.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
    finally:
        node.stop()
    line = wait_for_log(cluster, "TLS handshake failed", since)
    assert "certificate" in line
    assert handshake_failures(cluster)["tls"] >= before["tls"] + 1
    assert Atom(BOB) not in cluster.trusted.eval("nodes(connected).")  # type: ignore[union-attr]


def test_certificate_from_an_untrusted_ca_is_refused(cluster: SeedCluster, pki: Pki) -> None:
    since = log_offset(cluster)
    forged = issue(pki.directory, BOB, pki.rogue_ca, file_stem="bob-forged")
    node = impostor(cluster, pki.optfile("forged", forged))
    try:
        assert node.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
    finally:
        node.stop()
    line = wait_for_log(cluster, "TLS handshake failed", since)
    assert "CN=bob_colo@127.0.0.1" in line and "issuer not trusted" in line


def test_one_peers_certificate_cannot_open_another_peers_leg(cluster: SeedCluster, pki: Pki) -> None:
    since = log_offset(cluster)
    node = impostor(cluster, pki.optfile("bob-with-ec2-cert", pki.ec2))
    trusted = cluster.trusted
    assert trusted is not None
    try:
        # As the dialler: the certificate verifies (it is ec2_node's), the claim does not.
        assert node.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
        line = wait_for_log(cluster, "refused bob_colo@127.0.0.1", since)
        assert "identifies ec2_node@127.0.0.1, but its send_name claims bob_colo@127.0.0.1" in line
        # As the dialled node: distproxy checks bob_colo's pin in the TLS handshake.
        assert trusted.eval(f"net_adm:ping('{BOB}').") == Atom("pang")
        line = wait_for_log(cluster, "server certificate of bob_colo@127.0.0.1 refused", since)
        assert "not a pinned certificate" in line
    finally:
        node.stop()


def test_certificate_of_the_right_ca_with_a_wrong_name_is_refused(cluster: SeedCluster, pki: Pki) -> None:
    since = log_offset(cluster)
    before = handshake_failures(cluster)
    mallory = issue(pki.directory, f"mallory@{HOST}", pki.peers_ca)  # ec2_node's CA, not its name
    node = impostor(cluster, pki.optfile("mallory", mallory))
    try:
        assert node.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
    finally:
        node.stop()
    why = wait_for_log(cluster, "identifies no node allowed here:", since)
    assert "CN=mallory@127.0.0.1" in why and "none of which is ec2_node@127.0.0.1's" in why
    assert "but its send_name claims bob_colo@127.0.0.1" in wait_for_log(cluster, "refused bob_colo", since)
    after = handshake_failures(cluster)
    assert after["identity"] >= before["identity"] + 1  # a bounded reason label, in the metrics


def handshake_failures(cluster: SeedCluster) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    assert cluster.proxy is not None
    url = f"http://{HOST}:{cluster.proxy.ready['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=LOG_WAIT) as response:
        text = response.read().decode()
    return {s.labels["reason"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "distproxy_handshake_failures_total"}


def test_plain_tcp_cannot_claim_a_tls_peer(cluster: SeedCluster) -> None:
    since = log_offset(cluster)
    node = impostor(cluster, None)
    try:
        assert node.eval(f"net_adm:ping({TRUSTED}).") == Atom("pang")
    finally:
        node.stop()
    assert "must connect over TLS" in wait_for_log(cluster, "refused bob_colo@127.0.0.1", since)


# -- configuration errors -----------------------------------------------------------------

def _config(tmp_path: Path, pki: Pki, peer_tls: str, top_tls: bool = True) -> Path:
    (tmp_path / "t.cookie").write_text("trusted-cookie")
    (tmp_path / "p.cookie").write_text("peer-cookie")
    for name in ("t.cookie", "p.cookie"):
        (tmp_path / name).chmod(0o600)
    top = f"tls: {{cert: {pki.proxy.cert}, key: {pki.proxy.key}}}\n" if top_tls else ""
    text = (f"trusted: {{name: my_desktop@{HOST}, cookie_file: t.cookie}}\n"
            f"front_epmd: {{serve: {HOST}:14369}}\nback_epmd: {{serve: {HOST}:14370}}\n{top}"
            f"peers:\n  - name: {EC2}\n    cookie_file: p.cookie\n    policy: {ALLOW_ALL}\n"
            f"    tls: {peer_tls}\n")
    path = tmp_path / "distproxy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("peer_tls", "top_tls", "key", "cause"), [
    ("{}", True, "peers[0].tls", "give ca: FILE, pin_sha256"),
    ("{pin_sha256: abc}", True, "peers[0].tls.pin_sha256", "64 hex digits"),
    ("{ca: nowhere.pem}", True, "peers[0].tls.ca", "cannot read"),
    ("{cafile: x}", True, "peers[0].tls.cafile", "unknown key"),
    ("{pin_sha256: PIN}", False, "peers[0].tls", "top-level tls.cert"),
])
def test_config_errors_name_the_key(tmp_path: Path, pki: Pki, peer_tls: str, top_tls: bool, key: str,
                                    cause: str) -> None:
    path = _config(tmp_path, pki, peer_tls.replace("PIN", pki.bob.sha256), top_tls)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f":{key}:" in str(info.value).replace(" ", "") or key in str(info.value)
    assert cause in str(info.value)


def test_config_loads_tls_keys(tmp_path: Path, pki: Pki) -> None:
    pin = ":".join(pki.bob.sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    config = load_config(_config(tmp_path, pki, f"{{ca: {pki.peers_ca.pem}, pin_sha256: ['{pin}']}}"))
    peer_tls = config.peers[0].tls
    assert peer_tls is not None and peer_tls.pins == {pki.bob.sha256} and peer_tls.names == (EC2,)
    assert config.tls is not None and config.tls.cert == pki.proxy.cert


def test_tls_to_the_trusted_node_too(pki: Pki, tmp_path: Path) -> None:
    """trusted.tls: the trusted node runs inet_tls as well; distproxy dials it over TLS and
    its back listeners accept TLS (from the trusted node's certificate) only."""
    desk = issue(pki.directory, f"my_desktop@{HOST}", pki.peers_ca, file_stem="desk")
    peers = [PeerSpec("ec2_node", ALLOW_ALL, config_extra={"tls": {"ca": str(pki.peers_ca.pem)}},
                      node_args=tls_dist_args(pki.optfile("ec2-2", pki.ec2)))]
    cluster = SeedCluster(tmp_path, peers, trusted_args=tls_dist_args(pki.optfile("desk", desk)),
                          config_extra={"tls": {"cert": str(pki.proxy.cert), "key": str(pki.proxy.key)},
                                        "trusted": {"name": f"my_desktop@{HOST}", "cookie_file": "my_desktop.cookie",
                                                    "tls": {"ca": str(pki.peers_ca.pem)}}})
    with cluster:
        trusted, ec2 = cluster.trusted, cluster.peer_nodes["ec2_node"]
        assert trusted is not None
        assert trusted.eval(f"rpc:call('{EC2}', erlang, node, []).") == Atom(EC2)
        # Disconnect on the side that dials next, so it cannot race its own nodedown.
        ec2.eval(f"erlang:disconnect_node({TRUSTED}), ok.")
        assert ec2.eval(f"rpc:call({TRUSTED}, erlang, node, []).") == Atom(f"my_desktop@{HOST}")
        # The trusted node's dial arrived over TLS on ec2_node's back listener, bound to its name.
        line = wait_for_log(cluster, "certificate CN=my_desktop@127.0.0.1")
        assert f"as {EC2} from" in line and "identifies my_desktop@127.0.0.1" in line


# -- the handshake reframing, without sockets -----------------------------------------------

def _msg(body: bytes, width: int) -> bytes:
    return len(body).to_bytes(width, "big") + body


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_reframing_converts_until_the_last_handshake_message(chunk: int) -> None:
    from distproxy.proxy.tls import LAST_FROM_DIALLER, _Framing

    name, reply, data = b"N" + bytes(14) + b"a@b", b"r" + bytes(20), _msg(b"p" + bytes(7), 4)
    stream = _msg(name, 4) + _msg(reply, 4) + data + _msg(b"", 4)  # after 'r': data phase, a tick
    framing = _Framing(4, 2, LAST_FROM_DIALLER, sniff=True)
    out = b"".join(framing.convert(stream[i:i + chunk]) for i in range(0, len(stream), chunk))
    assert out == _msg(name, 2) + _msg(reply, 2) + data + _msg(b"", 4)
    assert framing.done and not framing.passthrough


def test_reframing_passes_a_tcp_framed_dialler_through() -> None:
    from distproxy.proxy.tls import LAST_FROM_DIALLER, _Framing

    stream = _msg(b"N" + bytes(14) + b"a@b", 2) + _msg(b"r" + bytes(20), 2)
    framing = _Framing(4, 2, LAST_FROM_DIALLER, sniff=True)
    assert framing.convert(stream[:1]) + framing.convert(stream[1:]) == stream
    assert framing.passthrough


def test_config_refuses_a_name_that_would_identify_two_peers(tmp_path: Path, pki: Pki) -> None:
    path = _config(tmp_path, pki, f"{{ca: {pki.peers_ca.pem}, names: [shared.example]}}")
    text = path.read_text() + (f"  - name: bob_colo@{HOST}\n    cookie_file: p2.cookie\n    policy: {ALLOW_ALL}\n"
                               f"    tls: {{ca: {pki.peers_ca.pem}, names: [shared.example]}}\n")
    (tmp_path / "p2.cookie").write_text("peer-two-cookie")
    (tmp_path / "p2.cookie").chmod(0o600)
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "peers[1].tls" in str(info.value)
    assert "name 'shared.example' already identifies ec2_node@127.0.0.1" in str(info.value)
