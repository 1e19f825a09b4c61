"""Iterative, bounded decoder for the External Term Format.

Why iterative: hostile peers write much of what this decodes, and a 100,000-deep term must
fail with DecodeError, not RecursionError. Containers are open "frames" on an explicit
stack; leaves are decoded inline in one loop, most frequent tags first (atoms, small ints,
pids, tuples), which is what keeps a control message around a microsecond or two.

Why every length is checked first: each element of a container needs at least one byte,
so a count larger than the bytes left is refused before anything is allocated. Work and
memory are therefore proportional to the input.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from . import tags as T
from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits
from .types import (Atom, MapKey, Reference, _ref_sets, _new_atom, _new_bitbinary, _new_export, _new_fun,
                    _new_improper, _new_pid, _new_port, _new_ref)

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_f64 = struct.Struct(">d").unpack_from
_pid_tail = struct.Struct(">III").unpack_from
_isfinite = math.isfinite
_from_bytes = int.from_bytes

#: Bounded caches keyed by raw encoded bytes (tag included). Cleared when full, so a
#: hostile peer can neither grow them without bound nor pin stale entries for long.
ATOM_CACHE_SIZE = 4096
PID_CACHE_SIZE = 1024
_ATOM_CACHE: dict[bytes, Atom] = {}
_PID_CACHE: dict[bytes, Any] = {}

#: Set to False by the test-suite so that a bug surfaces as itself instead of being
#: folded into a DecodeError by the safety net in decode_at.
SAFETY_NET = True

_K_TUPLE = 0
_K_LIST = 1
_K_MAP = 2
_K_TAIL = 3
_K_FUN = 4

_FLOAT_EXT_RE = re.compile(rb" *[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\x00*")
_EMPTY = ()


def _name(tag: int) -> str:
    return T.NAMES.get(tag, f"tag {tag}")


def _truncated(pos: int, what: str) -> DecodeError:
    return DecodeError(pos, f"truncated input: {what}")


def _bad_tag(pos: int, tag: int) -> DecodeError:
    reason = T.REFUSED.get(tag)
    if reason is None:
        reason = (f"unexpected version byte 131 inside a term" if tag == T.VERSION
                  else f"unknown tag {tag}")
    return DecodeError(pos, reason)


def _make_atom(raw: bytes, tag: int, pos: int, max_chars: int) -> Atom:
    """Build and validate an atom from its raw encoding (header included)."""
    if tag == T.SMALL_ATOM_UTF8_EXT or tag == T.ATOM_UTF8_EXT:
        body = raw[2:] if tag == T.SMALL_ATOM_UTF8_EXT else raw[3:]
        if len(body) > 4 * T.MAX_ATOM_CHARS:
            raise DecodeError(pos, f"{_name(tag)} of {len(body)} bytes exceeds 255 characters")
        try:
            name = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(pos, f"{_name(tag)} is not valid UTF-8 ({exc.reason})") from None
    else:
        body = raw[2:] if tag == T.SMALL_ATOM_EXT else raw[3:]
        name = body.decode("latin-1")
    if len(name) > max_chars:
        raise DecodeError(pos, f"atom of {len(name)} characters exceeds the limit of {max_chars}")
    return _new_atom(name)


def _read_atom(data: Any, pos: int, end: int, isbytes: bool, max_chars: int) -> tuple[Atom, int]:
    """Decode the atom at ``pos`` (any atom tag); used for node names, modules, functions."""
    if pos >= end:
        raise _truncated(pos, "expected an atom")
    tag = data[pos]
    if tag == T.SMALL_ATOM_UTF8_EXT or tag == T.SMALL_ATOM_EXT:
        if pos + 2 > end:
            raise _truncated(pos, f"{_name(tag)} header")
        stop = pos + 2 + data[pos + 1]
    elif tag == T.ATOM_UTF8_EXT or tag == T.ATOM_EXT:
        if pos + 3 > end:
            raise _truncated(pos, f"{_name(tag)} header")
        stop = pos + 3 + ((data[pos + 1] << 8) | data[pos + 2])
    else:
        raise DecodeError(pos, f"expected an atom, got {_name(tag)}")
    if stop > end:
        header = 2 if tag == T.SMALL_ATOM_UTF8_EXT or tag == T.SMALL_ATOM_EXT else 3
        raise DecodeError(pos, f"{_name(tag)} claims {stop - pos - header} bytes, only {end - pos - header} bytes left")
    raw = data[pos:stop]
    if not isbytes:
        raw = raw.tobytes()
    atom = _ATOM_CACHE.get(raw)
    if atom is None:
        atom = _make_atom(raw, tag, pos, max_chars)
        if len(_ATOM_CACHE) >= ATOM_CACHE_SIZE:
            _ATOM_CACHE.clear()
        _ATOM_CACHE[raw] = atom
    elif max_chars < T.MAX_ATOM_CHARS and len(atom.name) > max_chars:
        raise DecodeError(pos, f"atom of {len(atom.name)} characters exceeds the limit of {max_chars}")
    return atom, stop


def _read_pid(data: Any, pos: int, end: int, isbytes: bool, max_chars: int) -> tuple[Any, int]:
    """NEW_PID_EXT or PID_EXT at ``pos``; NEW_PID_EXT results are cached by raw bytes."""
    tag = data[pos] if pos < end else -1
    if tag == T.NEW_PID_EXT:
        if pos + 3 <= end and data[pos + 1] == T.SMALL_ATOM_UTF8_EXT:
            stop = pos + 15 + data[pos + 2]
            if stop <= end:
                raw = data[pos:stop]
                if not isbytes:
                    raw = raw.tobytes()
                pid = _PID_CACHE.get(raw)
                if pid is not None:
                    return pid, stop
        node, p = _read_atom(data, pos + 1, end, isbytes, max_chars)
        if p + 12 > end:
            raise _truncated(pos, "NEW_PID_EXT needs 12 bytes after the node")
        pid = _new_pid(node, *_pid_tail(data, p))
        stop = p + 12
        raw = data[pos:stop]
        if not isbytes:
            raw = raw.tobytes()
        if len(_PID_CACHE) >= PID_CACHE_SIZE:
            _PID_CACHE.clear()
        _PID_CACHE[raw] = pid
        return pid, stop
    if tag == T.PID_EXT:
        node, p = _read_atom(data, pos + 1, end, isbytes, max_chars)
        if p + 9 > end:
            raise _truncated(pos, "PID_EXT needs 9 bytes after the node")
        ident, serial = _u32(data, p)[0], _u32(data, p + 4)[0]
        return _new_pid(node, ident, serial, data[p + 8]), p + 9
    if tag == -1:
        raise _truncated(pos, "expected a pid")
    raise DecodeError(pos, f"expected a pid, got {_name(tag)}")


def _read_small_int(data: Any, pos: int, end: int, what: str) -> tuple[int, int]:
    """SMALL_INTEGER_EXT or INTEGER_EXT (fun OldIndex/OldUniq)."""
    if pos < end and data[pos] == T.SMALL_INTEGER_EXT:
        if pos + 2 > end:
            raise _truncated(pos, what)
        return data[pos + 1], pos + 2
    if pos < end and data[pos] == T.INTEGER_EXT:
        if pos + 5 > end:
            raise _truncated(pos, what)
        return _i32(data, pos + 1)[0], pos + 5
    if pos >= end:
        raise _truncated(pos, what)
    raise DecodeError(pos, f"{what}: expected an integer, got {_name(data[pos])}")


def _read_rare(tag: int, data: Any, pos: int, end: int, isbytes: bool,
               limits: Limits) -> tuple[Any, int]:
    """Leaves that are rare on the wire (kept out of the hot loop)."""
    left = end - pos
    if tag == T.ATOM_UTF8_EXT or tag == T.SMALL_ATOM_EXT or tag == T.ATOM_EXT:
        return _read_atom(data, pos, end, isbytes, limits.max_atom_chars)
    if tag == T.SMALL_BIG_EXT or tag == T.LARGE_BIG_EXT:
        if tag == T.SMALL_BIG_EXT:
            if left < 3:
                raise _truncated(pos, "SMALL_BIG_EXT header")
            n = data[pos + 1]
            start = pos + 3
        else:
            if left < 6:
                raise _truncated(pos, "LARGE_BIG_EXT header")
            n = _u32(data, pos + 1)[0]
            start = pos + 6
        if n > limits.max_bignum_bytes:
            raise DecodeError(pos, f"{_name(tag)} of {n} bytes exceeds the limit of {limits.max_bignum_bytes}")
        if start + n > end:
            raise DecodeError(pos, f"{_name(tag)} claims {n} bytes, only {end - start} bytes left")
        sign = data[start - 1]
        if sign > 1:
            raise DecodeError(pos, f"{_name(tag)} sign byte {sign} is not 0 or 1")
        value = _from_bytes(data[start:start + n], "little")
        return (-value if sign else value), start + n
    if tag == T.NEW_PORT_EXT or tag == T.V4_PORT_EXT or tag == T.PORT_EXT:
        node, p = _read_atom(data, pos + 1, end, isbytes, limits.max_atom_chars)
        if tag == T.NEW_PORT_EXT:
            if p + 8 > end:
                raise _truncated(pos, "NEW_PORT_EXT needs 8 bytes after the node")
            return _new_port(node, _u32(data, p)[0], _u32(data, p + 4)[0]), p + 8
        if tag == T.V4_PORT_EXT:
            if p + 12 > end:
                raise _truncated(pos, "V4_PORT_EXT needs 12 bytes after the node")
            return _new_port(node, _u64(data, p)[0], _u32(data, p + 8)[0]), p + 12
        if p + 5 > end:
            raise _truncated(pos, "PORT_EXT needs 5 bytes after the node")
        return _new_port(node, _u32(data, p)[0], data[p + 4]), p + 5
    if tag == T.PID_EXT:
        return _read_pid(data, pos, end, isbytes, limits.max_atom_chars)
    if tag == T.NEW_REFERENCE_EXT or tag == T.REFERENCE_EXT:
        return _read_ref(tag, data, pos, end, isbytes, limits.max_atom_chars)
    if tag == T.EXPORT_EXT:
        module, p = _read_atom(data, pos + 1, end, isbytes, limits.max_atom_chars)
        function, p = _read_atom(data, p, end, isbytes, limits.max_atom_chars)
        if p + 2 > end:
            raise _truncated(p, "EXPORT_EXT arity")
        if data[p] != T.SMALL_INTEGER_EXT:
            raise DecodeError(p, f"EXPORT_EXT arity must be SMALL_INTEGER_EXT, got {_name(data[p])}")
        return _new_export(module, function, data[p + 1]), p + 2
    if tag == T.BIT_BINARY_EXT:
        if left < 6:
            raise _truncated(pos, "BIT_BINARY_EXT header")
        n = _u32(data, pos + 1)[0]
        bits = data[pos + 5]
        if n > left - 6:
            raise DecodeError(pos, f"BIT_BINARY_EXT claims {n} bytes, only {left - 6} bytes left")
        if n > limits.max_binary_bytes:
            raise DecodeError(pos, f"BIT_BINARY_EXT of {n} bytes exceeds the limit of {limits.max_binary_bytes}")
        if bits > 8 or (bits == 0) != (n == 0):
            raise DecodeError(pos, f"BIT_BINARY_EXT with {n} bytes cannot have {bits} bits in its last byte")
        stop = pos + 6 + n
        raw = data[pos + 6:stop]
        if not isbytes:
            raw = raw.tobytes()
        if bits == 8 or n == 0:
            return raw, stop
        last = raw[-1]
        masked = last & ((0xFF << (8 - bits)) & 0xFF)
        if masked != last:
            raw = raw[:-1] + bytes((masked,))
        return _new_bitbinary(raw, bits), stop
    if tag == T.FLOAT_EXT:
        if left < 32:
            raise _truncated(pos, "FLOAT_EXT needs 31 bytes")
        raw = bytes(data[pos + 1:pos + 32])
        if _FLOAT_EXT_RE.fullmatch(raw) is None:
            raise DecodeError(pos, "FLOAT_EXT is not a decimal float")
        value = float(raw.rstrip(b"\x00").decode("ascii"))
        if not _isfinite(value):
            raise DecodeError(pos, "FLOAT_EXT is not finite")
        return value, pos + 32
    raise _bad_tag(pos, tag)


def _read_ref(tag: int, data: Any, pos: int, end: int, isbytes: bool,
              max_chars: int) -> tuple[Any, int]:
    """NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT or REFERENCE_EXT at ``pos``."""
    if tag == T.REFERENCE_EXT:
        node, p = _read_atom(data, pos + 1, end, isbytes, max_chars)
        if p + 5 > end:
            raise _truncated(pos, "REFERENCE_EXT needs 5 bytes after the node")
        return _new_ref(node, data[p + 4], (_u32(data, p)[0],)), p + 5
    if pos + 3 > end:
        raise _truncated(pos, f"{_name(tag)} header")
    words = (data[pos + 1] << 8) | data[pos + 2]
    if not 1 <= words <= T.MAX_REF_WORDS:
        raise DecodeError(pos, f"{_name(tag)} has {words} words, allowed 1..{T.MAX_REF_WORDS}")
    node, p = _read_atom(data, pos + 3, end, isbytes, max_chars)
    if tag == T.NEWER_REFERENCE_EXT:
        stop = p + 4 + 4 * words
        if stop > end:
            raise _truncated(pos, f"NEWER_REFERENCE_EXT needs {4 + 4 * words} bytes after the node")
        creation = _u32(data, p)[0]
        p += 4
    else:
        stop = p + 1 + 4 * words
        if stop > end:
            raise _truncated(pos, f"NEW_REFERENCE_EXT needs {1 + 4 * words} bytes after the node")
        creation = data[p]
        p += 1
    ids = struct.unpack_from(">" + "I" * words, data, p)
    return _new_ref(node, creation, ids), stop


def _build_map(acc: list, start: int) -> dict:
    """Turn [k0, v0, k1, v1, ...] into a dict in wire order, refusing duplicate keys.

    Keys Python cannot hash, or that Python's == merges although Erlang keeps them apart
    (1 vs 1.0), are wrapped in MapKey (equality by encoding, i.e. Erlang exact equality).
    """
    keys = acc[0::2]
    try:
        result = dict(zip(keys, acc[1::2]))
        if len(result) == len(keys):
            return result
    except TypeError:
        pass
    result = {}
    stored: dict = {}
    for i in range(0, len(acc), 2):
        key = acc[i]
        try:
            hash(key)
        except TypeError:
            key = MapKey(key)
        if key in result:
            if type(key) is MapKey:
                raise DecodeError(start, "MAP_EXT has a duplicate key")
            wrapped = MapKey(key)
            if wrapped in result or MapKey(stored[key]) == wrapped:
                raise DecodeError(start, "MAP_EXT has a duplicate key")
            key = wrapped
        result[key] = acc[i + 1]
        stored[key] = key
    return result


_new = object.__new__
_ref_set_node, _ref_set_creation, _ref_set_ids = _ref_sets
_REF_WORDS = [None] + [struct.Struct(">" + "I" * (w + 1)).unpack_from for w in range(1, 6)]


def _fast_tuple(data: bytes, pos: int, nested: bool = False) -> Any:
    """Straight-line decode of a small tuple of common leaves (the dist control tuples).

    Handles small ints, cached atoms, cached pids, references, ``[]``, one level of nested
    small tuple (``{M, F, A}``) and short flat lists of atoms/small ints (spawn options).
    Returns (tuple, end) or None when anything else is met; the caller then runs the
    general decoder, which produces the proper term or DecodeError.

    Only called on ``bytes`` whose end is the end of the input, so it need not bounds-check
    each read: reading past the end raises IndexError/struct.error (-> None), and a slice
    cut short by the end can never equal a cache key, because every key is a complete,
    self-delimiting encoding whose length byte is part of the key.
    """
    try:
        n = data[pos + 1]
        p = pos + 2
        items = []
        append = items.append
        atoms = _ATOM_CACHE
        for _ in range(n):
            tag = data[p]
            if tag == 119:
                stop = p + 2 + data[p + 1]
                value = atoms.get(data[p:stop])
                if value is None:
                    return None
                p = stop
            elif tag == 88:
                stop = p + 15 + data[p + 2]
                value = _PID_CACHE.get(data[p:stop])
                if value is None:
                    return None
                p = stop
            elif tag == 97:
                value = data[p + 1]
                p += 2
            elif tag == 90:
                words = (data[p + 1] << 8) | data[p + 2]
                if not 0 < words <= 5:
                    return None
                q = p + 5 + data[p + 4]
                node = atoms.get(data[p + 3:q])
                if node is None:
                    return None
                values = _REF_WORDS[words](data, q)
                value = _new(Reference)
                _ref_set_node(value, node)
                _ref_set_creation(value, values[0])
                _ref_set_ids(value, values[1:])
                p = q + 4 + 4 * words
            elif tag == 104 and not nested:
                result = _fast_tuple(data, p, True)
                if result is None:
                    return None
                value, p = result
            elif tag == 106:
                value = []
                p += 1
            elif tag == 108 and not nested:
                count = _u32(data, p + 1)[0]
                p += 5
                if count > 64 or count == 0:
                    return None
                value = []
                for _ in range(count):
                    tag = data[p]
                    if tag == 119:
                        stop = p + 2 + data[p + 1]
                        elem = atoms.get(data[p:stop])
                        if elem is None:
                            return None
                        p = stop
                    elif tag == 97:
                        elem = data[p + 1]
                        p += 2
                    else:
                        return None
                    value.append(elem)
                if data[p] != 106:
                    return None
                p += 1
            else:
                return None
            append(value)
    except (IndexError, struct.error):
        return None
    if p > len(data):
        return None
    return tuple(items), p


def _decode(data: Any, pos: int, end: int, limits: Limits, isbytes: bool) -> tuple[Any, int]:
    """Decode one term (no version byte) starting at ``pos``; return (term, end offset)."""
    stack: list = []
    push = stack.append
    max_depth = limits.max_depth
    max_chars = limits.max_atom_chars
    terms = limits.max_terms
    atom_cache = _ATOM_CACHE
    SMALL_ATOM_UTF8 = T.SMALL_ATOM_UTF8_EXT
    SMALL_INTEGER = T.SMALL_INTEGER_EXT
    NEW_PID = T.NEW_PID_EXT
    SMALL_TUPLE = T.SMALL_TUPLE_EXT
    NEWER_REF = T.NEWER_REFERENCE_EXT
    NIL = T.NIL_EXT
    LIST = T.LIST_EXT
    BINARY = T.BINARY_EXT
    INTEGER = T.INTEGER_EXT
    STRING = T.STRING_EXT
    MAP = T.MAP_EXT
    NEW_FLOAT = T.NEW_FLOAT_EXT
    LARGE_TUPLE = T.LARGE_TUPLE_EXT
    NEW_FUN = T.NEW_FUN_EXT
    while True:
        # ---- one term at pos: either a leaf value, or a new open frame ------------
        if pos >= end:
            raise _truncated(pos, "expected a term")
        tag = data[pos]
        terms -= 1
        if tag == SMALL_ATOM_UTF8:
            if pos + 2 > end:
                raise _truncated(pos, "SMALL_ATOM_UTF8_EXT header")
            stop = pos + 2 + data[pos + 1]
            if stop > end:
                raise DecodeError(pos, f"SMALL_ATOM_UTF8_EXT claims {data[pos + 1]} bytes, only {end - pos - 2} bytes left")
            raw = data[pos:stop]
            if not isbytes:
                raw = raw.tobytes()
            value = atom_cache.get(raw)
            if value is None or max_chars < 255:
                value, stop = _read_atom(data, pos, end, isbytes, max_chars)
            pos = stop
        elif tag == SMALL_INTEGER:
            if pos + 2 > end:
                raise _truncated(pos, "SMALL_INTEGER_EXT")
            value = data[pos + 1]
            pos += 2
        elif tag == NEW_PID:
            value, pos = _read_pid(data, pos, end, isbytes, max_chars)
        elif tag == SMALL_TUPLE:
            if pos + 2 > end:
                raise _truncated(pos, "SMALL_TUPLE_EXT arity")
            n = data[pos + 1]
            pos += 2
            if n:
                if n > end - pos:
                    raise DecodeError(pos - 2, f"SMALL_TUPLE_EXT claims {n} elements, only {end - pos} bytes left")
                if len(stack) >= max_depth:
                    raise DecodeError(pos - 2, f"nesting deeper than the limit of {max_depth}")
                push((_K_TUPLE, [], n))
                continue
            value = _EMPTY
        elif tag == NEWER_REF:
            value, pos = _read_ref(tag, data, pos, end, isbytes, max_chars)
        elif tag == NIL:
            value = []
            pos += 1
        elif tag == LIST:
            if pos + 5 > end:
                raise _truncated(pos, "LIST_EXT length")
            n = _u32(data, pos + 1)[0]
            pos += 5
            if n == 0:
                # LIST_EXT of no elements is just its tail (OTP decodes it so).
                terms += 1
                continue
            if n > end - pos:
                raise DecodeError(pos - 5, f"LIST_EXT claims {n} elements, only {end - pos} bytes left")
            if len(stack) >= max_depth:
                raise DecodeError(pos - 5, f"nesting deeper than the limit of {max_depth}")
            push((_K_LIST, [], n))
            continue
        elif tag == BINARY:
            if pos + 5 > end:
                raise _truncated(pos, "BINARY_EXT length")
            n = _u32(data, pos + 1)[0]
            if n > end - pos - 5:
                raise DecodeError(pos, f"BINARY_EXT claims {n} bytes, only {end - pos - 5} bytes left")
            if n > limits.max_binary_bytes:
                raise DecodeError(pos, f"BINARY_EXT of {n} bytes exceeds the limit of {limits.max_binary_bytes}")
            value = data[pos + 5:pos + 5 + n]
            if not isbytes:
                value = value.tobytes()
            pos += 5 + n
        elif tag == INTEGER:
            if pos + 5 > end:
                raise _truncated(pos, "INTEGER_EXT")
            value = _i32(data, pos + 1)[0]
            pos += 5
        elif tag == STRING:
            if pos + 3 > end:
                raise _truncated(pos, "STRING_EXT length")
            n = (data[pos + 1] << 8) | data[pos + 2]
            if n > end - pos - 3:
                raise DecodeError(pos, f"STRING_EXT claims {n} bytes, only {end - pos - 3} bytes left")
            terms -= n
            if terms < 0:
                raise DecodeError(pos, f"more than {limits.max_terms} terms")
            value = list(data[pos + 3:pos + 3 + n])
            pos += 3 + n
        elif tag == MAP:
            if pos + 5 > end:
                raise _truncated(pos, "MAP_EXT arity")
            n = _u32(data, pos + 1)[0]
            pos += 5
            if n:
                if n > (end - pos) // 2:
                    raise DecodeError(pos - 5, f"MAP_EXT claims {n} pairs, only {end - pos} bytes left")
                if len(stack) >= max_depth:
                    raise DecodeError(pos - 5, f"nesting deeper than the limit of {max_depth}")
                push((_K_MAP, [], 2 * n, pos - 5))
                continue
            value = {}
        elif tag == NEW_FLOAT:
            if pos + 9 > end:
                raise _truncated(pos, "NEW_FLOAT_EXT needs 8 bytes")
            value = _f64(data, pos + 1)[0]
            if not _isfinite(value):
                raise DecodeError(pos, "NEW_FLOAT_EXT is NaN or infinite (OTP refuses these)")
            pos += 9
        elif tag == LARGE_TUPLE:
            if pos + 5 > end:
                raise _truncated(pos, "LARGE_TUPLE_EXT arity")
            n = _u32(data, pos + 1)[0]
            pos += 5
            if n:
                if n > end - pos:
                    raise DecodeError(pos - 5, f"LARGE_TUPLE_EXT claims {n} elements, only {end - pos} bytes left")
                if len(stack) >= max_depth:
                    raise DecodeError(pos - 5, f"nesting deeper than the limit of {max_depth}")
                push((_K_TUPLE, [], n))
                continue
            value = _EMPTY
        elif tag == NEW_FUN:
            start = pos
            if pos + 30 > end:
                raise _truncated(pos, "NEW_FUN_EXT header")
            size = _u32(data, pos + 1)[0]
            if size > end - pos - 1:
                raise DecodeError(pos, f"NEW_FUN_EXT claims {size} bytes, only {end - pos - 1} bytes left")
            arity = data[pos + 5]
            uniq = bytes(data[pos + 6:pos + 22])
            index = _u32(data, pos + 22)[0]
            num_free = _u32(data, pos + 26)[0]
            module, p = _read_atom(data, pos + 30, end, isbytes, max_chars)
            old_index, p = _read_small_int(data, p, end, "NEW_FUN_EXT OldIndex")
            old_uniq, p = _read_small_int(data, p, end, "NEW_FUN_EXT OldUniq")
            fpid, p = _read_pid(data, p, end, isbytes, max_chars)
            pos = p
            header = (module, arity, uniq, index, old_index, old_uniq, fpid, start, size)
            if num_free:
                if num_free > end - pos:
                    raise DecodeError(start, f"NEW_FUN_EXT claims {num_free} free variables, only {end - pos} bytes left")
                if len(stack) >= max_depth:
                    raise DecodeError(start, f"nesting deeper than the limit of {max_depth}")
                push((_K_FUN, [], num_free, header))
                continue
            if pos - start - 1 != size:
                raise DecodeError(start, f"NEW_FUN_EXT Size says {size} bytes, the fun takes {pos - start - 1}")
            value = _new_fun(module, arity, uniq, index, old_index, old_uniq, fpid, _EMPTY)
        else:
            value, pos = _read_rare(tag, data, pos, end, isbytes, limits)

        if terms < 0:
            raise DecodeError(pos, f"more than {limits.max_terms} terms")

        # ---- deliver the value to the open frames, closing those that are full ----
        while True:
            if not stack:
                return value, pos
            frame = stack[-1]
            kind = frame[0]
            acc = frame[1]
            if kind == _K_TAIL:
                stack.pop()
                value = _new_improper(tuple(acc), value)
                continue
            acc.append(value)
            if len(acc) < frame[2]:
                break
            if kind == _K_TUPLE:
                stack.pop()
                value = tuple(acc)
            elif kind == _K_LIST:
                more, pos, terms = _list_tail(stack, data, pos, end, terms, limits)
                if more:
                    break
                stack.pop()
                value = acc
            elif kind == _K_MAP:
                stack.pop()
                value = _build_map(acc, frame[3])
            else:
                stack.pop()
                module, arity, uniq, index, old_index, old_uniq, fpid, start, size = frame[3]
                if pos - start - 1 != size:
                    raise DecodeError(start, f"NEW_FUN_EXT Size says {size} bytes, the fun takes {pos - start - 1}")
                value = _new_fun(module, arity, uniq, index, old_index, old_uniq, fpid, tuple(acc))


def _list_tail(stack: list, data: Any, pos: int, end: int, terms: int,
               limits: Limits) -> tuple[bool, int, int]:
    """A list's elements are done: read its tail.

    A tail that is itself a list (NIL, STRING_EXT, LIST_EXT) is folded into the same
    accumulator, so ``[a | "bc"]`` decodes to one proper list without extra depth or copies.
    Returns (more elements to decode?, pos, terms left). When the tail is another term,
    the frame becomes a tail frame and the caller decodes that term next (more = True).
    """
    frame = stack[-1]
    acc = frame[1]
    while True:
        if pos >= end:
            raise _truncated(pos, "expected a list tail")
        tag = data[pos]
        if tag == T.NIL_EXT:
            return False, pos + 1, terms
        if tag == T.LIST_EXT:
            if pos + 5 > end:
                raise _truncated(pos, "LIST_EXT length")
            n = _u32(data, pos + 1)[0]
            pos += 5
            if n == 0:
                continue
            if n > end - pos:
                raise DecodeError(pos - 5, f"LIST_EXT claims {n} elements, only {end - pos} bytes left")
            stack[-1] = (_K_LIST, acc, len(acc) + n)
            return True, pos, terms
        if tag == T.STRING_EXT:
            if pos + 3 > end:
                raise _truncated(pos, "STRING_EXT length")
            n = (data[pos + 1] << 8) | data[pos + 2]
            if n > end - pos - 3:
                raise DecodeError(pos, f"STRING_EXT claims {n} bytes, only {end - pos - 3} bytes left")
            terms -= n
            if terms < 0:
                raise DecodeError(pos, f"more than {limits.max_terms} terms")
            acc.extend(data[pos + 3:pos + 3 + n])
            pos += 3 + n
            return False, pos, terms
        stack[-1] = (_K_TAIL, acc, 0)
        return True, pos, terms


#: Buffers that are not ``bytes`` are copied for the fast path: first a small window
#: (enough for any control term), then, if the term did not fit, up to FAST_COPY_MAX
#: bytes. ETF is prefix-free, so a term that decodes inside a window is the same term in
#: the whole buffer; one that does not fit falls back to the reference decoder.
FAST_FIRST_WINDOW = 4096
FAST_COPY_MAX = 1 << 20
_FAST_MAX_DEPTH = 64


def _fast_attempt(chunk: bytes, pos: int, max_binary: int) -> Any:
    if chunk[pos:pos + 1] == b"h":  # a control tuple, most likely: straight-line first
        result = _fast_tuple(chunk, pos)
        if result is not None:
            return result
    try:
        value, stop = _fast_decode(chunk, pos, max_binary)
    except (_Bail, IndexError, struct.error):
        return None
    return (value, stop) if stop <= len(chunk) else None


def _try_fast(buf: Any, pos: int, end: int, isbytes: bool, limits: Limits) -> Any:
    """Run the fast path; None means "use the reference decoder".

    The fast path bounds depth itself (64) and checks binary sizes; the term count is
    bounded by the bytes consumed, checked on success.
    """
    max_binary = limits.max_binary_bytes
    if isbytes:
        if end != len(buf):
            return None
        result = _fast_attempt(buf, pos, max_binary)
        if result is None or result[1] - pos > limits.max_terms:
            return None
        return result
    remaining = end - pos
    first = remaining if remaining <= FAST_FIRST_WINDOW else FAST_FIRST_WINDOW
    result = _fast_attempt(buf[pos:pos + first].tobytes(), 0, max_binary)
    if result is None and remaining > first:
        size = remaining if remaining <= FAST_COPY_MAX else FAST_COPY_MAX
        result = _fast_attempt(buf[pos:pos + size].tobytes(), 0, max_binary)
    if result is None or result[1] > limits.max_terms:
        return None
    return result[0], result[1] + pos


def _as_buffer(data: Any) -> tuple[Any, bool]:
    if type(data) is bytes:
        return data, True
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"cannot decode from {type(data).__name__}; pass bytes or a buffer") from None
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    elif view.format != "B":
        view = view.cast("B")
    return view, False


def term_bounds(buf: Any, offset: int, limits: Limits, versioned: bool) -> tuple[int, int]:
    """Where a term's first tag is, and the end of the bytes it may use (max_input_bytes
    from ``offset``), after checking the offset and the version byte. Shared by the
    decoder and the skipper."""
    size = len(buf)
    if not 0 <= offset <= size:
        raise DecodeError(offset, f"offset outside the {size}-byte input")
    end = size if size - offset <= limits.max_input_bytes else offset + limits.max_input_bytes
    pos = offset
    if versioned:
        if pos >= end:
            raise _truncated(pos, "expected the version byte 131")
        if buf[pos] != T.VERSION:
            raise DecodeError(pos, f"expected the version byte 131, got {buf[pos]}")
        pos += 1
    return pos, end


def decode_at(data: bytes | memoryview, offset: int = 0, limits: Limits = DEFAULT_LIMITS,
              *, versioned: bool = True) -> tuple[Any, int]:
    """Decode one term at ``offset``; return (term, end offset). Trailing bytes are allowed.

    With ``versioned`` the term must start with the version byte 131.
    """
    buf, isbytes = _as_buffer(data)
    pos, end = term_bounds(buf, offset, limits, versioned)
    if limits.max_depth >= _FAST_MAX_DEPTH and limits.max_atom_chars == T.MAX_ATOM_CHARS:
        result = _try_fast(buf, pos, end, isbytes, limits)
        if result is not None:
            return result
    if not SAFETY_NET:
        return _decode(buf, pos, end, limits, isbytes)
    try:
        return _decode(buf, pos, end, limits, isbytes)
    except DecodeError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, KeyError,
            RecursionError, MemoryError) as exc:  # defence in depth; never expected
        raise DecodeError(offset, f"malformed input ({type(exc).__name__})") from None


def decode(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a complete term: version byte 131, one term, no trailing bytes."""
    if limits is DEFAULT_LIMITS and type(data) is bytes and data.startswith(b"\x83h"):
        # control tuples: skip decode_at's generic set-up
        result = _fast_tuple(data, 1)
        if result is not None and result[1] == len(data):
            return result[0]
    size = len(data)
    if size > limits.max_input_bytes:
        raise DecodeError(0, f"input of {size} bytes exceeds the limit of {limits.max_input_bytes}")
    term, stop = decode_at(data, 0, limits)
    if stop != size:
        raise DecodeError(stop, f"{size - stop} trailing bytes after the term")
    return term


from .fast import FAST_MAX_DEPTH as _FMD, _Bail, fast_decode as _fast_decode  # noqa: E402

assert _FMD == _FAST_MAX_DEPTH
