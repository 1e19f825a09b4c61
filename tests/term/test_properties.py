"""Property tests: round trip over every type, and hostile mutations of valid encodings
raise only DecodeError, quickly."""

from __future__ import annotations

import time

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distproxy.term import DEFAULT_LIMITS, DecodeError, decode, decode_at, encode
from distproxy.term import decoder, skip
from distproxy.term.skip import skip_at

from .strategies import terms

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(terms())
def test_roundtrip(term: object) -> None:
    data = encode(term)
    assert decode(data) == term
    assert encode(decode(data)) == data
    assert repr(_reference(data)) == repr((decode(data), len(data)))
    assert _reference_skip(data) == len(data)
    assert skip_at(data, 0) == len(data)
    assert decode_at(data[1:] + b"tail", 0, versioned=False) == (term, len(data) - 1)


def _reference(data: bytes) -> object:
    """The reference (iterative) decoder's outcome, bypassing the fast paths."""
    if not data or data[0] != 131:
        return "error"
    try:
        return decoder._decode(data, 1, len(data), DEFAULT_LIMITS, True)
    except DecodeError:
        return "error"


def _reference_skip(data: bytes) -> object:
    """The reference skipper's outcome, bypassing the fast skipper."""
    if not data or data[0] != 131:
        return "error"
    try:
        return skip._skip(data, 1, len(data), DEFAULT_LIMITS, True)
    except DecodeError:
        return "error"


def _skip_outcome(data: bytes) -> object:
    try:
        return skip_at(data, 0)
    except DecodeError:
        return "error"


def _only_decode_errors(data: bytes) -> None:
    """Decode must return or raise DecodeError; skip_at must agree on the end offset;
    the fast paths must agree with the reference decoder."""
    start = time.perf_counter()
    reference = _reference(data)
    assert _reference_skip(data) == _skip_outcome(data)
    try:
        term, end = decode_at(data, 0)
        assert reference == (term, end) and repr(reference) == repr((term, end))
        view_result = decode_at(memoryview(data), 0)
        assert repr(view_result) == repr((term, end))
    except DecodeError as err:
        assert reference == "error"
        assert isinstance(err.offset, int) and err.reason
        try:
            skip_end = skip_at(data, 0)
        except DecodeError:
            pass
        else:
            assert "duplicate key" in err.reason, (err, skip_end)
    else:
        assert skip_at(data, 0) == end
        encode(term)  # whatever decodes must encode
    assert time.perf_counter() - start < 1.0


@SETTINGS
@given(terms(max_leaves=12), st.data())
def test_prefixes_fail_cleanly(term: object, data: st.DataObject) -> None:
    encoded = encode(term)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    try:
        decode(encoded[:cut])
    except DecodeError:
        pass
    else:
        raise AssertionError("a strict prefix decoded")
    _only_decode_errors(encoded[:cut])


@SETTINGS
@given(terms(max_leaves=12), st.data())
def test_mutations_fail_cleanly(term: object, data: st.DataObject) -> None:
    buf = bytearray(encode(term))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "inflate"]))
        pos = data.draw(st.integers(0, len(buf) - 1)) if buf else 0
        if kind == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and buf:
            del buf[pos:pos + data.draw(st.integers(1, 4))]
        elif kind == "inflate" and len(buf) > pos + 4:
            buf[pos:pos + 4] = data.draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00", b"\x00\x00\xff\xff"]))
    _only_decode_errors(bytes(buf))


@SETTINGS
@given(st.binary(max_size=64))
def test_random_bytes_fail_cleanly(raw: bytes) -> None:
    _only_decode_errors(b"\x83" + raw)
