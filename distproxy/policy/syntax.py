"""Erlang term syntax, shared by payload patterns and by `explain`/`test` sample terms.

One small, bounded recursive-descent parser turns text such as
``{'$gen_call', {_, [alias|_]}, {is_auth, _}}`` into an AST (:class:`Node` subclasses).
Two back ends consume it:

* :func:`distproxy.policy.patterns.compile_pattern` makes a matcher closure (wildcards and
  type tests allowed, no pseudo-calls that need a node);
* :func:`to_term` builds a concrete Python term in the codec's type mapping (wildcards are
  an error; ``self()``, ``make_ref()``, ``node()`` are filled in from a :class:`TermEnv`).

Errors are :class:`SyntaxErrorAt` with a 1-based column, so a loader can report
``file:line: rule 'x': payload: column 12: ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from distproxy.term import Atom, Export, ImproperList, MapKey, Pid, Reference

__all__ = [
    "MAX_TEXT",
    "MAX_DEPTH",
    "SyntaxErrorAt",
    "Node",
    "Lit",
    "Wild",
    "TypeTest",
    "PseudoCall",
    "TupleN",
    "ListN",
    "MapN",
    "TYPE_TESTS",
    "PSEUDO_CALLS",
    "parse",
    "to_term",
    "parse_term",
    "TermEnv",
]

#: Longest accepted source text; patterns live in policy files and on command lines.
MAX_TEXT = 8192
#: Deepest accepted nesting of tuples/lists/maps.
MAX_DEPTH = 64

#: Type-test calls allowed in patterns, e.g. ``{ref(), _}``.
TYPE_TESTS = (
    "atom", "integer", "float", "number", "binary", "list", "tuple", "map",
    "pid", "ref", "port", "fun",
)
#: Calls allowed in concrete sample terms (explain/test); filled in from a TermEnv.
PSEUDO_CALLS = ("self", "make_ref", "node", "peer_pid", "trusted_pid")


class SyntaxErrorAt(ValueError):
    """A parse error at ``column`` (1-based) of the source text."""

    def __init__(self, column: int, message: str) -> None:
        self.column = column
        self.message = message
        super().__init__(f"column {column}: {message}")


# -- AST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    column: int


@dataclass(frozen=True)
class Lit(Node):
    """A literal leaf: Atom, int, float, bytes, Export, or ``[]``-free string list."""

    value: Any


@dataclass(frozen=True)
class Wild(Node):
    name: str  # "_" or "_Name"


@dataclass(frozen=True)
class TypeTest(Node):
    name: str  # one of TYPE_TESTS


@dataclass(frozen=True)
class PseudoCall(Node):
    name: str  # one of PSEUDO_CALLS


@dataclass(frozen=True)
class TupleN(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class ListN(Node):
    """``[h1, h2 | tail]``; ``tail`` None means a proper list ending in ``[]``."""

    heads: tuple[Node, ...]
    tail: Node | None


@dataclass(frozen=True)
class MapN(Node):
    pairs: tuple[tuple[Node, Node], ...]


# -- tokenizer ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<float>-?\d+\.\d+(?:[eE][+-]?\d+)?)
  | (?P<radix>-?\d{1,2}\#[0-9A-Za-z]+)
  | (?P<int>-?\d+)
  | (?P<char>\$(?:\\.|.))
  | (?P<atom>[a-z][A-Za-z0-9_@]*)
  | (?P<var>[A-Z_][A-Za-z0-9_]*)
  | (?P<qatom>'(?:[^'\\]|\\.)*')
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<punct><<|>>|=>|:=|\#\{|[{}\[\]|,:/()])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "e": "\x1b", "0": "\0",
            "\\": "\\", "'": "'", '"': '"', "b": "\b", "f": "\f", "v": "\v", "d": "\x7f"}


def _unescape(body: str, column: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        e = body[i]
        if e == "x" and i + 2 < len(body) + 1:
            m = re.match(r"[0-9A-Fa-f]{2}", body[i + 1 :])
            if not m:
                raise SyntaxErrorAt(column + i, "bad \\x escape (expected two hex digits)")
            out.append(chr(int(m.group(), 16)))
            i += 3
            continue
        if e not in _ESCAPES:
            raise SyntaxErrorAt(column + i, f"unknown escape \\{e}")
        out.append(_ESCAPES[e])
        i += 1
    return "".join(out)


@dataclass
class _Tok:
    kind: str
    text: str
    column: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SyntaxErrorAt(pos + 1, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos + 1))
        pos = m.end()
    toks.append(_Tok("end", "", n + 1))
    return toks


# -- parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> _Tok:
        t = self.next()
        if t.text != text or t.kind not in ("punct",):
            got = "end of input" if t.kind == "end" else repr(t.text)
            raise SyntaxErrorAt(t.column, f"expected {text!r}, got {got}")
        return t

    def term(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise SyntaxErrorAt(self.peek().column, f"nesting deeper than {MAX_DEPTH}")
        t = self.next()
        k, s, col = t.kind, t.text, t.column
        if k == "int":
            return Lit(col, int(s))
        if k == "radix":
            base_s, digits = s.lstrip("-").split("#")
            base = int(base_s)
            if not 2 <= base <= 36:
                raise SyntaxErrorAt(col, f"radix {base} out of range 2..36")
            try:
                v = int(digits, base)
            except ValueError:
                raise SyntaxErrorAt(col, f"bad base-{base} digits {digits!r}") from None
            return Lit(col, -v if s.startswith("-") else v)
        if k == "float":
            return Lit(col, float(s))
        if k == "char":
            body = s[1:]
            ch = _unescape(body, col + 1) if body.startswith("\\") else body
            return Lit(col, ord(ch))
        if k == "string":
            return Lit(col, [ord(c) for c in _unescape(s[1:-1], col + 1)])
        if k == "qatom":
            return self._atom_or_call(_unescape(s[1:-1], col + 1), col, quoted=True)
        if k == "atom":
            if s == "fun":
                return self._fun(col)
            return self._atom_or_call(s, col, quoted=False)
        if k == "var":
            if s == "_" or s.startswith("_"):
                return Wild(col, s)
            raise SyntaxErrorAt(
                col, f"variable {s!r} would bind a value; only _ and _Name wildcards are "
                f"supported (write _{s})")
        if k == "punct":
            if s == "{":
                return TupleN(col, tuple(self._seq("}", depth)))
            if s == "[":
                return self._list(col, depth)
            if s == "#{":
                return self._map(col, depth)
            if s == "<<":
                return self._binary(col)
        if k == "end":
            raise SyntaxErrorAt(col, "unexpected end of input, expected a term")
        raise SyntaxErrorAt(col, f"unexpected {s!r}, expected a term")

    def _atom_or_call(self, name: str, col: int, quoted: bool) -> Node:
        if len(name) > 255:
            raise SyntaxErrorAt(col, "atom longer than 255 characters")
        nt = self.peek()
        if nt.kind == "punct" and nt.text == "(" and not quoted:
            self.next()
            self.expect(")")
            if name in TYPE_TESTS:
                return TypeTest(col, name)
            if name in PSEUDO_CALLS:
                return PseudoCall(col, name)
            raise SyntaxErrorAt(
                col, f"unknown call {name}(); type tests: "
                + ", ".join(f"{t}()" for t in TYPE_TESTS)
                + "; in sample terms: " + ", ".join(f"{c}()" for c in PSEUDO_CALLS))
        return Lit(col, Atom(name))

    def _fun(self, col: int) -> Node:
        # fun M:F/A  (an external fun: EXPORT_EXT)
        nt = self.peek()
        if nt.kind == "punct" and nt.text == "(":
            self.next()
            self.expect(")")
            return TypeTest(col, "fun")
        m = self._atom_name("module")
        self.expect(":")
        f = self._atom_name("function")
        self.expect("/")
        a = self.next()
        if a.kind != "int" or a.text.startswith("-"):
            raise SyntaxErrorAt(a.column, "expected an arity after '/'")
        return Lit(col, Export(Atom(m), Atom(f), int(a.text)))

    def _atom_name(self, what: str) -> str:
        t = self.next()
        if t.kind == "atom":
            return t.text
        if t.kind == "qatom":
            return _unescape(t.text[1:-1], t.column + 1)
        raise SyntaxErrorAt(t.column, f"expected a {what} atom")

    def _seq(self, close: str, depth: int) -> list[Node]:
        items: list[Node] = []
        t = self.peek()
        if t.kind == "punct" and t.text == close:
            self.next()
            return items
        while True:
            items.append(self.term(depth + 1))
            t = self.next()
            if t.kind == "punct" and t.text == ",":
                continue
            if t.kind == "punct" and t.text == close:
                return items
            got = "end of input" if t.kind == "end" else repr(t.text)
            raise SyntaxErrorAt(t.column, f"expected ',' or {close!r}, got {got}")

    def _list(self, col: int, depth: int) -> Node:
        heads: list[Node] = []
        t = self.peek()
        if t.kind == "punct" and t.text == "]":
            self.next()
            return ListN(col, (), None)
        while True:
            heads.append(self.term(depth + 1))
            t = self.next()
            if t.kind == "punct" and t.text == ",":
                continue
            if t.kind == "punct" and t.text == "]":
                return ListN(col, tuple(heads), None)
            if t.kind == "punct" and t.text == "|":
                tail = self.term(depth + 1)
                self.expect("]")
                return ListN(col, tuple(heads), tail)
            got = "end of input" if t.kind == "end" else repr(t.text)
            raise SyntaxErrorAt(t.column, f"expected ',', '|' or ']', got {got}")

    def _map(self, col: int, depth: int) -> Node:
        pairs: list[tuple[Node, Node]] = []
        t = self.peek()
        if t.kind == "punct" and t.text == "}":
            self.next()
            return MapN(col, ())
        while True:
            k = self.term(depth + 1)
            sep = self.next()
            if sep.kind != "punct" or sep.text not in ("=>", ":="):
                raise SyntaxErrorAt(sep.column, "expected '=>' or ':=' after a map key")
            v = self.term(depth + 1)
            pairs.append((k, v))
            t = self.next()
            if t.kind == "punct" and t.text == ",":
                continue
            if t.kind == "punct" and t.text == "}":
                return MapN(col, tuple(pairs))
            got = "end of input" if t.kind == "end" else repr(t.text)
            raise SyntaxErrorAt(t.column, f"expected ',' or '}}' in a map, got {got}")

    def _binary(self, col: int) -> Node:
        out = bytearray()
        t = self.peek()
        if t.kind == "punct" and t.text == ">>":
            self.next()
            return Lit(col, b"")
        while True:
            t = self.next()
            if t.kind == "string":
                try:
                    out += _unescape(t.text[1:-1], t.column + 1).encode("latin-1")
                except UnicodeEncodeError:
                    raise SyntaxErrorAt(t.column, "binary string must be Latin-1 "
                                        "(write bytes as integers)") from None
            elif t.kind in ("int", "radix", "char"):
                self.i -= 1
                lit = self.term(0)
                v = lit.value if isinstance(lit, Lit) else None
                if type(v) is not int or not 0 <= v <= 255:
                    raise SyntaxErrorAt(t.column, "binary segment must be a byte 0..255")
                out.append(v)
            else:
                raise SyntaxErrorAt(t.column, "binary segments must be strings or bytes")
            t = self.next()
            if t.kind == "punct" and t.text == ",":
                continue
            if t.kind == "punct" and t.text == ">>":
                return Lit(col, bytes(out))
            raise SyntaxErrorAt(t.column, "expected ',' or '>>' in a binary")


def parse(text: str) -> Node:
    """Parse one term/pattern. Raises SyntaxErrorAt (column is 1-based)."""
    if not isinstance(text, str):
        raise SyntaxErrorAt(1, f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise SyntaxErrorAt(MAX_TEXT, f"longer than {MAX_TEXT} characters")
    p = _Parser(text)
    node = p.term(0)
    t = p.peek()
    if t.kind != "end":
        raise SyntaxErrorAt(t.column, f"unexpected {t.text!r} after the term")
    return node


# -- concrete terms ----------------------------------------------------------------------


@dataclass
class TermEnv:
    """What pseudo-calls in a sample term stand for.

    ``self()`` is a pid of the sending node (a fresh serial per call so two ``self()``
    differ only if asked), ``make_ref()`` a fresh reference of the sending node,
    ``node()`` the sending node's atom, ``peer_pid()``/``trusted_pid()`` a pid of either.
    """

    sender_node: str
    peer_node: str
    trusted_node: str
    creation: int = 1
    _next: int = field(default=100)
    self_pid: Pid | None = None

    def pid(self, node: str) -> Pid:
        self._next += 1
        return Pid(Atom(node), self._next, 0, self.creation)

    def ref(self, node: str) -> Reference:
        self._next += 1
        return Reference(Atom(node), self.creation, (self._next, 1, 2))

    def call(self, name: str) -> Any:
        if name == "self":
            if self.self_pid is None:
                self.self_pid = self.pid(self.sender_node)
            return self.self_pid
        if name == "make_ref":
            return self.ref(self.sender_node)
        if name == "node":
            return Atom(self.sender_node)
        if name == "peer_pid":
            return self.pid(self.peer_node)
        if name == "trusted_pid":
            return self.pid(self.trusted_node)
        raise KeyError(name)


def to_term(node: Node, env: TermEnv | None = None) -> Any:
    """A concrete Python term from an AST; wildcards and type tests are errors."""
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, TupleN):
        return tuple(to_term(n, env) for n in node.items)
    if isinstance(node, ListN):
        heads = [to_term(n, env) for n in node.heads]
        if node.tail is None:
            return heads
        tail = to_term(node.tail, env)
        if type(tail) is list:
            return heads + tail
        if isinstance(tail, ImproperList):
            return ImproperList(tuple(heads) + tuple(tail.items), tail.tail)
        if not heads:
            raise SyntaxErrorAt(node.column, "[|T] needs at least one element before '|'")
        return ImproperList(tuple(heads), tail)
    if isinstance(node, MapN):
        out: dict[Any, Any] = {}
        for k, v in node.pairs:
            key = to_term(k, env)
            try:
                hash(key)
            except TypeError:
                key = MapKey(key)  # the codec's wrapper for keys Python cannot hash
            out[key] = to_term(v, env)
        return out
    if isinstance(node, PseudoCall):
        if env is None:
            raise SyntaxErrorAt(node.column, f"{node.name}() needs a context")
        return env.call(node.name)
    if isinstance(node, Wild):
        raise SyntaxErrorAt(node.column, f"wildcard {node.name} in a concrete term")
    if isinstance(node, TypeTest):
        raise SyntaxErrorAt(node.column, f"type test {node.name}() in a concrete term")
    raise SyntaxErrorAt(node.column, "unsupported term")


def parse_term(text: str, env: TermEnv | None = None) -> Any:
    """Parse a concrete sample term (explain/test)."""
    return to_term(parse(text), env)


#: Type predicates for TypeTest nodes (strict Erlang typing: an int is not a float).
def _type_predicates() -> dict[str, Callable[[Any], bool]]:
    from distproxy.term import BitBinary, Fun, Port

    return {
        "atom": lambda v: type(v) is Atom,
        "integer": lambda v: type(v) is int,
        "float": lambda v: type(v) is float,
        "number": lambda v: type(v) is int or type(v) is float,
        "binary": lambda v: type(v) is bytes,
        "list": lambda v: type(v) is list or isinstance(v, ImproperList),
        "tuple": lambda v: type(v) is tuple,
        "map": lambda v: type(v) is dict,
        "pid": lambda v: type(v) is Pid,
        "ref": lambda v: type(v) is Reference,
        "port": lambda v: type(v) is Port,
        "fun": lambda v: isinstance(v, (Fun, Export)),
        "bitstring": lambda v: type(v) is bytes or isinstance(v, BitBinary),
    }


TYPE_PREDICATES = _type_predicates()
