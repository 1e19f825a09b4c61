"""Hostile input: every failure is a DecodeError with an offset and a reason, fast, and no
allocation larger than the input justifies."""

from __future__ import annotations

import struct
import time

import pytest

from distproxy.term import (DEFAULT_LIMITS, Atom, DecodeError, EncodeError, Limits, decode,
                            decode_at, encode)
from distproxy.term.skip import skip_at

H = bytes.fromhex


def _fails(data: bytes, limits: Limits = DEFAULT_LIMITS, contains: str = "") -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data, limits)
    err = info.value
    assert isinstance(err.offset, int) and err.reason
    assert str(err).startswith(f"at byte {err.offset}: ")
    assert contains in err.reason, err.reason
    # skip_at agrees that the input is bad
    with pytest.raises(DecodeError):
        end = skip_at(data, 0, limits)
        if end != len(data):
            raise DecodeError(end, "trailing")
    return err


def test_decode_error_is_value_error() -> None:
    err = DecodeError(17, "LIST_EXT claims 4294967295 elements, only 3 bytes left")
    assert isinstance(err, ValueError)
    assert str(err) == "at byte 17: LIST_EXT claims 4294967295 elements, only 3 bytes left"


@pytest.mark.parametrize("data,needle", [
    (H("836cffffffff6a6a6a"), "LIST_EXT claims 4294967295 elements"),
    (H("8368ff"), "SMALL_TUPLE_EXT claims 255"),
    (H("8369ffffffff"), "LARGE_TUPLE_EXT claims"),
    (H("8374ffffffff6a"), "MAP_EXT claims"),
    (H("836dffffffff00"), "BINARY_EXT claims"),
    (H("834dffffffff0300"), "BIT_BINARY_EXT claims"),
    (H("836bffff00"), "STRING_EXT claims"),
    (H("836fffffffff00"), "LARGE_BIG_EXT of 4294967295 bytes exceeds"),
    (H("8377ff61"), "SMALL_ATOM_UTF8_EXT claims 255 bytes, only 1 bytes left"),
    (H("8376ffff61"), "ATOM_UTF8_EXT claims 65535 bytes"),
])
def test_huge_claims_fail_at_once(data: bytes, needle: str) -> None:
    start = time.perf_counter()
    _fails(data, contains=needle)
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("tag,needle", [(80, "compressed"), (117, "FUN_EXT"), (121, "LOCAL_EXT"),
                                        (82, "ATOM_CACHE_REF"), (0, "unknown tag"),
                                        (255, "unknown tag"), (131, "version byte")])
def test_refused_tags(tag: int, needle: str) -> None:
    err = _fails(bytes([131, tag, 0, 0, 0, 0, 0]), contains=needle)
    assert err.offset == 1


def test_offsets_point_at_the_culprit() -> None:
    data = H("836803") + H("6101") + H("6102") + H("6cffffffff")
    err = _fails(data, contains="LIST_EXT claims 4294967295")
    assert err.offset == 7


def test_version_byte_and_trailing() -> None:
    _fails(b"", contains="version byte")
    _fails(H("8461 01".replace(" ", "")), contains="version byte 131, got 132")
    err = _fails(H("8361016a"), contains="1 trailing bytes")
    assert err.offset == 3
    assert decode_at(H("8361016a"), 0) == (1, 3)


def test_invalid_utf8_atoms() -> None:
    _fails(H("837702c328"), contains="UTF-8")
    _fails(H("837703eda080"), contains="UTF-8")         # surrogate, refused by OTP too
    _fails(H("837601") + b"\xff", contains="claims")


def test_atom_length_limits() -> None:
    too_long = "\u00e9" * 256
    data = bytes([131, 118]) + struct.pack(">H", len(too_long.encode())) + too_long.encode()
    _fails(data, contains="256 characters")
    latin = bytes([131, 100, 1, 0]) + b"a" * 256
    _fails(latin, contains="256 characters")
    _fails(bytes([131, 118, 4, 1]) + b"a" * 1025, contains="exceeds 255 characters")
    small = Limits(max_atom_chars=3)
    assert decode(encode(Atom("abc")), small) == Atom("abc")
    _fails(encode(Atom("abcd")), small, contains="limit of 3")


