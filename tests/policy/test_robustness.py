"""Hostile input never crashes the parser or the evaluator."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from distproxy.dist.control import frame_body, parse_frame
from distproxy.policy.evaluator import PolicyEngine
from distproxy.policy.model import Context, Decision
from distproxy.policy.patterns import compile_pattern
from distproxy.policy.replies import reject_frames
from distproxy.policy.syntax import SyntaxErrorAt
from distproxy.term import Atom, Export, ImproperList, Pid, Reference

PEER = "ec2_node@127.0.0.1"
CTX = Context(PEER, "my_desktop@127.0.0.1", 0xD075F5FBD)
ME = Pid(Atom(PEER), 5, 0, 1)
T = Pid(Atom("my_desktop@127.0.0.1"), 6, 0, 1)
REF = Reference(Atom(PEER), 1, (1, 2, 3))

_alphabet = st.sampled_from(list("{}[]|,#=>:<>\"'$_aAz09.-+ \\()/fun"))


@given(st.text(_alphabet, max_size=60))
def test_parser_only_raises_syntax_errors(text: str) -> None:
    try:
        compile_pattern(text)
    except SyntaxErrorAt as e:
        assert 1 <= e.column <= len(text) + 1


_atoms = st.sampled_from(["put_chars", "io_request", "$gen_call", "$gen_cast", "call",
                          "is_auth", "features_request", "alias", "lost_connection",
                          "register", "x", "unicode", "os", "cmd"]).map(Atom)
_leaves = st.one_of(_atoms, st.integers(-5, 2**40), st.binary(max_size=4),
                    st.just(ME), st.just(T), st.just(REF),
                    st.just(Export(Atom("os"), Atom("cmd"), 1)))
_terms = st.recursive(
    _leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=5).map(tuple), st.lists(kids, max_size=4),
        st.tuples(kids, kids).filter(lambda p: not isinstance(p[1], (list, ImproperList)))
        .map(lambda p: ImproperList((p[0],), p[1]))),
    max_leaves=25)
_names = st.sampled_from(["rex", "net_kernel", "global_name_server", "pg", "auth",
                          "node_b_gateway", "user", "other"]).map(Atom)


@settings(max_examples=300, deadline=None)
@given(_terms, _names, st.sampled_from([6, 22, 33, 29]))
def test_evaluator_and_replies_survive_any_payload(unequal: PolicyEngine, payload: object,
                                                   name: Atom, op: int) -> None:
    if op == 6:
        control: tuple = (6, ME, Atom(""), name)
    elif op == 22:
        control = (22, ME, T)
    elif op == 33:
        control = (33, ME, REF)
    else:
        control = (29, REF, ME, ME, (Atom("erpc"), Atom("execute_call"), 4), [])
        payload = [payload] if not isinstance(payload, list) else payload
    msg = parse_frame(frame_body(control, payload))
    d = unequal.evaluate(msg, "from_peer", CTX)
    assert isinstance(d, Decision)
    for body in reject_frames(msg, CTX.negotiated_flags, d.reply_error):
        parse_frame(body)
