"""control.py: op table, parse_frame validation, lazy payload, builders."""

from __future__ import annotations

import struct
import timeit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distproxy.term import Atom, Pid, Reference, encode
from distproxy.dist.control import (
    OPS, ControlMessage, FrameError, Kind, Op, build_frame, frame_body, make_control,
    parse_frame, with_length,
)

A = Pid(Atom("a@127.0.0.1"), 85, 0, 1796334539)
B = Pid(Atom("b@127.0.0.1"), 92, 0, 1796334540)
REF = Reference(Atom("a@127.0.0.1"), 1796334539, (12, 34, 56))
TOKEN = (0, Atom("label"), 1, A, 2)


def sample(op: Op) -> tuple:
    """A well-typed control tuple for every op."""
    vals = {
        "from": A, "to": B, "to_name": Atom("rex"), "unused": Atom(""), "reason": Atom("kill"),
        "token": TOKEN, "ref": REF, "req_id": REF, "group_leader": A,
        "mfa": (Atom("erlang"), Atom("apply"), 2), "opts": [Atom("monitor")], "flags": 2,
        "result": B, "alias": REF, "id": 4,
    }
    return make_control(op, **{f: vals[f] for f in OPS[op].fields})


def test_table_covers_every_op_and_kind():
    assert {int(o) for o in Op} == set(range(1, 9)) | {12, 13, 16} | set(range(18, 37))
    assert set(OPS) == set(Op)
    assert {s.kind for s in OPS.values()} == set(Kind)
    assert OPS[Op.SEND_SENDER_TT].kind is Kind.SEND
    assert OPS[Op.PAYLOAD_MONITOR_P_EXIT].kind is Kind.MONITOR_EXIT
    assert OPS[Op.PAYLOAD_EXIT2_TT].kind is Kind.EXIT2
    for spec in OPS.values():
        if spec.op.name.endswith("_TT"):
            assert spec.token == "token"
            base = OPS[Op[spec.op.name[:-3]]]
            assert spec.arity == base.arity + 1
            assert spec.payload == base.payload
            assert spec.kind == base.kind


@pytest.mark.parametrize("op", list(Op))
def test_roundtrip_every_op(op):
    control = sample(op)
    payload = (Atom("hello"), [1, 2, 3]) if OPS[op].has_payload else None
    body = frame_body(control, payload)
    msg = parse_frame(body)
    assert msg.op is op and msg.kind is OPS[op].kind
    assert msg.control == control
    assert msg.frame is body
    if payload is None:
        assert msg.payload_offset is None and msg.payload() is None
    else:
        assert body[msg.payload_offset] == 131
        assert msg.payload() == payload
        assert msg.payload() is msg.payload()  # cached
    for name in OPS[op].fields:
        assert msg.field(name) == control[OPS[op].index[name]]
    # memoryview input works too
    assert parse_frame(memoryview(body)).control == control


def test_roles():
    m = parse_frame(frame_body(make_control(Op.REG_SEND, **{"from": A, "unused": Atom(""),
                                                             "to_name": Atom("rex")}), 1))
    assert m.sender == A and m.target == Atom("rex") and m.token is None and m.ref is None
    m = parse_frame(frame_body(sample(Op.SEND_TT), 1))
    assert m.sender is None and m.target == B and m.token == TOKEN
    m = parse_frame(frame_body(sample(Op.ALIAS_SEND), 1))
    assert m.target == REF
    m = parse_frame(frame_body(sample(Op.SPAWN_REQUEST), [1]))
    assert m.sender == A and m.target is None and m.ref == REF
    assert m.field("mfa") == (Atom("erlang"), Atom("apply"), 2)
    m = parse_frame(frame_body(sample(Op.EXIT_TT)))
    assert m.token == TOKEN and m.field("reason") == Atom("kill")
    with pytest.raises(KeyError):
        m.field("alias")
    assert m.field("alias", None) is None


def test_immutable():
    m = parse_frame(frame_body(sample(Op.LINK)))
    with pytest.raises(AttributeError):
        m.control = ()  # type: ignore[misc]


