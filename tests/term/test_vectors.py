"""Per-tag unit tests against exact bytes taken from a real OTP 25.2.3 node
(``term_to_binary(T, [{minor_version, 2}])``)."""

from __future__ import annotations

import pytest

from distproxy.term import (Atom, BitBinary, DecodeError, Export, Fun, ImproperList, MapKey,
                            Pid, Port, Reference, decode, decode_at, encode)
from distproxy.term.skip import skip_at

NONODE = Atom("nonode@nohost")
H = bytes.fromhex

# (term, exact bytes from erl)
VECTORS = [
    (Atom("hello"), H("837705") + b"hello"),
    (-1, H("8362ffffffff")),
    (256, H("836200000100")),
    (255, H("8361ff")),
    (0, H("836100")),
    (1 << 31, H("836e040000000080")),
    (-(1 << 31), H("836280000000")),
    (1 << 40, H("836e06000000000000" "01")),
    (1.5, H("83463ff8000000000000")),
    (0.0, H("83460000000000000000")),
    (-0.0, H("83468000000000000000")),
    ([1, 2, 3], H("836b0003010203")),
    ([256], H("836c00000001 6200000100 6a".replace(" ", ""))),
    (ImproperList((1, 2), 3), H("836c00000002610161026103")),
    (ImproperList((Atom("a"),), Atom("b")), H("836c000000017701617701 62".replace(" ", ""))),
    ([1, 2, 3, Atom("a")], H("836c000000046101610261037701616a")),
    (BitBinary(b"\x20", 3), H("834d000000010320")),
    (b"abc", H("836d00000003") + b"abc"),
    # 1 and 1.0 are distinct Erlang keys but equal in Python: the float is wrapped
    ({Atom("b"): 1, Atom("a"): 2, MapKey(1.0): Atom("x"), 1: Atom("y")},
     H("8374 00000004 6101 770179 463ff0000000000000 770178 770161 6102 770162 6101"
       .replace(" ", ""))),
    (Pid(NONODE, 9, 0, 0), H("8358770d") + b"nonode@nohost" + H("000000090000000000000000")),
    (Reference(NONODE, 0, (0x4A03, 0x02400002, 0x8ACBEA85)),
     H("835a0003770d") + b"nonode@nohost" + H("00000000") + H("00004a03" "02400002" "8acbea85")),
    (Port(NONODE, 0, 0), H("8359770d") + b"nonode@nohost" + H("0000000000000000")),
    (Export(Atom("lists"), Atom("map"), 2), H("837177056c69737473770 36d61706102".replace(" ", ""))),
    ((), H("836800")),
    ([], H("836a")),
    ({}, H("837400000000")),
]


@pytest.mark.parametrize("term,data", VECTORS, ids=[repr(v[0])[:40] for v in VECTORS])
def test_vector_decode_encode(term: object, data: bytes) -> None:
    assert decode(data) == term
    assert encode(term) == data
    assert skip_at(data, 0) == len(data)
    assert decode_at(data[1:], 0, versioned=False) == (term, len(data) - 1)


def test_fun_from_erl() -> None:
    # fun(X) -> X + Y end with Y = 5 (folded by the compiler), module probe, OTP 25.2.3.
    data = H("83700000004701" "09ad710936d73d4426be2a19b33b20b4" "00000000" "00000000"
             "770570726f6265" "6100" "62004d6b88"
             "5877 0d6e6f6e6f6465406e6f686f7374 00000009 00000000 00000000".replace(" ", ""))
    fun = decode(data)
    assert isinstance(fun, Fun)
    assert fun.module == Atom("probe") and fun.arity == 1 and fun.free_vars == ()
    assert fun.old_uniq == 0x4D6B88 and fun.pid == Pid(NONODE, 9, 0, 0)
    assert encode(fun) == data


def test_string_ext_bounds_like_otp() -> None:
    assert encode([1] * 65535)[:4] == H("836bffff")
    assert encode([1] * 65536)[:6] == H("836c00010000")
    assert decode(encode([7] * 65536)) == [7] * 65536


