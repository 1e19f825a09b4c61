"""Payload patterns: Erlang term syntax with ``_`` wildcards, compiled to closures.

A pattern is compiled once at load time into nested closures that test a decoded term
with Erlang matching semantics (``1`` does not match ``1.0``; atoms never match strings;
a map pattern matches any map containing those keys with matching values; ``[H|T]``
matches proper and improper lists). :class:`Pattern` also records the ASCII atoms every
match needs: their text must appear in the raw payload bytes (atoms are inlined because
distproxy strips the atom cache), so a cheap substring test can skip the decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from distproxy.term import Atom, ImproperList, MapKey

from .syntax import (
    TYPE_PREDICATES,
    ListN,
    Lit,
    MapN,
    Node,
    PseudoCall,
    SyntaxErrorAt,
    TupleN,
    TypeTest,
    Wild,
    parse,
    to_term,
)

__all__ = ["Matcher", "Pattern", "compile_pattern", "compile_node"]

Matcher = Callable[[Any], bool]


def _true(_: Any) -> bool:
    return True


def _lit(value: Any) -> Matcher:
    t = type(value)
    if t is list:  # a string literal or []
        if not value:
            return lambda v: type(v) is list and not v
        return lambda v: type(v) is list and v == value
    return lambda v: type(v) is t and v == value


def compile_node(node: Node) -> Matcher:
    """A matcher closure for one AST node."""
    if isinstance(node, Wild):
        return _true
    if isinstance(node, Lit):
        return _lit(node.value)
    if isinstance(node, TypeTest):
        return TYPE_PREDICATES[node.name]
    if isinstance(node, TupleN):
        subs = tuple(compile_node(n) for n in node.items)
        n = len(subs)
        if n == 0:
            return lambda v: type(v) is tuple and not v
        if all(s is _true for s in subs):
            return lambda v: type(v) is tuple and len(v) == n
        pairs = tuple((i, s) for i, s in enumerate(subs) if s is not _true)

        def match_tuple(v: Any) -> bool:
            if type(v) is not tuple or len(v) != n:
                return False
            for i, s in pairs:
                if not s(v[i]):
                    return False
            return True

        return match_tuple
    if isinstance(node, ListN):
        return _compile_list(node)
    if isinstance(node, MapN):
        items: list[tuple[Any, Matcher]] = []
        for k, val in node.pairs:
            try:
                key = to_term(k)
            except SyntaxErrorAt:
                raise SyntaxErrorAt(k.column, "map pattern keys must be literals "
                                    "(no wildcards)") from None
            try:
                hash(key)
            except TypeError:
                key = MapKey(key)
            items.append((key, compile_node(val)))
        frozen = tuple(items)

        def match_map(v: Any) -> bool:
            if type(v) is not dict:
                return False
            for key, s in frozen:
                if key not in v or not s(v[key]):
                    return False
            return True

        return match_map
    if isinstance(node, PseudoCall):
        raise SyntaxErrorAt(node.column, f"{node.name}() is for sample terms, not patterns "
                            "(use pid(), ref() or _)")
    raise SyntaxErrorAt(node.column, "unsupported pattern")


def _compile_list(node: ListN) -> Matcher:
    heads = tuple(compile_node(n) for n in node.heads)
    k = len(heads)
    tail = None if node.tail is None else compile_node(node.tail)

    def match_list(v: Any) -> bool:
        if type(v) is list:
            if tail is None:
                if len(v) != k:
                    return False
            elif len(v) < k:
                return False
            for i in range(k):
                if not heads[i](v[i]):
                    return False
            return True if tail is None else tail(v[k:])
        if isinstance(v, ImproperList):
            items = v.items
            if tail is None or len(items) < k:
                return False
            for i in range(k):
                if not heads[i](items[i]):
                    return False
            rest = items[k:]
            return tail(v.tail if not rest else ImproperList(tuple(rest), v.tail))
        return False

    return match_list


def _required_atoms(node: Node, out: set[bytes]) -> None:
    if isinstance(node, Lit) and type(node.value) is Atom:
        name = node.value.name
        if name.isascii() and name:
            out.add(name.encode("ascii"))
    elif isinstance(node, TupleN):
        for n in node.items:
            _required_atoms(n, out)
    elif isinstance(node, ListN):
        for n in node.heads:
            _required_atoms(n, out)
        if node.tail is not None:
            _required_atoms(node.tail, out)
    elif isinstance(node, MapN):
        for k, v in node.pairs:
            _required_atoms(k, out)
            _required_atoms(v, out)


@dataclass(frozen=True)
class Pattern:
    """A compiled payload pattern: ``source`` text, ``match(term)``, and the atom texts
    that any matching payload must contain (``needs``, longest first)."""

    source: str
    match: Matcher
    needs: tuple[bytes, ...]

    def may_match_bytes(self, raw: bytes, start: int = 0) -> bool:
        """False only if ``raw[start:]`` cannot match (a required atom is absent)."""
        for atom in self.needs:
            if raw.find(atom, start) < 0:
                return False
        return True


def compile_pattern(source: str) -> Pattern:
    """Parse and compile ``source``. Raises SyntaxErrorAt with a 1-based column."""
    node = parse(source)
    matcher = compile_node(node)
    needs: set[bytes] = set()
    _required_atoms(node, needs)
    return Pattern(source, matcher, tuple(sorted(needs, key=len, reverse=True)))
