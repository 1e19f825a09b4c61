"""A tiny stand-in for ``distproxy.term`` used only while the real codec is not there.

Covers the subset the dist tests need (small/int, atoms, pids, refs, tuples, lists,
binaries). conftest installs it into ``distproxy.term`` only if that module lacks
``decode_at``; once the real codec lands this file is dead and can be deleted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class DecodeError(ValueError):
    def __init__(self, reason: str, offset: int) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"{reason} at {offset}")


class EncodeError(ValueError):
    pass


@dataclass(frozen=True)
class Limits:
    max_depth: int = 64
    max_items: int = 1_000_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Atom:
    name: str


@dataclass(frozen=True)
class Pid:
    node: Atom
    id: int
    serial: int
    creation: int


@dataclass(frozen=True)
class Reference:
    node: Atom
    creation: int
    ids: tuple


def _atom_enc(a: Atom) -> bytes:
    b = a.name.encode()
    if len(b) < 256:
        return bytes((119, len(b))) + b
    return bytes((118,)) + struct.pack(">H", len(b)) + b


def _enc(t, out: bytearray) -> None:
    if t is True or t is False:
        out += _atom_enc(Atom("true" if t else "false"))
    elif isinstance(t, int):
        if 0 <= t < 256:
            out += bytes((97, t))
        elif -(2**31) <= t < 2**31:
            out += b"b" + struct.pack(">i", t)
        else:
            sign = 1 if t < 0 else 0
            mag = abs(t)
            digits = mag.to_bytes((mag.bit_length() + 7) // 8, "little")
            out += bytes((110, len(digits), sign)) + digits
    elif isinstance(t, Atom):
        out += _atom_enc(t)
    elif isinstance(t, Pid):
        out += b"X" + _atom_enc(t.node) + struct.pack(">III", t.id, t.serial, t.creation)
    elif isinstance(t, Reference):
        out += b"Z" + struct.pack(">H", len(t.ids)) + _atom_enc(t.node)
        out += struct.pack(">I", t.creation) + b"".join(struct.pack(">I", i) for i in t.ids)
    elif isinstance(t, tuple):
        if len(t) < 256:
            out += bytes((104, len(t)))
        else:
            out += b"i" + struct.pack(">I", len(t))
        for x in t:
            _enc(x, out)
    elif isinstance(t, list):
        if not t:
            out += b"j"
            return
        out += b"l" + struct.pack(">I", len(t))
        for x in t:
            _enc(x, out)
        out += b"j"
    elif isinstance(t, (bytes, bytearray)):
        out += b"m" + struct.pack(">I", len(t)) + bytes(t)
    else:
        raise EncodeError(f"shim cannot encode {t!r}")


def encode(term, *, versioned: bool = True) -> bytes:
    out = bytearray(b"\x83" if versioned else b"")
    _enc(term, out)
    return bytes(out)


def _need(d, o: int, n: int) -> None:
    if o + n > len(d):
        raise DecodeError("truncated", o)


def _dec(d, o: int, depth: int, lim: Limits):
    if depth > lim.max_depth:
        raise DecodeError("too deep", o)
    _need(d, o, 1)
    tag = d[o]
    o += 1
    if tag == 97:
        _need(d, o, 1)
        return d[o], o + 1
    if tag == 98:
        _need(d, o, 4)
        return struct.unpack_from(">i", d, o)[0], o + 4
    if tag == 110:
        _need(d, o, 2)
        n, sign = d[o], d[o + 1]
        _need(d, o + 2, n)
        v = int.from_bytes(bytes(d[o + 2 : o + 2 + n]), "little")
        return (-v if sign else v), o + 2 + n
    if tag in (119, 115):
        _need(d, o, 1)
        n = d[o]
        _need(d, o + 1, n)
        return Atom(bytes(d[o + 1 : o + 1 + n]).decode("utf-8", "replace")), o + 1 + n
    if tag in (118, 100):
        _need(d, o, 2)
        n = struct.unpack_from(">H", d, o)[0]
        _need(d, o + 2, n)
        return Atom(bytes(d[o + 2 : o + 2 + n]).decode("utf-8", "replace")), o + 2 + n
    if tag == 88:
        node, o = _dec(d, o, depth + 1, lim)
        if not isinstance(node, Atom):
            raise DecodeError("pid node not atom", o)
        _need(d, o, 12)
        i, s, c = struct.unpack_from(">III", d, o)
        return Pid(node, i, s, c), o + 12
    if tag == 90:
        _need(d, o, 2)
        n = struct.unpack_from(">H", d, o)[0]
        if n > 5:
            raise DecodeError("ref too long", o)
        node, o = _dec(d, o + 2, depth + 1, lim)
        if not isinstance(node, Atom):
            raise DecodeError("ref node not atom", o)
        _need(d, o, 4 + 4 * n)
        c = struct.unpack_from(">I", d, o)[0]
        ids = struct.unpack_from(f">{n}I", d, o + 4)
        return Reference(node, c, tuple(ids)), o + 4 + 4 * n
    if tag in (104, 105):
        if tag == 104:
            _need(d, o, 1)
            n, o = d[o], o + 1
        else:
            _need(d, o, 4)
            n, o = struct.unpack_from(">I", d, o)[0], o + 4
        if n > len(d) - o:
            raise DecodeError("tuple arity exceeds data", o)
        items = []
        for _ in range(n):
            x, o = _dec(d, o, depth + 1, lim)
            items.append(x)
        return tuple(items), o
    if tag == 106:
        return [], o
    if tag == 107:
        _need(d, o, 2)
        n = struct.unpack_from(">H", d, o)[0]
        _need(d, o + 2, n)
        return list(d[o + 2 : o + 2 + n]), o + 2 + n
    if tag == 108:
        _need(d, o, 4)
        n, o = struct.unpack_from(">I", d, o)[0], o + 4
        if n > len(d) - o:
            raise DecodeError("list length exceeds data", o)
        items = []
        for _ in range(n):
            x, o = _dec(d, o, depth + 1, lim)
            items.append(x)
        tail, o = _dec(d, o, depth + 1, lim)
        if tail != []:
            raise DecodeError("improper list unsupported by shim", o)
        return items, o
    if tag == 109:
        _need(d, o, 4)
        n = struct.unpack_from(">I", d, o)[0]
        _need(d, o + 4, n)
        return bytes(d[o + 4 : o + 4 + n]), o + 4 + n
    raise DecodeError(f"shim: unsupported tag {tag}", o - 1)


def decode_at(data, offset: int = 0, limits: Limits = DEFAULT_LIMITS, *, versioned: bool = True):
    o = offset
    if versioned:
        if o >= len(data) or data[o] != 131:
            raise DecodeError("missing version byte 131", o)
        o += 1
    return _dec(data, o, 0, limits)


def decode(data, limits: Limits = DEFAULT_LIMITS):
    t, end = decode_at(data, 0, limits)
    if end != len(data):
        raise DecodeError("trailing bytes", end)
    return t


def skip_at(data, offset: int = 0, limits: Limits = DEFAULT_LIMITS, versioned: bool = True) -> int:
    return decode_at(data, offset, limits, versioned=versioned)[1]
