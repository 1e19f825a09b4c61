"""Erlang term order, in the flavour OTP uses to sort map keys.

OTP 25 keeps maps of up to 32 keys sorted by key; to encode a Python-built small map
byte-identically to ``term_to_binary`` we sort its keys the same way. Map-key order is the
standard term order (number < atom < reference < fun < port < pid < tuple < map < nil <
list < bitstring) except that every integer sorts before every float. Within a type the
rules were checked against OTP 25.2.3 (tests/term, differential): pids by serial, number,
node, creation; references by node, creation, then their words as one number; ports by
node, creation, number; local funs by module, index, old_uniq, free variables; exports
after local funs, by module, function, arity.
"""

from __future__ import annotations

from typing import Any

from .errors import EncodeError
from .types import (Atom, BitBinary, Export, Fun, ImproperList, MapKey, Pid, Port,
                    Reference)

_NIL_KEY = (8,)


class TooDeepToSort(EncodeError):
    """A map key nests too deeply for the (recursive) order key; see encoder._map_items."""


def order_key(term: Any) -> tuple:
    """A Python-comparable key reproducing Erlang map-key order for ``term``."""
    try:
        return _key(term)
    except RecursionError:
        raise TooDeepToSort("map key too deeply nested to sort") from None


def _key(t: Any) -> tuple:
    cls = type(t)
    if cls is Atom:
        return (1, t.name)
    if cls is int:
        return (0, 0, t)
    if cls is bool:
        return (1, "true" if t else "false")
    if cls is float:
        return (0, 1, t)
    if cls is bytes:
        return (10, t, 8 * len(t))
    if cls is tuple:
        return (6, len(t), tuple(_key(x) for x in t))
    if cls is list:
        if not t:
            return _NIL_KEY
        return (9, tuple(_key(x) for x in t), _NIL_KEY)
    if cls is Pid:
        return (5, t.serial, t.id, t.node.name, t.creation)
    if cls is Reference:
        # node, then the words as one number (last word most significant), as OTP does
        value = 0
        for word in reversed(t.ids):
            value = (value << 32) | word
        return (2, t.node.name, t.creation, value)
    if cls is Port:
        return (4, t.node.name, t.creation, t.id)
    if cls is dict:
        keys = sorted(((_key(k), k) for k in t), key=lambda kv: kv[0])
        return (7, len(t), tuple(k for k, _ in keys), tuple(_key(t[k]) for _, k in keys))
    if cls is MapKey:
        return _key(t.term)
    if cls is ImproperList:
        return (9, tuple(_key(x) for x in t.items), _key(t.tail))
    if cls is BitBinary:
        return (10, t.data, t.bit_size)
    if cls is Export:
        return (3, 1, t.module.name, t.function.name, t.arity)
    if cls is Fun:
        # OTP 25: module, index, old_uniq, number of free variables, the free variables
        return (3, 0, t.module.name, t.index, t.old_uniq, len(t.free_vars),
                tuple(_key(x) for x in t.free_vars))
    # Subclasses of the builtin containers order as their base type.
    for base in (int, float, tuple, list, dict, bytes):
        if isinstance(t, base):
            return _key(base(t))
    if isinstance(t, (bytearray, memoryview)):
        return _key(bytes(t))
    raise EncodeError(f"cannot encode {type(t).__name__} as an Erlang term")
