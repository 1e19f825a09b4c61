"""Scan a term's bytes for what the payload guards need, without building the term.

:func:`scan_at` walks one External Term Format term (iteratively, bounded like the
decoder by a :class:`~distproxy.term.Limits`) and reports:

- the distinct atoms in it, as UTF-8 byte strings (latin-1 atoms are converted, so
  ``abc`` is one atom whichever tag carried it), node names of pids/ports/refs included:
  every one of them costs the receiving VM an atom-table entry, forever;
- the module of every fun (NEW_FUN_EXT) and export (EXPORT_EXT);
- the number of terms and the deepest nesting.

Why a separate walker: decoding a message to count its atoms builds every Python object
in it; this only moves an offset and keeps a set of short byte strings. Atoms are
collected up to ``max_distinct``; beyond that ``overflow`` is set and collection stops
(the caller refuses the frame anyway), so a frame listing a million fresh atoms costs a
bounded set. Malformed input raises :class:`DecodeError`, never another exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from . import tags as T
from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["AtomScan", "ScanLimit", "scan_at", "DEFAULT_MAX_DISTINCT"]

#: Distinct atoms collected per scan before ``overflow`` is set.
DEFAULT_MAX_DISTINCT = 65536

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from

# Fixed sizes after the node atom: id/serial/creation words etc.
_NODE_TRAILER = {
    T.NEW_PID_EXT: 12, T.PID_EXT: 9, T.NEW_PORT_EXT: 8, T.PORT_EXT: 5, T.V4_PORT_EXT: 12,
    T.REFERENCE_EXT: 5,
}
_FIXED_LEAF = {T.SMALL_INTEGER_EXT: 2, T.INTEGER_EXT: 5, T.NEW_FLOAT_EXT: 9, T.FLOAT_EXT: 32,
               T.NIL_EXT: 1}
_ATOM_TAGS = (T.SMALL_ATOM_UTF8_EXT, T.ATOM_UTF8_EXT, T.SMALL_ATOM_EXT, T.ATOM_EXT)
_FUN_HEADER = 1 + 4 + 1 + 16 + 4 + 4  # tag, Size, Arity, Uniq, Index, NumFree
_SMALL_ATOM_UTF8 = T.SMALL_ATOM_UTF8_EXT
_SMALL_INT = T.SMALL_INTEGER_EXT
_SMALL_TUPLE = T.SMALL_TUPLE_EXT
_NEW_PID = T.NEW_PID_EXT
FUN = "fun"
EXPORT = "export"


class ScanLimit(DecodeError):
    """A well-formed term over ``max_depth`` (``limit == "depth"``) or ``max_terms`` ("terms")."""

    def __init__(self, offset: int, reason: str, limit: str) -> None:
        super().__init__(offset, reason)
        self.limit = limit


@dataclass
class AtomScan:
    """What one scan found (``end``: the offset after the term)."""

    atoms: set[bytes] = field(default_factory=set)
    funs: list[tuple[str, bytes]] = field(default_factory=list)  # (FUN | EXPORT, module)
    terms: int = 0
    depth: int = 0
    end: int = 0
    overflow: bool = False
    fresh: int = 0  # atoms outside the ``known`` sets (with ``max_fresh``)
    fresh_exceeded: bool = False


def _atom(buf: bytes, pos: int, end: int, limits: Limits) -> tuple[bytes, int]:
    """The atom at ``pos`` as UTF-8 bytes, and the offset after it."""
    if pos >= end:
        raise DecodeError(pos, "truncated: expected an atom")
    tag = buf[pos]
    if tag == T.SMALL_ATOM_UTF8_EXT or tag == T.SMALL_ATOM_EXT:
        if pos + 2 > end:
            raise DecodeError(pos, "truncated atom header")
        start, stop = pos + 2, pos + 2 + buf[pos + 1]
    elif tag == T.ATOM_UTF8_EXT or tag == T.ATOM_EXT:
        if pos + 3 > end:
            raise DecodeError(pos, "truncated atom header")
        start, stop = pos + 3, pos + 3 + _u16(buf, pos + 1)[0]
    elif tag == T.ATOM_CACHE_REF:
        raise DecodeError(pos, T.REFUSED[tag])
    else:
        raise DecodeError(pos, f"expected an atom, got tag {tag}")
    if stop > end:
        raise DecodeError(pos, "truncated atom text")
    text = buf[start:stop]
    utf8 = tag == T.SMALL_ATOM_UTF8_EXT or tag == T.ATOM_UTF8_EXT
    if not utf8 or len(text) > limits.max_atom_chars or not text.isascii():
        try:
            chars = text.decode("utf-8" if utf8 else "latin-1")
        except UnicodeDecodeError:
            raise DecodeError(pos, "atom is not valid UTF-8") from None
        if len(chars) > limits.max_atom_chars:
            raise DecodeError(pos, f"atom of {len(chars)} characters (max {limits.max_atom_chars})")
        if not utf8:
            text = chars.encode("utf-8")
    return text, stop


def scan_at(data: bytes | memoryview, offset: int = 0, limits: Limits = DEFAULT_LIMITS, *,
            versioned: bool = True, max_distinct: int = DEFAULT_MAX_DISTINCT,
            into: AtomScan | None = None, known: tuple[set[bytes], ...] = (),
            max_fresh: int | None = None) -> AtomScan:
    """Scan the term at ``offset`` (see the module docstring); ``into`` accumulates.

    With ``max_fresh``, the scan stops as soon as more than that many atoms outside
    every ``known`` set were seen, with ``fresh_exceeded`` set (``end`` is then
    meaningless): a frame over an atom budget costs its first atoms, not all of them.
    """
    buf = data if type(data) is bytes else bytes(data)
    size = len(buf)
    if not 0 <= offset <= size:
        raise DecodeError(offset, f"offset outside the {size}-byte input")
    end = min(size, offset + limits.max_input_bytes)
    out = into if into is not None else AtomScan()
    atoms = out.atoms
    pos = offset
    if versioned:
        if pos >= end or buf[pos] != T.VERSION:
            raise DecodeError(pos, "expected the version byte 131")
        pos += 1
    terms = out.terms
    deepest = out.depth

    def add(atom: bytes) -> None:
        if atom not in atoms:
            if len(atoms) >= max_distinct:
                out.overflow = True
            else:
                atoms.add(atom)
                if max_fresh is not None:
                    for k in known:
                        if atom in k:
                            return
                    out.fresh += 1
                    if out.fresh > max_fresh:
                        raise _FreshExceeded

    try:
        return _walk(buf, pos, end, limits, out, add, terms, deepest)
    except _FreshExceeded:
        out.fresh_exceeded = True
        return out


class _FreshExceeded(Exception):
    """Internal: the scan saw more fresh atoms than it was asked to allow."""


def _walk(buf: bytes, pos: int, end: int, limits: Limits, out: AtomScan, add: Any,
          terms: int, deepest: int) -> AtomScan:
    atoms = out.atoms
    max_terms = limits.max_terms
    max_depth = limits.max_depth
    max_binary = limits.max_binary_bytes
    stack: list[int] = []
    todo = 1

    while True:
        if todo == 0:
            if not stack:
                break
            todo = stack.pop()
            continue
        todo -= 1
        if pos >= end:
            raise DecodeError(pos, "truncated: expected a term")
        terms += 1
        if terms > max_terms:
            raise ScanLimit(pos, f"more than {max_terms} terms", "terms")
        tag = buf[pos]
        # Hot path first: the tags a dist payload is mostly made of.
        if tag == _SMALL_ATOM_UTF8:
            if pos + 2 > end:
                raise DecodeError(pos, "truncated atom header")
            stop = pos + 2 + buf[pos + 1]
            if stop > end:
                raise DecodeError(pos, "truncated atom text")
            text = buf[pos + 2:stop]
            if not text.isascii():
                text, _ = _atom(buf, pos, end, limits)  # validates the UTF-8
            pos = stop
            if text not in atoms:
                add(text)
            continue
        if tag == _SMALL_INT:
            pos += 2
            continue
        if tag == _SMALL_TUPLE:
            if pos + 2 > end:
                raise DecodeError(pos, "truncated tuple header")
            n = buf[pos + 1]
            pos += 2
            if n:
                if n > end - pos:
                    raise DecodeError(pos, f"{n} elements cannot fit in {end - pos} bytes")
                stack.append(todo)
                todo = n
                if len(stack) > deepest:
                    deepest = len(stack)
                    if deepest > max_depth:
                        raise ScanLimit(pos, f"nesting deeper than {max_depth}", "depth")
            continue
        if tag == _NEW_PID and pos + 2 < end and buf[pos + 1] == _SMALL_ATOM_UTF8:
            stop = pos + 3 + buf[pos + 2]
            node = buf[pos + 3:stop]
            if node not in atoms:
                if not node.isascii():
                    node, _ = _atom(buf, pos + 1, end, limits)
                add(node)
            pos = stop + 12
            if pos > end:
                raise DecodeError(end, "truncated pid")
            continue
        fixed = _FIXED_LEAF.get(tag)
        if fixed is not None:
            pos += fixed
            continue
        if tag in _ATOM_TAGS:
            atom, pos = _atom(buf, pos, end, limits)
            add(atom)
            continue
        n = -1  # children of a container
        if tag == T.SMALL_TUPLE_EXT:
            if pos + 2 > end:
                raise DecodeError(pos, "truncated tuple header")
            n, pos = buf[pos + 1], pos + 2
        elif tag == T.LARGE_TUPLE_EXT:
            if pos + 5 > end:
                raise DecodeError(pos, "truncated tuple header")
            n, pos = _u32(buf, pos + 1)[0], pos + 5
        elif tag == T.LIST_EXT:
            if pos + 5 > end:
                raise DecodeError(pos, "truncated list header")
            n, pos = _u32(buf, pos + 1)[0] + 1, pos + 5  # elements and the tail
        elif tag == T.MAP_EXT:
            if pos + 5 > end:
                raise DecodeError(pos, "truncated map header")
            n, pos = 2 * _u32(buf, pos + 1)[0], pos + 5
        elif tag == T.STRING_EXT:
            if pos + 3 > end:
                raise DecodeError(pos, "truncated string header")
            pos += 3 + _u16(buf, pos + 1)[0]
        elif tag == T.BINARY_EXT or tag == T.BIT_BINARY_EXT:
            header = 5 if tag == T.BINARY_EXT else 6
            if pos + header > end:
                raise DecodeError(pos, "truncated binary header")
            length = _u32(buf, pos + 1)[0]
            if length > max_binary:
                raise DecodeError(pos, f"binary of {length} bytes (max {max_binary})")
            pos += header + length
        elif tag == T.SMALL_BIG_EXT:
            if pos + 3 > end:
                raise DecodeError(pos, "truncated bignum header")
            length = buf[pos + 1]
            if length > limits.max_bignum_bytes:
                raise DecodeError(pos, "bignum too large")
            pos += 3 + length
        elif tag == T.LARGE_BIG_EXT:
            if pos + 6 > end:
                raise DecodeError(pos, "truncated bignum header")
            length = _u32(buf, pos + 1)[0]
            if length > limits.max_bignum_bytes:
                raise DecodeError(pos, "bignum too large")
            pos += 6 + length
        elif tag in _NODE_TRAILER:
            node, pos = _atom(buf, pos + 1, end, limits)
            add(node)
            pos += _NODE_TRAILER[tag]
        elif tag == T.NEWER_REFERENCE_EXT or tag == T.NEW_REFERENCE_EXT:
            if pos + 3 > end:
                raise DecodeError(pos, "truncated reference header")
            words = _u16(buf, pos + 1)[0]
            if not 1 <= words <= T.MAX_REF_WORDS:
                raise DecodeError(pos, f"reference of {words} words")
            node, pos = _atom(buf, pos + 3, end, limits)
            add(node)
            pos += (4 if tag == T.NEWER_REFERENCE_EXT else 1) + 4 * words
        elif tag == T.EXPORT_EXT:
            module, _ = _atom(buf, pos + 1, end, limits)
            out.funs.append((EXPORT, module))
            n, pos = 3, pos + 1
        elif tag == T.NEW_FUN_EXT:
            if pos + _FUN_HEADER > end:
                raise DecodeError(pos, "truncated fun header")
            free = _u32(buf, pos + _FUN_HEADER - 4)[0]
            module, _ = _atom(buf, pos + _FUN_HEADER, end, limits)
            out.funs.append((FUN, module))
            n, pos = 4 + free, pos + _FUN_HEADER  # module, old index, old uniq, pid, free vars
        elif tag in T.REFUSED:
            raise DecodeError(pos, T.REFUSED[tag])
        else:
            raise DecodeError(pos, f"unknown term tag {tag}")
        if pos > end:
            raise DecodeError(end, "truncated term")
        if n > 0:
            if n > end - pos:
                raise DecodeError(pos, f"{n} elements cannot fit in {end - pos} bytes")
            stack.append(todo)
            todo = n
            if len(stack) > deepest:
                deepest = len(stack)
                if deepest > max_depth:
                    raise ScanLimit(pos, f"nesting deeper than {max_depth}", "depth")
    out.terms = terms
    out.depth = deepest
    out.end = pos
    return out
