"""epmd.py: byte vectors from the protocol doc, registry, server connection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distproxy.dist.epmd import (
    Alive2Request, Alive2Response, Close, EpmdError, EpmdRegistry, EpmdServerConnection,
    NamesRequest, NodeEntry, Port2Response, PortPlease2Request, Registered, Reply,
    UnsupportedRequest, encode_alive2_req, encode_alive2_resp, encode_names_req,
    encode_names_resp, encode_port2_error, encode_port2_resp, encode_port_please2_req,
    parse_alive2_resp, parse_names_resp, parse_port2_resp, parse_request,
)

PORT2_A = bytes([119, 0, 178, 127, 77, 0, 0, 6, 0, 5, 0, 1, 97, 0, 0])


def test_port2_vector():
    r = parse_port2_resp(PORT2_A)
    assert r == Port2Response(0, NodeEntry("a", 45695, 77, 0, 6, 5, b"", 0))
    assert encode_port2_resp(r.entry) == PORT2_A
    for i in range(2, len(PORT2_A)):
        assert parse_port2_resp(PORT2_A[:i]) is None
    assert parse_port2_resp(b"\x77") is None
    assert parse_port2_resp(bytes([119, 1])) == Port2Response(1, None)
    assert encode_port2_error() == bytes([119, 1])
    with pytest.raises(EpmdError):
        parse_port2_resp(b"xx")


def test_alive2_vectors():
    assert parse_alive2_resp(bytes([121, 0, 0, 2])) == Alive2Response(0, 2)
    assert parse_alive2_resp(bytes([118, 1, 0, 0, 0, 99])) == Alive2Response(1, 99)
    assert not parse_alive2_resp(bytes([118, 1, 0, 0, 0, 99])).ok
    assert parse_alive2_resp(bytes([118, 0, 0])) is None
    assert encode_alive2_resp(0, 1796334539, 6) == bytes([118, 0]) + (1796334539).to_bytes(4, "big")
    assert encode_alive2_resp(0, 2, 5) == bytes([121, 0, 0, 2])
    with pytest.raises(EpmdError):
        parse_alive2_resp(b"\x00\x00\x00\x00")


def test_alive2_req_roundtrip():
    wire = encode_alive2_req("a", 45695)
    # what erl_epmd 25.2.3 sends for node a on port 45695
    assert wire == bytes([0, 14, 120, 178, 127, 77, 0, 0, 6, 0, 5, 0, 1, 97, 0, 0])
    assert parse_request(wire[2:]) == Alive2Request("a", 45695, 77, 0, 6, 5, b"")


def test_requests():
    assert parse_request(encode_port_please2_req("ec2_node")[2:]) == PortPlease2Request(b"ec2_node")
    assert parse_request(encode_names_req()[2:]) == NamesRequest()
    assert parse_request(b"d") == UnsupportedRequest(100)
    for bad in (b"", b"x\x00", bytes([120, 0, 1, 77, 0, 0, 6, 0, 5, 0, 9, 97, 0, 0]),
                encode_alive2_req("a", 1)[2:] + b"\x00", encode_alive2_req("a@b", 1)[2:], b"nn"):
        with pytest.raises(EpmdError):
            parse_request(bad)


def test_names_resp():
    reg = EpmdRegistry(first_creation=5)
    reg.register("a", 45695)
    reg.register("b", 1234)
    data = encode_names_resp(4369, reg.names())
    assert data == b"\x00\x00\x11\x11name a at port 45695\nname b at port 1234\n"
    assert parse_names_resp(data) == (4369, [("a", 45695), ("b", 1234)])
    with pytest.raises(EpmdError):
        parse_names_resp(b"\x00\x00\x11\x11junk\n")


def test_registry_creations():
    reg = EpmdRegistry(first_creation=0xFFFFFFFF)
    c1 = reg.register("a", 1)
    assert c1 == 0xFFFFFFFF
    assert reg.register("a", 2) is None
    reg.unregister("a")
    c2 = reg.register("a", 3)
    assert c2 not in (0, c1)
    assert reg.lookup("a").port == 3 and "a" in reg and len(reg) == 1
    old = reg.register("old", 4, highest=5)
    assert 0 < old <= 0xFFFF


def test_server_alive2_and_lost():
    reg = EpmdRegistry(first_creation=100)
    conn = EpmdServerConnection(reg)
    wire = encode_alive2_req("t", 9000)
    assert conn.receive_data(wire[:3]) == []
    evs = conn.receive_data(wire[3:])
    assert evs[0] == Reply(bytes([118, 0, 0, 0, 0, 100]))
    assert isinstance(evs[1], Registered) and evs[1].entry.port == 9000
    assert conn.receive_data(b"more") == []
    # a second registration of the same name fails and closes
    c2 = EpmdServerConnection(reg)
    evs = c2.receive_data(encode_alive2_req("t", 9001))
    assert evs[0] == Reply(bytes([118, 1, 0, 0, 0, 0])) and isinstance(evs[1], Close)
    assert c2.connection_lost() is None and "t" in reg
    # lookups
    c3 = EpmdServerConnection(reg)
    evs = c3.receive_data(encode_port_please2_req("t"))
    assert parse_port2_resp(evs[0].data).entry.port == 9000 and isinstance(evs[1], Close)
    for name in ("nobody", "bad name"):
        evs = EpmdServerConnection(reg).receive_data(encode_port_please2_req(name))
        assert evs[0] == Reply(bytes([119, 1]))
    evs = EpmdServerConnection(reg, epmd_port=4369).receive_data(encode_names_req())
    assert parse_names_resp(evs[0].data) == (4369, [("t", 9000)])
    # closing the registration socket unregisters
    assert conn.connection_lost().name == "t"
    assert "t" not in reg


def test_server_refusals():
    reg = EpmdRegistry()
    evs = EpmdServerConnection(reg, local=False).receive_data(encode_alive2_req("t", 1))
    assert len(evs) == 1 and isinstance(evs[0], Close) and "remote" in evs[0].reason
    assert "t" not in reg
    for req in (b"\x00\x01d", b"\x00\x01k", b"\x00\x02st", b"\x00\x00", b"\xff\xff"):
        evs = EpmdServerConnection(reg).receive_data(req)
        assert len(evs) == 1 and isinstance(evs[0], Close)


@given(st.binary(max_size=60), st.integers(1, 10))
def test_server_fuzz(data, chunk):
    conn = EpmdServerConnection(EpmdRegistry())
    for i in range(0, len(data), chunk):
        for ev in conn.receive_data(data[i:i + chunk]):
            assert isinstance(ev, (Reply, Close, Registered))
    conn.connection_lost()