def test_reference_word_counts() -> None:
    node = b"\x77\x01a"
    for words in (0, 6, 65535):
        _fails(H("835a") + struct.pack(">H", words) + node + b"\0" * (4 + 4 * max(words, 1)),
               contains="words")
    five = H("835a0005") + node + b"\0\0\0\1" + b"\0\0\0\7" * 5
    assert decode(five).ids == (7,) * 5


def test_floats_nan_inf_refused_like_otp() -> None:
    for bits in ("7ff0000000000000", "fff0000000000000", "7ff8000000000000"):
        _fails(H("8346" + bits), contains="NaN or infinite")
    _fails(b"\x83c" + b"nan".ljust(31, b"\0"), contains="FLOAT_EXT")
    _fails(b"\x83c" + b"1_0".ljust(31, b"\0"), contains="FLOAT_EXT")
    _fails(b"\x83c" + b"1e999".ljust(31, b"\0"), contains="not finite")
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(EncodeError):
            encode(value)


def test_bignum_limit_and_sign() -> None:
    _fails(H("836e0102 05".replace(" ", "")), contains="sign byte")
    limits = Limits(max_bignum_bytes=8)
    assert decode(encode(2**63), limits) == 2**63
    _fails(encode(2**64), limits, contains="exceeds the limit of 8")


def test_deep_nesting_fails_cleanly_without_recursion() -> None:
    depth = 100_000
    tuples = b"\x83" + b"\x68\x01" * depth + b"\x6a"
    start = time.perf_counter()
    _fails(tuples, contains="nesting deeper than the limit of 1024")
    lists = b"\x83" + b"\x6c\x00\x00\x00\x01" * depth + b"\x6a" * (depth + 1)
    _fails(lists, contains="nesting deeper")
    maps = b"\x83" + b"\x74\x00\x00\x00\x01\x6a" * depth + b"\x6a" * depth
    _fails(maps, contains="nesting deeper")
    assert time.perf_counter() - start < 2
    # with a high limit the same input decodes (iteratively), and encodes back
    deep = decode(tuples, Limits(max_depth=depth + 1))
    assert encode(deep) == tuples


def test_depth_limit_is_exact() -> None:
    term_ok = b"\x83" + b"\x68\x01" * 5 + b"\x6a"
    assert decode(term_ok, Limits(max_depth=5)) is not None
    _fails(term_ok, Limits(max_depth=4), contains="limit of 4")


def test_list_tail_chain_is_linear() -> None:
    # [1 | [2 | [3 | ...]]] written as nested LIST_EXT tails: no extra depth, linear time
    n = 50_000
    data = b"\x83" + b"\x6c\x00\x00\x00\x01\x61\x01" * n + b"\x6a"
    start = time.perf_counter()
    assert decode(data) == [1] * n
    assert skip_at(data, 0) == len(data)
    assert time.perf_counter() - start < 1


def test_term_count_limit() -> None:
    data = encode([[]] * 1000)
    limits = Limits(max_terms=500)
    _fails(data, limits, contains="more than 500 terms")
    _fails(encode(list(range(1000))), limits, contains="more than 500 terms")   # STRING_EXT? no
    _fails(encode([1] * 1000), limits, contains="more than 500 terms")          # STRING_EXT
    assert decode(data) == [[]] * 1000


def test_binary_and_input_limits() -> None:
    data = encode(b"x" * 100)
    _fails(data, Limits(max_binary_bytes=99), contains="limit of 99")
    _fails(data, Limits(max_input_bytes=50), contains="exceeds the limit of 50")
    with pytest.raises(ValueError):
        Limits(max_depth=-1)


def _dup_fails(data: bytes) -> None:
    # skip_at does not check key uniqueness (documented): decode only
    with pytest.raises(DecodeError, match="duplicate key"):
        decode(data)


