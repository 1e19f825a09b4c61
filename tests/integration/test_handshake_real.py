"""Handshakes against a real distproxy and real nodes: refusals, garbage, split cookies.

Every refusal must be logged with its reason, and distproxy must keep serving the
other peers afterwards.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distproxy.dist import flags as dflags
from distproxy.dist.handshake import ChallengeReceived, InitiatorHandshake, StatusReceived
from distproxy.dist.handshake_messages import encode_name
from distproxy.term import Atom
from distproxy.testing.cluster import SeedCluster
from distproxy.testing.erlnode import ErlNode
from distproxy.testing.waiting import wait_for_log

from .conftest import make_cluster

pytestmark = pytest.mark.erlang

TRUSTED = "my_desktop@127.0.0.1"
SOCKET_TIMEOUT = 15.0
OTP_FLAGS = 0xD07DF7FBD  # what a visible OTP 25 node offers


def q(name: str) -> str:
    return f"'{name}'"


@pytest.fixture(scope="module")
def partial_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedCluster]:
    """distproxy, the trusted node and bob_colo; ec2_node's slot is free for impostors."""
    cluster = make_cluster(tmp_path_factory.mktemp("handshake"))
    cluster.start(start_peers=["bob_colo"])
    try:
        yield cluster
    finally:
        cluster.stop()


def still_serving(cluster: SeedCluster) -> None:
    bob = cluster.peer_nodes["bob_colo"]
    bob.eval(f"erlang:disconnect_node({q(TRUSTED)}), ok.")
    assert bob.eval(f"net_adm:ping({q(TRUSTED)}).") == Atom("pong")


def impostor(cluster: SeedCluster, alive: str, cookie: str) -> ErlNode:
    return cluster.peer_node(alive, cookie=cookie) if alive in {p.alive for p in cluster.peers} else ErlNode(
        name=f"{alive}@127.0.0.1", cookie=cookie, epmd_port=cluster.front_epmd_port,
        log_dir=cluster.workdir / "nodes")


def test_wrong_cookie_on_the_peer_leg_is_refused_and_logged(partial_cluster: SeedCluster) -> None:
    with impostor(partial_cluster, "ec2_node", "not-the-ec2-cookie") as node:
        assert node.eval(f"net_adm:ping({q(TRUSTED)}).") == Atom("pang")
    line = wait_for_log(partial_cluster, "wrong cookie from ec2_node@127.0.0.1")
    assert "handshake failed" in line
    still_serving(partial_cluster)


def test_unknown_node_name_is_refused_and_logged(partial_cluster: SeedCluster) -> None:
    with impostor(partial_cluster, "mallory", partial_cluster.peer_cookie("ec2_node")) as node:
        assert node.eval(f"net_adm:ping({q(TRUSTED)}).") == Atom("pang")
    wait_for_log(partial_cluster, "unknown node mallory@127.0.0.1")
    # The trusted node never saw the name (it would have cost it an atom).
    assert partial_cluster.trusted is not None
    assert partial_cluster.trusted.eval("catch list_to_existing_atom(\"mallory@127.0.0.1\").")[0] == Atom("EXIT")
    still_serving(partial_cluster)


def test_the_peer_cookie_cannot_open_a_direct_connection_to_the_trusted_node(partial_cluster: SeedCluster) -> None:
    # A node holding ec2_node's cookie that bypasses distproxy (it looks the trusted
    # node up in the trusted node's own EPMD) is refused by the trusted node itself.
    direct = ErlNode(name="ec2_direct@127.0.0.1", cookie=partial_cluster.peer_cookie("ec2_node"),
                     epmd_port=partial_cluster.back_epmd_port, log_dir=partial_cluster.workdir / "nodes")
    with direct:
        assert direct.eval(f"net_adm:ping({q(TRUSTED)}).") == Atom("pang")


# -- raw clients: what a hostile or broken peer can send ---------------------------------
def front_port(cluster: SeedCluster) -> int:
    assert cluster.proxy is not None
    return int(cluster.proxy.ready["listen"])


