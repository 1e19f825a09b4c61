"""Encoder producing OTP's own bytes (``term_to_binary(T, [{minor_version, 2}])``).

OTP's choices reproduced here: SMALL_INTEGER_EXT for 0..255, INTEGER_EXT for other 32-bit
signed values, SMALL_BIG_EXT up to 255 digit bytes, then LARGE_BIG_EXT; NEW_FLOAT_EXT;
SMALL_ATOM_UTF8_EXT when the UTF-8 name fits 255 bytes, else ATOM_UTF8_EXT; STRING_EXT for
proper lists of 1..65535 integers in 0..255; SMALL_TUPLE_EXT below 256 elements;
NEW_PID_EXT, NEWER_REFERENCE_EXT; NEW_PORT_EXT for 28-bit port numbers, else V4_PORT_EXT;
maps of up to 32 keys sorted in map-key term order (see order.py), larger maps in dict
order (OTP's own order for those is its internal hash order, which a decoded map keeps).

Iterative (an explicit work stack), so deep terms encode without recursion.
"""

from __future__ import annotations

import struct
from typing import Any

from . import tags as T
from .errors import EncodeError
from .order import TooDeepToSort as _TooDeep, order_key
from .types import (Atom, BitBinary, Export, Fun, ImproperList, MapKey, Pid, Port,
                    Reference)

_p_u16 = struct.Struct(">H").pack
_p_u32 = struct.Struct(">I").pack
_p_i32 = struct.Struct(">i").pack
_p_f64 = struct.Struct(">d").pack
_p_pid = struct.Struct(">III").pack
_p_u64u32 = struct.Struct(">QI").pack
_p_u32u32 = struct.Struct(">II").pack
_p_u32u8 = struct.Struct(">IB").pack

ATOM_BYTES_CACHE_SIZE = 4096
_ATOM_BYTES: dict[str, bytes] = {}

#: After this many containers, check once that the term is not cyclic (a Python list
#: can contain itself; Erlang terms cannot).
_CYCLE_CHECK_AFTER = 1 << 20

_SMALL_INTS = [bytes((T.SMALL_INTEGER_EXT, i)) for i in range(256)]
_NIL = T.NIL_EXT
_TRUE = Atom("true")
_FALSE = Atom("false")
_INF = float("inf")


class _Patch:
    """Work item: back-patch the Size field of a NEW_FUN_EXT that starts at ``start``."""

    __slots__ = ("start",)

    def __init__(self, start: int) -> None:
        self.start = start


def atom_bytes(atom: Atom) -> bytes:
    """Encoded form of an atom (cached, bounded)."""
    name = atom.name
    raw = _ATOM_BYTES.get(name)
    if raw is None:
        utf8 = name.encode("utf-8")
        if len(name) > T.MAX_ATOM_CHARS:
            raise EncodeError(f"atom longer than {T.MAX_ATOM_CHARS} characters")
        if len(utf8) <= 255:
            raw = bytes((T.SMALL_ATOM_UTF8_EXT, len(utf8))) + utf8
        else:
            raw = bytes((T.ATOM_UTF8_EXT,)) + _p_u16(len(utf8)) + utf8
        if len(_ATOM_BYTES) >= ATOM_BYTES_CACHE_SIZE:
            _ATOM_BYTES.clear()
        _ATOM_BYTES[name] = raw
    return raw


def _int_bytes(value: int) -> bytes:
    if 0 <= value <= 255:
        return _SMALL_INTS[value]
    if -0x80000000 <= value <= 0x7FFFFFFF:
        return b"b" + _p_i32(value)
    sign = 1 if value < 0 else 0
    mag = -value if sign else value
    n = (mag.bit_length() + 7) // 8
    digits = mag.to_bytes(n, "little")
    if n <= 255:
        return bytes((T.SMALL_BIG_EXT, n, sign)) + digits
    if n > 0xFFFFFFFF:
        raise EncodeError("integer too large for LARGE_BIG_EXT")
    return bytes((T.LARGE_BIG_EXT,)) + _p_u32u8(n, sign) + digits


def _pid_bytes(pid: Pid) -> bytes:
    return b"X" + atom_bytes(pid.node) + _p_pid(pid.id, pid.serial, pid.creation)


def _check_cycles(term: Any) -> None:
    """Raise EncodeError if ``term`` contains itself (iterative DFS over lists/dicts)."""
    on_path: set[int] = set()
    stack: list = [(term, False)]
    while stack:
        obj, leaving = stack.pop()
        if leaving:
            on_path.discard(id(obj))
            continue
        if isinstance(obj, (list, dict, tuple, ImproperList, Fun, MapKey)):
            if id(obj) in on_path:
                raise EncodeError("cannot encode a cyclic structure")
            on_path.add(id(obj))
            stack.append((obj, True))
            if isinstance(obj, dict):
                children: Any = [x for kv in obj.items() for x in kv]
            elif isinstance(obj, ImproperList):
                children = [*obj.items, obj.tail]
            elif isinstance(obj, Fun):
                children = obj.free_vars
            elif isinstance(obj, MapKey):
                children = (obj.term,)
            else:
                children = obj
            for child in children:
                stack.append((child, False))


def _map_items(t: dict) -> list:
    """The (key, value) pairs of a dict in the order OTP would write them."""
    items = list(t.items())
    if len(items) <= T.MAP_SMALL_MAP_LIMIT and len(items) > 1:
        try:
            if all(type(k) is Atom for k in t):
                items.sort(key=lambda kv: kv[0].name)
            else:
                items.sort(key=lambda kv: order_key(kv[0]))
        except _TooDeep:
            pass  # keys nested too deeply to sort here: keep dict (= wire) order
        except TypeError:
            raise EncodeError("map keys cannot be ordered") from None
    return items


