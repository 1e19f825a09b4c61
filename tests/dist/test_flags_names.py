"""flags.py and names.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distproxy.dist.errors import InvalidNodeName
from distproxy.dist.flags import (
    KNOWN, MANDATORY_25, MANDATORY_26, OTP25_DEFAULT, PROXY_MASK, REJECTABLE, RESERVED, DFlag,
    describe, expand_digest, flag_names, missing_mandatory, negotiate,
)
from distproxy.dist.names import NodeName, parse_alive, parse_node_name


def test_values():
    assert MANDATORY_25 == 0x1070F94
    assert MANDATORY_26 == 0x403070F94
    assert REJECTABLE == 0x802042
    assert DFlag.SPAWN == 1 << 32 and DFlag.ALIAS == 0x800000000
    assert DFlag.MANDATORY_25_DIGEST == 0x4000000


def test_mask():
    for bit in (DFlag.DIST_HDR_ATOM_CACHE, DFlag.FRAGMENTS, DFlag.NAME_ME, DFlag.ATOM_CACHE,
                DFlag.HIDDEN_ATOM_CACHE, DFlag.ETS_COMPRESSED, DFlag.PENDING_CONNECT,
                DFlag.LOCAL_EXT, DFlag.ALTACT_SIG):
        assert not PROXY_MASK & bit, bit
    assert not PROXY_MASK & RESERVED
    assert not PROXY_MASK >> 37
    assert PROXY_MASK & MANDATORY_26 == MANDATORY_26
    for bit in (DFlag.DIST_MONITOR, DFlag.DIST_MONITOR_NAME, DFlag.SPAWN, DFlag.ALIAS,
                DFlag.MANDATORY_25_DIGEST, DFlag.PUBLISHED):
        assert PROXY_MASK & bit
    # the probe's agreed set with mask 0x802000
    assert OTP25_DEFAULT & PROXY_MASK == 0xD075F5FBD
    assert negotiate(OTP25_DEFAULT, OTP25_DEFAULT) == 0xD075F5FBD


def test_digest_and_mandatory():
    assert missing_mandatory(0x4000001) == 0
    assert missing_mandatory(0x4000001, MANDATORY_26) == DFlag.UNLINK_ID | DFlag.V4_NC
    assert missing_mandatory(MANDATORY_25 & ~DFlag.BIT_BINARIES) == DFlag.BIT_BINARIES
    assert missing_mandatory(OTP25_DEFAULT, MANDATORY_26) == 0
    assert expand_digest(DFlag.MANDATORY_25_DIGEST) & MANDATORY_25 == MANDATORY_25
    assert expand_digest(1) == 1


def test_describe_unknown_bits():
    assert "BIT_BINARIES" in describe(0x400)
    assert flag_names(0x8000000 | 1) == ["PUBLISHED", "0x8000000"]
    assert DFlag(0xF8000000) & ~KNOWN == 0xF8000000


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_negotiate_symmetric(a, b):
    assert negotiate(a, b) == negotiate(b, a)
    assert negotiate(a, b) & ~PROXY_MASK == 0


@pytest.mark.parametrize("raw,alive,host", [
    (b"a@127.0.0.1", "a", "127.0.0.1"),
    (b"ec2_node@ip-10-0-0-1.eu-west-1.compute.internal", "ec2_node", "ip-10-0-0-1.eu-west-1.compute.internal"),
    (b"Bob-Colo_2@host", "Bob-Colo_2", "host"),
    (b"x@[::1]", "x", "[::1]"),
])
def test_good_names(raw, alive, host):
    n = parse_node_name(raw)
    assert n == NodeName(alive, host, raw.decode()) and str(n) == raw.decode()


@pytest.mark.parametrize("raw", [
    b"", b"noat", b"@host", b"name@", b"a@b@c", b"a b@host", b"a@ho st", b"a.b@host",
    b"\xe9@host", b"a@h\xe9", b"a@h\x00", b"a@h\n", "å@h".encode(), b"a" * 250 + b"@hosts",
])
def test_bad_names(raw):
    with pytest.raises(InvalidNodeName) as ei:
        parse_node_name(raw)
    assert ei.value.reason


def test_alive():
    assert parse_alive(b"ec2_node") == "ec2_node"
    for bad in (b"", b"a@b", b"a b", b"x" * 256):
        with pytest.raises(InvalidNodeName):
            parse_alive(bad)


@given(st.binary(max_size=300))
def test_names_fuzz(raw):
    try:
        n = parse_node_name(raw)
    except InvalidNodeName:
        return
    assert n.full.encode() == raw and len(raw) <= 255
