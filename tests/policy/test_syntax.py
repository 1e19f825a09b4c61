"""The shared Erlang term/pattern parser and the pattern matcher."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from distproxy.policy.patterns import compile_pattern
from distproxy.policy.syntax import SyntaxErrorAt, TermEnv, parse_term
from distproxy.term import Atom, Export, ImproperList, Pid, Reference, decode, encode

ENV = TermEnv("a@h", "a@h", "t@h")


def test_concrete_terms() -> None:
    assert parse_term("foo") == Atom("foo")
    assert parse_term("'$gen_call'") == Atom("$gen_call")
    assert parse_term("'it''s'") if False else True  # quoted atoms use \\' escapes
    assert parse_term(r"'a\'b'") == Atom("a'b")
    assert parse_term("-12") == -12
    assert parse_term("16#ff") == 255
    assert parse_term("$a") == 97
    assert parse_term("1.5e3") == 1500.0
    assert parse_term('"id"') == [105, 100]
    assert parse_term('<<"ab", 1>>') == b"ab\x01"
    assert parse_term("<<>>") == b""
    assert parse_term("{}") == ()
    assert parse_term("[]") == []
    assert parse_term("[1, 2 | [3]]") == [1, 2, 3]
    assert parse_term("[alias | x]") == ImproperList((Atom("alias"),), Atom("x"))
    assert parse_term("#{a => 1}") == {Atom("a"): 1}
    assert parse_term("fun os:cmd/1") == Export(Atom("os"), Atom("cmd"), 1)


def test_pseudo_calls_use_the_env() -> None:
    env = TermEnv("a@h", "a@h", "t@h")
    t = parse_term("{self(), self(), make_ref(), node()}", env)
    assert isinstance(t[0], Pid) and t[0] == t[1] and t[0].node == Atom("a@h")
    assert isinstance(t[2], Reference)
    assert t[3] == Atom("a@h")


@pytest.mark.parametrize("text, column, fragment", [
    ("{a,", 4, "end of input"),
    ("{A}", 2, "write _A"),
    ("[1|]", 4, "expected a term"),
    ("#{a => }", 8, "expected a term"),
    ("<<300>>", 3, "byte"),
    ("{a} b", 5, "after the term"),
    ("foo()", 1, "unknown call"),
    ("'abc", 1, "unexpected character"),
    ("{a, b", 6, "expected ',' or '}'"),
])
def test_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(SyntaxErrorAt) as ei:
        compile_pattern(text)
    assert ei.value.column == column
    assert fragment in str(ei.value)
    assert str(ei.value).startswith(f"column {column}:")


def test_depth_and_length_bounds() -> None:
    with pytest.raises(SyntaxErrorAt, match="nesting"):
        compile_pattern("{" * 100 + "}" * 100)
    with pytest.raises(SyntaxErrorAt, match="longer"):
        compile_pattern("[" + ",".join(["1"] * 5000) + "]")


def test_wildcards_in_concrete_terms_are_errors() -> None:
    with pytest.raises(SyntaxErrorAt, match="wildcard"):
        parse_term("{_, a}")
    with pytest.raises(SyntaxErrorAt, match="sample terms"):
        compile_pattern("{self(), a}")


def m(pattern: str, term_text: str) -> bool:
    term = decode(encode(parse_term(term_text, TermEnv("a@h", "a@h", "t@h"))))
    return compile_pattern(pattern).match(term)


@pytest.mark.parametrize("pattern, term, expected", [
    ("{'$gen_call', _, {is_auth, _}}", "{'$gen_call', {self(), [alias|make_ref()]}, {is_auth, x}}", True),
    ("{'$gen_call', _, {is_auth, _}}", "{'$gen_call', x, {spawn, a, b, [], c}}", False),
    ("{[alias|_], _}", "{[alias|make_ref()], ok}", True),
    ("{[alias|_], _}", "{[alias, x], ok}", True),  # [alias|_] matches proper lists too
    ("{[alias], _}", "{[alias|make_ref()], ok}", False),
    ("[_, _ | _]", "[1]", False),
    ("[_ | _]", "[1]", True),
    ("1", "1.0", False),  # Erlang matching: integer is not float
    ("1.0", "1.0", True),
    ("\"id\"", "\"id\"", True),
    ("id", "\"id\"", False),  # atom is not a string
    ("<<\"x\">>", "<<\"x\">>", True),
    ("#{a => 1}", "#{a => 1, b => 2}", True),  # map pattern: those keys
    ("#{c => _}", "#{a => 1}", False),
    ("#{}", "#{a => 1}", True),
    ("#{}", "[]", False),
    ("{pid(), features_request}", "{self(), features_request}", True),
    ("{pid(), features_request}", "{x, features_request}", False),
    ("{ref(), _}", "{make_ref(), 1}", True),
    ("{_Tag, _}", "{1, 2}", True),
    ("{_, _}", "{1, 2, 3}", False),
    ("fun()", "fun os:cmd/1", True),
    ("fun os:cmd/1", "fun os:cmd/1", True),
    ("[]", "[]", True),
    ("[]", "[1]", False),
])
def test_matching(pattern: str, term: str, expected: bool) -> None:
    assert m(pattern, term) is expected


def test_required_atoms_prefilter_is_sound() -> None:
    p = compile_pattern("{'$gen_call', _, {is_auth, _}}")
    assert set(p.needs) == {b"$gen_call", b"is_auth"}
    raw = encode(parse_term("{'$gen_call', x, {is_auth, y}}"))
    assert p.may_match_bytes(raw)
    assert not p.may_match_bytes(encode(parse_term("{'$gen_call', x, {spawn, y}}")))


_atoms = st.sampled_from(["a", "ok", "$gen_call", "x y", "é"]).map(Atom)
_terms = st.recursive(
    st.one_of(st.integers(-2**70, 2**70), _atoms, st.binary(max_size=8),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda kids: st.one_of(st.tuples(kids, kids), st.lists(kids, max_size=3)),
    max_leaves=10,
)


@given(_terms)
def test_a_term_written_as_its_own_pattern_matches_itself(term: object) -> None:
    from distproxy.policy.render import format_term

    text = format_term(term, 10_000)
    if "..." in text:
        return
    p = compile_pattern(text)
    assert p.match(decode(encode(term)))
    assert p.may_match_bytes(encode(term))