def test_atom_encodings() -> None:
    long_ascii = Atom("x" * 255)
    assert encode(long_ascii)[:3] == H("8377ff")
    emoji = Atom("\U0001F600" * 255)  # 1020 bytes: needs ATOM_UTF8_EXT
    assert encode(emoji)[:4] == H("837603fc")
    assert decode(encode(emoji)) == emoji
    # Latin-1 ATOM_EXT / SMALL_ATOM_EXT decode (no longer emitted by OTP)
    assert decode(H("8364000361 6263".replace(" ", ""))) == Atom("abc")
    assert decode(H("837302e9e9")) == Atom("éé")
    assert decode(H("837600036162 63".replace(" ", ""))) == Atom("abc")


def test_integers_boundaries() -> None:
    for value in (0, 255, 256, -1, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**2040 - 1,
                  2**2040, -(2**2048)):
        assert decode(encode(value)) == value
    assert encode(2**2040 - 1)[1] == 110          # 255 digit bytes: SMALL_BIG
    assert encode(2**2040)[1] == 111              # 256 digit bytes: LARGE_BIG
    assert decode(H("836e0000")) == 0            # bignum zero
    assert decode(H("836f000000020105 00".replace(" ", ""))) == -5


def test_old_encodings_decode() -> None:
    node = b"\x77\x01a"
    assert decode(H("8367") + node + H("00000001 00000002 03".replace(" ", ""))) == Pid(Atom("a"), 1, 2, 3)
    assert decode(H("8366") + node + H("0000000703")) == Port(Atom("a"), 7, 3)
    assert decode(H("8365") + node + H("0000000703")) == Reference(Atom("a"), 3, (7,))
    assert decode(H("83720002") + node + H("03 00000001 00000002".replace(" ", ""))) == \
        Reference(Atom("a"), 3, (1, 2))
    assert decode(b"\x83c" + b"1.50000000000000000000e+00" + b"\0" * 5) == 1.5


def test_ports_v4() -> None:
    node = Atom("a")
    big = Port(node, 1 << 36, 1)
    assert encode(big)[1] == 120
    assert encode(Port(node, 0x0FFFFFFF, 1))[1] == 89
    assert encode(Port(node, 0x10000000, 1))[1] == 120    # OTP: V4 above 28 bits
    assert decode(encode(big)) == big
    # V4_PORT_EXT with a small id decodes; OTP re-encodes it as NEW_PORT_EXT, as we do
    data = H("8378770161 0000000000000005 00000001".replace(" ", ""))
    assert encode(decode(data)) == H("8359770161 00000005 00000001".replace(" ", ""))


def test_bit_binary_rules_like_otp() -> None:
    # padding bits are masked (OTP re-encodes <<131,77,0,0,0,1,3,255>> with 224)
    assert encode(decode(H("834d00000001 03ff".replace(" ", "")))) == H("834d0000000103e0")
    assert decode(H("834d0000000000")) == b""
    assert decode(H("834d0000000108 07".replace(" ", ""))) == b"\x07"
    for bad in ("834d0000000100 07", "834d0000000003", "834d0000000109 07"):
        with pytest.raises(DecodeError):
            decode(H(bad.replace(" ", "")))


def test_list_tail_forms_fold_like_otp() -> None:
    # LIST_EXT with 0 elements is just its tail; a list tail that is a list continues it
    assert decode(H("836c000000006105")) == 5
    assert decode(H("836c000000016101 6b00020203".replace(" ", ""))) == [1, 2, 3]
    assert decode(H("836c000000016101 6c0000000161026a".replace(" ", ""))) == [1, 2]
    assert decode(H("836c000000016101 6c00000001610261 03".replace(" ", ""))) == \
        ImproperList((1, 2), 3)


def test_fun_with_free_vars_roundtrip() -> None:
    pid = Pid(Atom("n@h"), 1, 2, 3)
    fun = Fun(Atom("m"), 1, bytes(range(16)), 4, 0, 123, pid, (5, [Atom("x")], b"z"))
    data = encode(fun)
    assert decode(data) == fun
    assert int.from_bytes(data[2:6], "big") == len(data) - 2   # Size covers the whole fun