def encode(term: Any, *, versioned: bool = True) -> bytes:
    """Encode ``term`` exactly as OTP 25+ ``term_to_binary(T, [{minor_version, 2}])``."""
    out = bytearray(b"\x83") if versioned else bytearray()
    stack: list = [term]
    pop = stack.pop
    push = stack.append
    extend = stack.extend
    containers = 0
    while stack:
        t = pop()
        cls = type(t)
        if cls is Atom:
            raw = _ATOM_BYTES.get(t.name)
            out += raw if raw is not None else atom_bytes(t)
        elif cls is int:
            out += _SMALL_INTS[t] if 0 <= t <= 255 else _int_bytes(t)
        elif cls is tuple:
            n = len(t)
            if n < 256:
                out.append(T.SMALL_TUPLE_EXT)
                out.append(n)
            else:
                out.append(T.LARGE_TUPLE_EXT)
                out += _p_u32(n)
            if n:
                extend(t[::-1])
                containers += 1
        elif cls is Pid:
            out += _pid_bytes(t)
        elif cls is list:
            n = len(t)
            if not n:
                out.append(_NIL)
                continue
            containers += 1
            if n <= T.MAX_STRING_EXT_LEN:
                try:
                    raw = bytes(t)
                except (TypeError, ValueError):
                    raw = None
                if raw is not None and bool not in map(type, t):
                    out.append(T.STRING_EXT)
                    out += _p_u16(n)
                    out += raw
                    continue
            out.append(T.LIST_EXT)
            out += _p_u32(n)
            push(_EMPTY_LIST)
            extend(t[::-1])
        elif cls is Reference:
            ids = t.ids
            out.append(T.NEWER_REFERENCE_EXT)
            out += _p_u16(len(ids))
            out += atom_bytes(t.node)
            out += _p_u32(t.creation)
            for word in ids:
                out += _p_u32(word)
        elif cls is bytes:
            out.append(T.BINARY_EXT)
            out += _p_u32(len(t))
            out += t
        elif cls is dict:
            n = len(t)
            out.append(T.MAP_EXT)
            out += _p_u32(n)
            if n:
                containers += 1
                items = _map_items(t)
                for key, value in reversed(items):
                    push(value)
                    push(key)
        elif cls is float:
            if t != t or t == _INF or t == -_INF:
                raise EncodeError(f"{t!r} has no Erlang representation")
            out.append(T.NEW_FLOAT_EXT)
            out += _p_f64(t)
        elif cls is bool:
            out += atom_bytes(_TRUE if t else _FALSE)
        elif cls is ImproperList:
            containers += 1
            out.append(T.LIST_EXT)
            tail = t.tail
            if isinstance(tail, (list, ImproperList)):  # only via subclassing tricks
                raise EncodeError("ImproperList tail must not be a list")
            out += _p_u32(len(t.items))
            push(tail)
            extend(t.items[::-1])
        elif cls is MapKey:
            push(t.term)
        elif cls is BitBinary:
            data = t.data
            if t.bits == 8:
                out.append(T.BINARY_EXT)
                out += _p_u32(len(data))
            else:
                out.append(T.BIT_BINARY_EXT)
                out += _p_u32(len(data))
                out.append(t.bits)
            out += data
        elif cls is Port:
            if t.id > T.MAX_V3_PORT_ID:
                out.append(T.V4_PORT_EXT)
                out += atom_bytes(t.node)
                out += _p_u64u32(t.id, t.creation)
            else:
                out.append(T.NEW_PORT_EXT)
                out += atom_bytes(t.node)
                out += _p_u32u32(t.id, t.creation)
        elif cls is Export:
            out.append(T.EXPORT_EXT)
            out += atom_bytes(t.module)
            out += atom_bytes(t.function)
            out += _SMALL_INTS[t.arity]
        elif cls is Fun:
            containers += 1
            start = len(out)
            out.append(T.NEW_FUN_EXT)
            out += b"\0\0\0\0"
            out.append(t.arity)
            out += t.uniq
            out += _p_u32u32(t.index, len(t.free_vars))
            out += atom_bytes(t.module)
            out += _int_bytes(t.old_index)
            out += _int_bytes(t.old_uniq)
            out += _pid_bytes(t.pid)
            push(_Patch(start))
            extend(t.free_vars[::-1])
        elif cls is _Patch:
            start = t.start
            out[start + 1:start + 5] = _p_u32(len(out) - start - 1)
        else:
            push(_coerce(t))
            continue
        if containers > _CYCLE_CHECK_AFTER:
            _check_cycles(term)
            containers = -(1 << 62)
    return bytes(out)


_EMPTY_LIST: list = []


def _coerce(t: Any) -> Any:
    """Map subclasses and buffer types onto the base types encode() knows."""
    if t is None:
        raise EncodeError("None has no Erlang representation (use Atom('undefined'))")
    if isinstance(t, str):
        raise EncodeError("str is ambiguous: use bytes (binary), a list of ints (string) or Atom")
    if isinstance(t, bool):
        return _TRUE if t else _FALSE
    if isinstance(t, int):
        return int(t)
    if isinstance(t, float):
        return float(t)
    if isinstance(t, (bytes, bytearray, memoryview)):
        return bytes(t)
    if isinstance(t, tuple):
        return tuple(t)
    if isinstance(t, list):
        return list(t)
    if isinstance(t, dict):
        return dict(t)
    raise EncodeError(f"cannot encode {type(t).__name__} as an Erlang term")