def test_monitor_by_name_and_down_from_name():
    c = make_control(Op.MONITOR_P, **{"from": A, "to": Atom("server"), "ref": REF})
    assert parse_frame(frame_body(c)).target == Atom("server")
    c = make_control(Op.PAYLOAD_MONITOR_P_EXIT, **{"from": Atom("server"), "to": A, "ref": REF})
    assert parse_frame(frame_body(c, Atom("noproc"))).sender == Atom("server")


def _err(body: bytes) -> FrameError:
    with pytest.raises(FrameError) as ei:
        parse_frame(body)
    return ei.value


def test_errors():
    ok = frame_body(sample(Op.SEND_SENDER), Atom("m"))
    assert "empty" in _err(b"").reason
    assert _err(b"\x83" + ok[1:]).offset == 0
    assert "control" in _err(b"p").reason
    assert "control" in _err(b"p\x83").reason
    assert "not a non-empty tuple" in _err(b"p" + encode([1])).reason
    assert "not a non-empty tuple" in _err(b"p" + encode(())).reason
    assert "unknown control tag 9" in _err(b"p" + encode((9, A, B))).reason
    assert "unknown control tag" in _err(b"p" + encode((Atom("x"), A))).reason
    assert "3-tuple" in _err(b"p" + encode((1, A))).reason
    assert "3-tuple" in _err(b"p" + encode((1, A, B, B))).reason
    assert "bad type" in _err(b"p" + encode((1, A, 7))).reason
    assert "must be followed" in _err(b"p" + encode(sample(Op.SEND_SENDER))).reason
    e = _err(frame_body(sample(Op.LINK)) + b"\x83a\x01")
    assert "trailing" in e.reason and e.offset == len(frame_body(sample(Op.LINK)))
    assert "expected 131" in _err(b"p" + encode(sample(Op.SEND_SENDER)) + b"a\x01").reason
    for cut in range(1, len(ok) - 5):  # truncated control
        if cut <= len(b"p" + encode(sample(Op.SEND_SENDER))) - 1:
            _err(ok[:cut])


def test_payload_checked_lazily():
    good = frame_body(sample(Op.REG_SEND), Atom("hello"))
    m = parse_frame(good + b"\x00")  # trailing byte after the payload: found lazily
    with pytest.raises(FrameError, match="trailing"):
        m.check_payload()
    m = parse_frame(good[:-2])
    with pytest.raises(FrameError, match="payload"):
        m.payload()


def test_builders():
    c = sample(Op.SPAWN_REPLY)
    body = frame_body(c)
    assert body[0] == ord("p") and body[1] == 131
    wire = build_frame(c)
    assert wire == struct.pack(">I", len(body)) + body == with_length(body)
    with pytest.raises(ValueError):
        frame_body(c, Atom("x"))
    with pytest.raises(ValueError):
        frame_body(sample(Op.SEND_SENDER))
    with pytest.raises(ValueError):
        frame_body((99, A))
    with pytest.raises(ValueError):
        frame_body((1, A))
    with pytest.raises(ValueError):
        make_control(Op.LINK, **{"from": A})
    with pytest.raises(ValueError):
        make_control(Op.LINK, **{"from": A, "to": B, "ref": REF})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 60))
def test_fuzz_only_frame_errors(junk, cut):
    base = frame_body(sample(Op.SPAWN_REQUEST), [Atom("x"), 1])
    for data in (junk, b"p" + junk, base[:cut] + junk, base[:cut] + junk[:1] + base[cut + 1 :]):
        try:
            m = parse_frame(data)
        except FrameError:
            continue
        assert isinstance(m, ControlMessage)
        try:
            m.payload()
        except FrameError:
            pass


def test_parse_speed_smoke():
    body = frame_body(sample(Op.SEND_SENDER), Atom("m"))
    n = 2000
    per = timeit.timeit(lambda: parse_frame(body), number=n) / n
    assert per < 200e-6  # generous: real target is a few microseconds with the real codec
