"""Recursive fast path for the common shapes of dist traffic.

The iterative decoder in decoder.py is the reference: it handles every tag, every limit
and every error. This module decodes the frequent tags (atoms, small/32-bit ints, pids,
refs, tuples, proper and simple improper lists, strings, binaries, maps, floats) with
tight per-container loops, which Python runs two to four times faster than a frame
machine. On anything else (a rare tag, a claim that does not fit, nesting beyond
FAST_MAX_DEPTH, running off the end) it gives up (``_Bail``, IndexError or struct.error)
and the caller reruns the reference decoder from the start, so results and errors are
always the reference decoder's. The helpers it shares with the reference decoder
(atom/pid/ref readers, map building) raise the same DecodeErrors either way.

Requirements on the caller: ``data`` is ``bytes`` and the term may run to its end; a read
past the end then raises IndexError/struct.error, and a slice cut short by the end never
equals a cache key (keys are complete, self-delimiting encodings). The input is no longer
than ``max_terms`` bytes, so the term count limit cannot be exceeded here.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from .decoder import (_ATOM_CACHE, _PID_CACHE, _REF_WORDS, _build_map, _new_improper,
                      _new_ref, _read_atom, _read_pid, _read_ref)

FAST_MAX_DEPTH = 64

_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_f64 = struct.Struct(">d").unpack_from
_isfinite = math.isfinite


class _Bail(Exception):
    """Not a fast-path shape: rerun the reference decoder."""


def fast_decode(data: bytes, pos: int, max_binary: int) -> tuple[Any, int]:
    """Decode the term at ``pos`` (no version byte) or raise _Bail/IndexError/struct.error."""
    return _term(data, pos, 0, max_binary)


def _term(data: bytes, p: int, depth: int, max_binary: int) -> tuple[Any, int]:
    tag = data[p]
    if tag == 119:  # SMALL_ATOM_UTF8_EXT
        stop = p + 2 + data[p + 1]
        value = _ATOM_CACHE.get(data[p:stop])
        if value is None:
            return _read_atom(data, p, len(data), True, 255)
        return value, stop
    if tag == 97:  # SMALL_INTEGER_EXT
        return data[p + 1], p + 2
    if tag == 104:  # SMALL_TUPLE_EXT
        return _tuple(data, p + 2, data[p + 1], depth, max_binary)
    if tag == 88:  # NEW_PID_EXT
        stop = p + 15 + data[p + 2]
        value = _PID_CACHE.get(data[p:stop])
        if value is None:
            return _read_pid(data, p, len(data), True, 255)
        return value, stop
    if tag == 106:  # NIL_EXT
        return [], p + 1
    if tag == 108:  # LIST_EXT
        n = _u32(data, p + 1)[0]
        p += 5
        if n == 0 or n > len(data) - p or depth >= FAST_MAX_DEPTH:
            raise _Bail
        items, p = _elements(data, p, n, depth, max_binary)
        tag = data[p]
        if tag == 106:
            return items, p + 1
        if tag == 108 or tag == 107:
            raise _Bail  # a list tail folds into the list: the reference decoder does it
        tail, p = _term(data, p, depth + 1, max_binary)
        return _new_improper(tuple(items), tail), p
    if tag == 90:  # NEWER_REFERENCE_EXT
        words = (data[p + 1] << 8) | data[p + 2]
        if 0 < words <= 5 and data[p + 3] == 119:
            q = p + 5 + data[p + 4]
            node = _ATOM_CACHE.get(data[p + 3:q])
            if node is not None:
                values = _REF_WORDS[words](data, q)
                return _new_ref(node, values[0], values[1:]), q + 4 + 4 * words
        return _read_ref(tag, data, p, len(data), True, 255)
    if tag == 109:  # BINARY_EXT
        n = _u32(data, p + 1)[0]
        p += 5
        if n > len(data) - p or n > max_binary:
            raise _Bail
        return data[p:p + n], p + n
    if tag == 98:  # INTEGER_EXT
        return _i32(data, p + 1)[0], p + 5
    if tag == 107:  # STRING_EXT
        n = (data[p + 1] << 8) | data[p + 2]
        p += 3
        if n > len(data) - p:
            raise _Bail
        return list(data[p:p + n]), p + n
    if tag == 116:  # MAP_EXT
        n = _u32(data, p + 1)[0]
        start = p
        p += 5
        if n > (len(data) - p) // 2 or depth >= FAST_MAX_DEPTH:
            raise _Bail
        if n == 0:
            return {}, p
        acc, p = _elements(data, p, 2 * n, depth, max_binary)
        return _build_map(acc, start), p
    if tag == 70:  # NEW_FLOAT_EXT
        value = _f64(data, p + 1)[0]
        if not _isfinite(value):
            raise _Bail
        return value, p + 9
    raise _Bail


def _tuple(data: bytes, p: int, n: int, depth: int, max_binary: int) -> tuple[Any, int]:
    if n == 0:
        return (), p
    if depth >= FAST_MAX_DEPTH:
        raise _Bail
    items, p = _elements(data, p, n, depth, max_binary)
    return tuple(items), p


def _elements(data: bytes, p: int, n: int, depth: int, max_binary: int) -> tuple[list, int]:
    """``n`` consecutive terms; the commonest leaves are inlined, the rest recurse."""
    items = []
    append = items.append
    atoms = _ATOM_CACHE
    depth += 1
    for _ in range(n):
        tag = data[p]
        if tag == 119:
            stop = p + 2 + data[p + 1]
            value = atoms.get(data[p:stop])
            if value is None:
                value, stop = _read_atom(data, p, len(data), True, 255)
            p = stop
        elif tag == 97:
            value = data[p + 1]
            p += 2
        elif tag == 104:
            n_inner = data[p + 1]
            if n_inner:
                if depth >= FAST_MAX_DEPTH:
                    raise _Bail
                value, p = _elements(data, p + 2, n_inner, depth, max_binary)
                value = tuple(value)
            else:
                value = ()
                p += 2
        elif tag == 98:
            value = _i32(data, p + 1)[0]
            p += 5
        elif tag == 88:
            stop = p + 15 + data[p + 2]
            value = _PID_CACHE.get(data[p:stop])
            if value is None:
                value, stop = _read_pid(data, p, len(data), True, 255)
            p = stop
        else:
            value, p = _term(data, p, depth, max_binary)
        append(value)
    return items, p


def fast_skip(data: bytes, pos: int, max_binary: int) -> int:
    """End offset of the term at ``pos`` (validated as the decoder would, without building
    it), or raise _Bail/IndexError/struct.error; same contract as fast_decode. Map-key
    uniqueness is not checked (it needs the keys built), as in skip.py."""
    return _skip_term(data, pos, 0, max_binary)


def _skip_term(data: bytes, p: int, depth: int, max_binary: int) -> int:
    tag = data[p]
    if tag == 119:
        stop = p + 2 + data[p + 1]
        if data[p:stop] in _ATOM_CACHE:
            return stop
        return _read_atom(data, p, len(data), True, 255)[1]
    if tag == 97:
        return p + 2
    if tag == 104:
        return _skip_elements(data, p + 2, data[p + 1], depth, max_binary)
    if tag == 88:
        stop = p + 15 + data[p + 2]
        if data[p:stop] in _PID_CACHE:
            return stop
        return _read_pid(data, p, len(data), True, 255)[1]
    if tag == 106:
        return p + 1
    if tag == 108:
        n = _u32(data, p + 1)[0]
        p += 5
        if n == 0 or n > len(data) - p:
            raise _Bail
        p = _skip_elements(data, p, n, depth, max_binary)
        tag = data[p]
        if tag == 106:
            return p + 1
        if tag == 108 or tag == 107:
            raise _Bail
        return _skip_term(data, p, depth + 1, max_binary)
    if tag == 90:
        words = (data[p + 1] << 8) | data[p + 2]
        if 0 < words <= 5 and data[p + 3] == 119:
            q = p + 5 + data[p + 4]
            if data[p + 3:q] in _ATOM_CACHE:
                stop = q + 4 + 4 * words
                if stop > len(data):
                    raise _Bail
                return stop
        return _read_ref(tag, data, p, len(data), True, 255)[1]
    if tag == 109:
        n = _u32(data, p + 1)[0]
        p += 5
        if n > len(data) - p or n > max_binary:
            raise _Bail
        return p + n
    if tag == 98:
        return p + 5
    if tag == 107:
        n = (data[p + 1] << 8) | data[p + 2]
        p += 3
        if n > len(data) - p:
            raise _Bail
        return p + n
    if tag == 116:
        n = _u32(data, p + 1)[0]
        p += 5
        if n > (len(data) - p) // 2:
            raise _Bail
        return _skip_elements(data, p, 2 * n, depth, max_binary)
    if tag == 70:
        if not _isfinite(_f64(data, p + 1)[0]):
            raise _Bail
        return p + 9
    raise _Bail


def _skip_elements(data: bytes, p: int, n: int, depth: int, max_binary: int) -> int:
    if n and depth >= FAST_MAX_DEPTH:
        raise _Bail
    atoms = _ATOM_CACHE
    depth += 1
    for _ in range(n):
        tag = data[p]
        if tag == 119:
            stop = p + 2 + data[p + 1]
            if data[p:stop] not in atoms:
                stop = _read_atom(data, p, len(data), True, 255)[1]
            p = stop
        elif tag == 97:
            p += 2
        else:
            p = _skip_term(data, p, depth, max_binary)
    return p