def recv_until_closed(sock: socket.socket, timeout: float = SOCKET_TIMEOUT) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def packet2(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def send_name_packet(name: str, flags: int = OTP_FLAGS, creation: int = 1234) -> bytes:
    return packet2(encode_name(flags, creation, name.encode()))


def test_name_me_is_refused(partial_cluster: SeedCluster) -> None:
    with socket.create_connection(("127.0.0.1", front_port(partial_cluster)), timeout=SOCKET_TIMEOUT) as sock:
        flags = (OTP_FLAGS | dflags.DFlag.NAME_ME) & ~dflags.DFlag.PUBLISHED
        sock.sendall(send_name_packet("ec2_node@127.0.0.1", flags, creation=0))
        reply = recv_until_closed(sock)
    assert reply == packet2(b"snot_allowed")
    wait_for_log(partial_cluster, "NAME_ME")
    still_serving(partial_cluster)


GARBAGE_CASES = {
    "garbage-first-message": b"\x00\x05hello",
    "http-request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-node-name": send_name_packet("no-at-sign"),
    "truncated-send-name": packet2(b"N\x00\x00"),
    "length-beyond-body": b"\xff\xff" + b"N" * 10,
}


@pytest.mark.parametrize("payload", list(GARBAGE_CASES.values()), ids=list(GARBAGE_CASES))
def test_garbage_before_the_name_closes_only_that_connection(partial_cluster: SeedCluster, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", front_port(partial_cluster)), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # nothing more comes: the rest is distproxy's answer
        reply = recv_until_closed(sock)
    assert b"sok" not in reply and not reply.startswith(b"\x00\x1eN")
    still_serving(partial_cluster)


def handshake_until_challenge(sock: socket.socket, cookie: bytes) -> tuple[InitiatorHandshake, ChallengeReceived]:
    hs = InitiatorHandshake(TRUSTED)
    sock.sendall(hs.send_name(OTP_FLAGS, 4242, "ec2_node@127.0.0.1"))
    sock.settimeout(SOCKET_TIMEOUT)
    events: list[object] = []
    while not any(isinstance(e, ChallengeReceived) for e in events):
        chunk = sock.recv(65536)
        assert chunk, f"closed before the challenge; events {events}"
        events += hs.receive_data(chunk)
    assert StatusReceived("ok") in events
    challenge = next(e for e in events if isinstance(e, ChallengeReceived))
    return hs, challenge


@pytest.mark.parametrize("reply", [b"r" + b"\x00" * 3, b"x" * 21, b"r" + b"\x00" * 20, b"r" + b"\x01" * 40],
                         ids=["short-reply", "wrong-tag", "zero-digest", "long-reply"])
def test_garbage_instead_of_the_challenge_reply(partial_cluster: SeedCluster, reply: bytes) -> None:
    with socket.create_connection(("127.0.0.1", front_port(partial_cluster)), timeout=SOCKET_TIMEOUT) as sock:
        handshake_until_challenge(sock, partial_cluster.peer_cookie("ec2_node").encode())
        sock.sendall(packet2(reply))
        rest = recv_until_closed(sock)
    assert not rest.startswith(b"\x00\x11a"), "distproxy must not acknowledge a bad reply"
    still_serving(partial_cluster)


def test_silent_client_is_dropped_at_the_handshake_deadline(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, config_extra={"handshake_timeout": 1.0})
    cluster.write_config()
    cluster.start_proxy()
    try:
        with socket.create_connection(("127.0.0.1", front_port(cluster)), timeout=SOCKET_TIMEOUT) as sock:
            started = time.monotonic()
            assert recv_until_closed(sock) == b""
            assert time.monotonic() - started < 5
        wait_for_log(cluster, "timeout")
    finally:
        cluster.stop()


def test_the_trusted_cookie_never_reaches_the_peer_leg(partial_cluster: SeedCluster) -> None:
    """Complete a handshake as ec2_node with ec2_node's cookie and keep every byte
    distproxy sent: none is the trusted cookie or a digest made from it."""
    peer_cookie = partial_cluster.peer_cookie("ec2_node").encode()
    trusted_cookie = partial_cluster.trusted_cookie.encode()
    received = b""
    with socket.create_connection(("127.0.0.1", front_port(partial_cluster)), timeout=SOCKET_TIMEOUT) as sock:
        hs, challenge = handshake_until_challenge(sock, peer_cookie)
        reply = hs.send_reply(peer_cookie)
        sock.sendall(reply)
        our_challenge = struct.unpack(">I", reply[3:7])[0]
        events: list[object] = []
        while hs.state.name != "DONE":
            chunk = sock.recv(65536)
            assert chunk, "closed before the ack"
            received += chunk
            events += hs.receive_data(chunk)  # verifies the ack with the peer cookie
        sock.settimeout(2.0)
        try:
            while len(received) < 1 << 20:  # whatever the trusted node sends first
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
    assert trusted_cookie not in received
    for ch in (our_challenge, challenge.challenge):
        assert hashlib.md5(trusted_cookie + str(ch).encode()).digest() not in received
    assert hashlib.md5(peer_cookie + str(our_challenge).encode()).digest() in received
    still_serving(partial_cluster)


def test_wrong_cookie_on_the_trusted_leg_is_refused_and_logged(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path)
    cluster.write_config()
    cluster.start_proxy()
    try:
        # The trusted node runs with a cookie other than the one distproxy was given.
        cluster.trusted = cluster.trusted_node(cookie="someone-changed-it").start()
        peer = cluster.peer_nodes["ec2_node"] = cluster.peer_node("ec2_node").start()
        assert peer.eval(f"net_adm:ping({q(TRUSTED)}).") == Atom("pang")
        line = wait_for_log(cluster, "wrong upstream cookie?")
        assert "upstream my_desktop@127.0.0.1 lost" in line
    finally:
        cluster.stop()


# -- after the handshake: bad frames close that pair only ---------------------------------
def connected_raw_peer(cluster: SeedCluster) -> socket.socket:
    """A socket that completed a real handshake with distproxy as ec2_node."""
    cookie = cluster.peer_cookie("ec2_node").encode()
    sock = socket.create_connection(("127.0.0.1", front_port(cluster)), timeout=SOCKET_TIMEOUT)
    hs, _ = handshake_until_challenge(sock, cookie)
    sock.sendall(hs.send_reply(cookie))
    while hs.state.name != "DONE":
        chunk = sock.recv(65536)
        assert chunk, "closed before the ack"
        hs.receive_data(chunk)
    return sock


def drain_until_closed(sock: socket.socket, timeout: float = SOCKET_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return
        except socket.timeout:
            continue
        except ConnectionResetError:
            return
    raise AssertionError("distproxy did not close the connection")


@pytest.mark.parametrize("frame, reason", [
    (b"\x80\x00\x00\x00", "exceeds maximum"),  # a 2 GiB length prefix: refused from 4 bytes
    (struct.pack(">I", 5) + b"p\x83a\x01\x00", "not a non-empty tuple"),  # 'p' + an integer
    (struct.pack(">I", 4) + b"x\x83a\x06", "'p'"),  # not a pass-through frame
    (struct.pack(">I", 5) + b"p\x83h\x01a", "control"),  # a tuple cut short
], ids=["2GiB-length", "trailing-junk", "not-pass-through", "truncated-tuple"])
def test_a_bad_frame_closes_only_that_pair_with_a_logged_reason(partial_cluster: SeedCluster, frame: bytes,
                                                                 reason: str) -> None:
    sock = connected_raw_peer(partial_cluster)
    with sock:
        sock.sendall(frame)
        drain_until_closed(sock)
    line = wait_for_log(partial_cluster, reason)
    assert "closing: from_peer:" in line
    still_serving(partial_cluster)
    assert partial_cluster.trusted is not None and partial_cluster.trusted.eval("ok.") == Atom("ok")


def test_a_reader_that_stops_reading_pauses_the_sender_and_memory_stays_bounded(partial_cluster: SeedCluster) -> None:
    """Back-pressure: a peer that never reads makes distproxy stop reading the trusted
    node's leg, instead of buffering everything the trusted node sends."""
    assert partial_cluster.proxy is not None and partial_cluster.proxy.process is not None
    pid = partial_cluster.proxy.process.pid
    trusted = partial_cluster.trusted
    assert trusted is not None
    sock = connected_raw_peer(partial_cluster)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        before = _rss(pid)
        # 256 MiB in 1 MiB messages to a name on the silent peer, from a background process.
        trusted.eval("Pid = spawn(fun() -> B = binary:copy(<<7>>, 1048576),"
                     " [erlang:send({sink, 'ec2_node@127.0.0.1'}, B, [noconnect]) || _ <- lists:seq(1, 256)],"
                     " exit(done) end), register(flooder, Pid), ok.")
        # The flooder blocks on the busy distribution port: it is still sending.
        assert trusted.eval("timer:sleep(2000), is_process_alive(whereis(flooder)).") == Atom("true")
        assert _rss(pid) - before < 64 * 1024 * 1024
        assert trusted.eval("erlang:process_info(whereis(flooder), status).")[1] in (Atom("suspended"), Atom("runnable"), Atom("running"), Atom("waiting"))
    trusted.eval("catch exit(whereis(flooder), kill), ok.")
    still_serving(partial_cluster)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
