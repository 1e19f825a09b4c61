"""Reject replies: byte-exact OTP encodings (vectors checked with OTP 25.2.3's erl)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from distproxy.dist.control import frame_body, parse_frame
from distproxy.policy.replies import reject_frames
from distproxy.term import Atom, ImproperList, Pid, Reference

PEER = Pid(Atom("ec2_node@127.0.0.1"), 101, 0, 1700000001)
T = Pid(Atom("my_desktop@127.0.0.1"), 77, 2, 1600000002)
REF = Reference(Atom("ec2_node@127.0.0.1"), 1700000001, (123456, 2222222222, 3333))
EXIT_PAYLOAD = 0x400000
FLAGS_25 = 0xD075F5FBD  # what two OTP 25 nodes agree through the proxy (has EXIT_PAYLOAD)

REQUESTS = {
    "link": frame_body((1, PEER, T)),
    "monitor_name": frame_body((19, PEER, Atom("code_server"), REF)),
    "monitor_pid": frame_body((19, PEER, T, REF)),
    "spawn": frame_body((29, REF, PEER, PEER, (Atom("os"), Atom("cmd"), 1),
                         [Atom("monitor")]), [[105, 100]]),
    "gen_call": frame_body((6, PEER, Atom(""), Atom("rex")),
                           (Atom("$gen_call"), (PEER, ImproperList((Atom("alias"),), REF)),
                            Atom("x"))),
}

_P = "5877126563325f6e6f6465403132372e302e302e3100000065000000006553f101"  # PEER
_T = "5877146d795f6465736b746f70403132372e302e302e310000004d000000025f5e1002"  # T
_R = ("5a000377126563325f6e6f6465403132372e302e302e316553f1010001e24084746b8e"
      "00000d05")  # REF
_NOPROC = "77066e6f70726f63"

# Control / payload terms decoded and re-encoded by erl (term_to_binary minor_version 2)
# gave exactly these bytes; erl showed e.g. {24,<8362.77.2>,<8363.101.0>} + noproc.
VECTORS = {
    ("link", True): "708368036118" + _T + _P + "83" + _NOPROC,
    ("link", False): "708368046103" + _T + _P + _NOPROC,
    ("monitor_name", True): "70836804611c770b636f64655f736572766572" + _P + _R + "83" + _NOPROC,
    ("monitor_name", False): "708368056115770b636f64655f736572766572" + _P + _R + _NOPROC,
    ("monitor_pid", True): "70836804611c" + _T + _P + _R + "83" + _NOPROC,
    ("monitor_pid", False): "708368056115" + _T + _P + _R + _NOPROC,
    ("spawn", True): "70836805611f" + _R + _P + "610077066e6f74737570",
    ("spawn", False): "70836805611f" + _R + _P + "610077066e6f74737570",
    ("gen_call", True): "70836804611c7703726578" + _P + _R + "83" + _NOPROC,
    ("gen_call", False): "7083680561157703726578" + _P + _R + _NOPROC,
}


@pytest.mark.parametrize("name, payload_exits", sorted(VECTORS))
def test_reject_frame_bytes(name: str, payload_exits: bool) -> None:
    msg = parse_frame(REQUESTS[name])
    frames = reject_frames(msg, FLAGS_25 if payload_exits else FLAGS_25 & ~EXIT_PAYLOAD)
    assert [f.hex() for f in frames] == [VECTORS[(name, payload_exits)]]


def test_reply_shapes() -> None:
    link = parse_frame(reject_frames(parse_frame(REQUESTS["link"]), EXIT_PAYLOAD)[0])
    assert link.control == (24, T, PEER) and link.payload() == Atom("noproc")
    down = parse_frame(reject_frames(parse_frame(REQUESTS["monitor_name"]), 0)[0])
    assert down.control == (21, Atom("code_server"), PEER, REF, Atom("noproc"))
    sr = parse_frame(reject_frames(parse_frame(REQUESTS["spawn"]), 0, "badarg")[0])
    assert sr.control == (31, REF, PEER, 0, Atom("badarg"))


def test_no_reply_for_plain_sends_and_other_ops() -> None:
    plain = frame_body((6, PEER, Atom(""), Atom("rex")), Atom("hello"))
    assert reject_frames(parse_frame(plain), EXIT_PAYLOAD) == []
    for body in (frame_body((26, PEER, T), Atom("kill")), frame_body((7, PEER, T)),
                 frame_body((33, PEER, REF), Atom("x")), frame_body((5,))):
        assert reject_frames(parse_frame(body), EXIT_PAYLOAD) == []


def test_gen_call_to_pid_and_old_style_tag() -> None:
    body = frame_body((22, PEER, T), (Atom("$gen_call"), (PEER, REF), Atom("x")))
    down = parse_frame(reject_frames(parse_frame(body), EXIT_PAYLOAD)[0])
    assert down.control == (28, T, PEER, REF)


def test_gen_call_for_a_foreign_caller_gets_no_reply() -> None:
    other = Pid(Atom("other@h"), 1, 0, 1)
    body = frame_body((6, PEER, Atom(""), Atom("rex")),
                      (Atom("$gen_call"), (other, REF), Atom("x")))
    assert reject_frames(parse_frame(body), EXIT_PAYLOAD) == []


@pytest.mark.erlang
@pytest.mark.skipif(shutil.which("erl") is None, reason="needs erl")
def test_vectors_against_real_erl(tmp_path: Path) -> None:
    """OTP decodes each reply and re-encodes it to the same bytes."""
    lines = []
    for (name, pe), hexa in sorted(VECTORS.items()):
        lines.append(f"{name}_{int(pe)} {hexa}")
    data = tmp_path / "frames.txt"
    data.write_text("\n".join(lines) + "\n")
    script = (
        f'{{ok, Bin}} = file:read_file("{data}"),'
        'Ls = [L || L <- binary:split(Bin, <<"\\n">>, [global]), L =/= <<>>],'
        'Chk = fun(L) -> [N, H] = binary:split(L, <<" ">>),'
        '  <<$p, Rest/binary>> = binary:decode_hex(H),'
        '  {C, U} = binary_to_term(Rest, [used]),'
        '  <<CB:U/binary, PB/binary>> = Rest,'
        '  Ok1 = term_to_binary(C, [{minor_version, 2}]) =:= CB,'
        '  Ok2 = (PB =:= <<>>) orelse (term_to_binary(binary_to_term(PB),'
        '        [{minor_version, 2}]) =:= PB),'
        '  io:format("~s ~p~n", [N, Ok1 andalso Ok2]) end,'
        'lists:foreach(Chk, Ls), halt().'
    )
    out = subprocess.run(["erl", "-noshell", "-eval", script], capture_output=True,
                         text=True, timeout=60).stdout
    results = dict(line.split() for line in out.splitlines() if line.strip())
    assert len(results) == len(VECTORS) and set(results.values()) == {"true"}, out