def test_duplicate_map_keys_refused() -> None:
    _dup_fails(H("8374000000026101610161016102"))
    # 1 and 1.0 are different Erlang keys: accepted, one is wrapped
    data = H("8374000000026101770178 463ff0000000000000 770179".replace(" ", ""))
    value = decode(data)
    assert len(value) == 2 and encode(value) == data
    # unhashable duplicate keys
    dup = H("8374000000026b0001016101 6b0001016102".replace(" ", ""))
    _dup_fails(dup)
    _dup_fails(H("8374 00000002 770161 6101 770161 6102".replace(" ", "")))
    # SMALL_ATOM_UTF8_EXT 'a' and Latin-1 SMALL_ATOM_EXT 'a' are the same atom
    _dup_fails(H("8374 00000002 770161 6101 730161 6102".replace(" ", "")))


def test_fun_size_field_checked() -> None:
    from distproxy.term import Fun, Pid
    fun = Fun(Atom("m"), 0, bytes(16), 0, 0, 0, Pid(Atom("n"), 0, 0, 0), (1,))
    data = bytearray(encode(fun))
    data[5] -= 1
    _fails(bytes(data), contains="Size says")


def test_memoryview_and_offsets() -> None:
    payload = encode((Atom("a"), b"xyz", [1, 2]))
    frame = b"pp" + payload + encode(Atom("next"))
    view = memoryview(bytearray(frame))
    term, end = decode_at(view, 2)
    assert term == (Atom("a"), b"xyz", [1, 2]) and end == 2 + len(payload)
    assert type(term[1]) is bytes
    assert decode_at(view, end) == (Atom("next"), len(frame))
    assert skip_at(view, 2) == end
    with pytest.raises(DecodeError):
        decode_at(frame, len(frame) + 1)
    with pytest.raises(DecodeError):
        decode_at(frame, len(frame))


def test_truncated_prefixes_of_every_tag() -> None:
    from distproxy.term import BitBinary, Export, Fun, ImproperList, Pid, Port, Reference
    node = Atom("node@host")
    pid = Pid(node, 1, 2, 3)
    term = (1, 300, 2**70, 1.5, Atom("a"), b"bin", BitBinary(b"\x80", 1), [1, 2], [Atom("x")],
            ImproperList((1,), 2), {Atom("k"): 1}, pid, Port(node, 1, 2), Port(node, 2**40, 2),
            Reference(node, 1, (1, 2, 3)), Export(Atom("m"), Atom("f"), 1),
            Fun(Atom("m"), 1, bytes(16), 1, 2, 3, pid, (4,)), tuple(range(300)), (), {}, [])
    data = encode(term)
    assert decode(data) == term
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])
        with pytest.raises(DecodeError):
            skip_at(data[:cut], 0)


@pytest.mark.parametrize("payload_size", [10, 5000, 2_000_000])
def test_windows_for_buffers_and_big_frames(payload_size: int) -> None:
    from distproxy.term import Pid
    control = (22, Pid(Atom("a@b"), 1, 0, 1), Pid(Atom("c@d"), 2, 0, 1))
    payload = (Atom("big"), [b"x" * 100] * (payload_size // 100), 1.5)
    frame = b"p" + encode(control) + encode(payload)
    for buf in (frame, memoryview(frame), bytearray(frame)):
        term, end = decode_at(buf, 1)
        assert term == control
        term2, end2 = decode_at(buf, end)
        assert term2 == payload and end2 == len(frame)
        assert skip_at(buf, end) == len(frame)


def test_bench_smoke() -> None:
    from bench.codec_bench import main
    assert main(["--quick"]) == 0


def test_caches_stay_bounded_under_hostile_atoms_and_pids() -> None:
    from distproxy.term import Pid, decoder
    for i in range(decoder.ATOM_CACHE_SIZE + 500):
        assert decode(encode(Atom(f"a{i}"))) == Atom(f"a{i}")
    assert len(decoder._ATOM_CACHE) <= decoder.ATOM_CACHE_SIZE
    for i in range(decoder.PID_CACHE_SIZE + 500):
        pid = Pid(Atom("n@h"), i, 0, 1)
        assert decode(encode(pid)) == pid
    assert len(decoder._PID_CACHE) <= decoder.PID_CACHE_SIZE


def test_all_limits_are_named_and_frozen() -> None:
    import dataclasses
    assert {f.name for f in dataclasses.fields(Limits)} == {
        "max_input_bytes", "max_depth", "max_terms", "max_atom_chars", "max_bignum_bytes",
        "max_binary_bytes"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_depth = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        Limits(max_atom_chars=256)
