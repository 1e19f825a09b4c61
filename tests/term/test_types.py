"""Type semantics: Erlang exact equality where Python allows, immutability, hashing,
and the encoder's refusals."""

from __future__ import annotations

import copy
import pickle

import pytest

from distproxy.term import (Atom, BitBinary, DecodeError, EncodeError, Export, Fun,
                            ImproperList, MapKey, Pid, Port, Reference, decode, encode)

NODE = Atom("n@h")


def test_atom_is_not_str_nor_bool() -> None:
    assert Atom("a") != "a" and "a" != Atom("a")
    assert Atom("true") != True  # noqa: E712
    assert not isinstance(Atom("a"), str)
    assert Atom("a") == Atom("a") and hash(Atom("a")) == hash(Atom("a"))
    assert len({Atom("a"), "a"}) == 2
    assert decode(encode(True)) == Atom("true") and decode(encode(False)) == Atom("false")
    assert type(decode(encode(True))) is Atom


def test_records_are_immutable_hashable_and_distinct_from_tuples() -> None:
    pid = Pid(NODE, 1, 2, 3)
    with pytest.raises(AttributeError):
        pid.id = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Atom("a").name = "b"  # type: ignore[misc]
    assert pid == Pid(NODE, 1, 2, 3) and hash(pid) == hash(Pid(NODE, 1, 2, 3))
    assert pid != (NODE, 1, 2, 3) and pid != Port(NODE, 1, 3)
    assert not isinstance(pid, tuple)
    values = [pid, Port(NODE, 1, 2), Reference(NODE, 1, (1, 2, 3)), Export(NODE, NODE, 1),
              Fun(NODE, 1, bytes(16), 1, 2, 3, pid, (1,)), BitBinary(b"\x80", 1),
              ImproperList((1,), 2), MapKey([1]), Atom("x")]
    for value in values:
        assert pickle.loads(pickle.dumps(value)) == value
        assert copy.deepcopy(value) == value
        hash(value)
        assert repr(value)


def test_constructor_validation() -> None:
    with pytest.raises(TypeError):
        Atom(b"a")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Atom("a" * 256)
    with pytest.raises(ValueError):
        Pid(NODE, -1, 0, 0)
    with pytest.raises(ValueError):
        Reference(NODE, 0, ())
    with pytest.raises(ValueError):
        BitBinary(b"", 3)
    with pytest.raises(ValueError):
        ImproperList((1,), [2])
    assert BitBinary(b"\xff", 3) == BitBinary(b"\xe0", 3)   # padding bits are zeroed
    assert BitBinary(b"\x01\x80", 1).bit_size == 9


def test_encode_refusals() -> None:
    for bad in (None, "text", object(), {1, 2}, float("nan")):
        with pytest.raises(EncodeError):
            encode(bad)
    cyclic: list = []
    cyclic.append(cyclic)
    from distproxy.term import encoder
    saved = encoder._CYCLE_CHECK_AFTER
    encoder._CYCLE_CHECK_AFTER = 100
    try:
        with pytest.raises(EncodeError, match="cyclic"):
            encode(cyclic)
    finally:
        encoder._CYCLE_CHECK_AFTER = saved


def test_encode_accepts_subclasses_and_buffers() -> None:
    import enum
    from collections import OrderedDict, namedtuple

    class Op(enum.IntEnum):
        REG_SEND = 6

    Point = namedtuple("Point", "x y")
    assert encode(Op.REG_SEND) == encode(6)
    assert encode(Point(1, 2)) == encode((1, 2))
    assert encode(bytearray(b"ab")) == encode(b"ab") == encode(memoryview(b"ab"))
    assert encode(OrderedDict([(Atom("b"), 1), (Atom("a"), 2)])) == \
        encode({Atom("a"): 2, Atom("b"): 1})
    assert encode([True, 1]) != encode([1, 1])   # bools are atoms, not bytes


def test_small_maps_sorted_like_otp_large_kept_in_dict_order() -> None:
    small = {Atom("b"): 1, 2.0: 0, Atom("a"): 2, 3: 0, (1,): 0, b"x": 0, NODE: 0}
    data = encode(small)
    keys = list(decode(data))
    assert keys == [3, 2.0, Atom("a"), Atom("b"), NODE, (1,), b"x"]
    large = {Atom(f"k{i}"): i for i in range(40, 0, -1)}
    assert list(decode(encode(large))) == list(large)


def test_mapkey_for_unhashable_and_colliding_keys() -> None:
    value = {MapKey([1, 2]): Atom("list"), MapKey({Atom("a"): 1}): Atom("map"), 1: Atom("int"),
             MapKey(1.0): Atom("float")}
    data = encode(value)
    back = decode(data)
    assert back == value and encode(back) == data
    assert MapKey([1, 2]) == MapKey([1, 2]) and MapKey(1) != MapKey(1.0)
    assert MapKey([1]) != [1]


def test_decoded_structures_are_plain_python() -> None:
    term = decode(encode((1, [2, 3], b"x", {Atom("k"): [Atom("v")]})))
    assert type(term) is tuple and type(term[1]) is list and type(term[2]) is bytes
    assert type(term[3]) is dict


def test_decode_rejects_non_buffers() -> None:
    with pytest.raises(TypeError):
        decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode(bytearray(b"\x83"))
