"""Python types for the Erlang terms that have no natural Python counterpart.

All are small, immutable (``__slots__`` plus a refusing ``__setattr__``) and hashable, and
compare with Erlang exact equality: an ``Atom`` never equals a ``str`` (nor ``True``), a
``Pid`` never equals a tuple. The decoder builds instances through the ``_new_*`` helpers,
which skip the public constructors' validation (the decoder has already checked the bytes)
and are several times faster than frozen dataclasses on the hot path.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable

_new = object.__new__
_setattr = object.__setattr__


class _Record:
    """Shared behaviour: value equality on the fields, immutability, a readable repr."""

    __slots__ = ()
    _fields_of: Callable[[Any], Any]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented if not isinstance(other, _Record) else False
        return self._fields_of(self) == other._fields_of(other)  # type: ignore[attr-defined]

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._fields_of(self)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self):
        return (type(self), self._fields_of(self))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo: dict) -> "_Record":
        return self


def _setters(cls: type) -> tuple:
    return tuple(cls.__dict__[name].__set__ for name in cls.__slots__)


class Atom(_Record):
    """An Erlang atom. ``Atom('true')`` is not ``True`` and ``Atom('a') != 'a'``."""

    __slots__ = ("name", "_hash")

    def __init__(self, name: str) -> None:
        if type(name) is not str:
            raise TypeError(f"Atom name must be str, got {type(name).__name__}")
        if len(name) > 255:
            raise ValueError("Atom name longer than 255 characters")
        _setattr(self, "name", name)
        _setattr(self, "_hash", hash(("atom", name)))

    _fields_of = attrgetter("name")

    def __eq__(self, other: object) -> bool:
        if type(other) is Atom:
            return self.name == other.name  # type: ignore[union-attr]
        return NotImplemented if not isinstance(other, _Record) else False

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Atom({self.name!r})"

    def __reduce__(self):
        return (Atom, (self.name,))


_atom_name_set, _atom_hash_set = _setters(Atom)


def _new_atom(name: str) -> Atom:
    obj = _new(Atom)
    _atom_name_set(obj, name)
    _atom_hash_set(obj, hash(("atom", name)))
    return obj


def _check_u32(name: str, value: object, bits: int = 32) -> None:
    if type(value) is not int or not 0 <= value < (1 << bits):  # type: ignore[operator]
        raise ValueError(f"{name} must be an int in [0, 2**{bits}), got {value!r}")


def _check_atom(name: str, value: object) -> None:
    if type(value) is not Atom:
        raise TypeError(f"{name} must be an Atom, got {type(value).__name__}")


class Pid(_Record):
    """An Erlang pid as NEW_PID_EXT carries it (ID and Serial are 32-bit with V4_NC)."""

    __slots__ = ("node", "id", "serial", "creation")
    _fields_of = attrgetter(*__slots__)

    node: Atom
    id: int
    serial: int
    creation: int

    def __init__(self, node: Atom, id: int, serial: int, creation: int) -> None:
        _check_atom("Pid.node", node)
        _check_u32("Pid.id", id)
        _check_u32("Pid.serial", serial)
        _check_u32("Pid.creation", creation)
        for name, value in zip(self.__slots__, (node, id, serial, creation)):
            _setattr(self, name, value)

    def __hash__(self) -> int:
        return hash((self.node, self.id, self.serial, self.creation, 0x5049))


_pid_sets = _setters(Pid)


def _new_pid(node: Atom, id: int, serial: int, creation: int,
             _s: tuple = _pid_sets) -> Pid:
    obj = _new(Pid)
    _s[0](obj, node)
    _s[1](obj, id)
    _s[2](obj, serial)
    _s[3](obj, creation)
    return obj


class Port(_Record):
    """An Erlang port; ``id`` is up to 64 bits (V4_PORT_EXT)."""

    __slots__ = ("node", "id", "creation")
    _fields_of = attrgetter(*__slots__)

    node: Atom
    id: int
    creation: int

    def __init__(self, node: Atom, id: int, creation: int) -> None:
        _check_atom("Port.node", node)
        _check_u32("Port.id", id, 64)
        _check_u32("Port.creation", creation)
        for name, value in zip(self.__slots__, (node, id, creation)):
            _setattr(self, name, value)


_port_sets = _setters(Port)


def _new_port(node: Atom, id: int, creation: int, _s: tuple = _port_sets) -> Port:
    obj = _new(Port)
    _s[0](obj, node)
    _s[1](obj, id)
    _s[2](obj, creation)
    return obj


class Reference(_Record):
    """An Erlang reference: node, creation and 1..5 32-bit words (first word 18 bits)."""

    __slots__ = ("node", "creation", "ids")
    _fields_of = attrgetter(*__slots__)

    node: Atom
    creation: int
    ids: tuple[int, ...]

    def __init__(self, node: Atom, creation: int, ids: tuple[int, ...]) -> None:
        _check_atom("Reference.node", node)
        _check_u32("Reference.creation", creation)
        ids = tuple(ids)
        if not 1 <= len(ids) <= 5:
            raise ValueError("Reference.ids must hold 1..5 words")
        for word in ids:
            _check_u32("Reference.ids[]", word)
        for name, value in zip(self.__slots__, (node, creation, ids)):
            _setattr(self, name, value)


_ref_sets = _setters(Reference)


def _new_ref(node: Atom, creation: int, ids: tuple, _s: tuple = _ref_sets) -> Reference:
    obj = _new(Reference)
    _s[0](obj, node)
    _s[1](obj, creation)
    _s[2](obj, ids)
    return obj


class Export(_Record):
    """``fun Module:Function/Arity`` (EXPORT_EXT)."""

    __slots__ = ("module", "function", "arity")
    _fields_of = attrgetter(*__slots__)

    module: Atom
    function: Atom
    arity: int

    def __init__(self, module: Atom, function: Atom, arity: int) -> None:
        _check_atom("Export.module", module)
        _check_atom("Export.function", function)
        _check_u32("Export.arity", arity, 8)
        for name, value in zip(self.__slots__, (module, function, arity)):
            _setattr(self, name, value)


_export_sets = _setters(Export)


def _new_export(module: Atom, function: Atom, arity: int,
                _s: tuple = _export_sets) -> Export:
    obj = _new(Export)
    _s[0](obj, module)
    _s[1](obj, function)
    _s[2](obj, arity)
    return obj


class Fun(_Record):
    """A local fun (NEW_FUN_EXT): code identity, creator pid and captured free variables."""

    __slots__ = ("module", "arity", "uniq", "index", "old_index", "old_uniq", "pid",
                 "free_vars")
    _fields_of = attrgetter(*__slots__)

    module: Atom
    arity: int
    uniq: bytes
    index: int
    old_index: int
    old_uniq: int
    pid: Pid
    free_vars: tuple

    def __init__(self, module: Atom, arity: int, uniq: bytes, index: int, old_index: int,
                 old_uniq: int, pid: Pid, free_vars: tuple = ()) -> None:
        _check_atom("Fun.module", module)
        _check_u32("Fun.arity", arity, 8)
        if type(uniq) is not bytes or len(uniq) != 16:
            raise ValueError("Fun.uniq must be 16 bytes")
        _check_u32("Fun.index", index)
        for name, value in (("Fun.old_index", old_index), ("Fun.old_uniq", old_uniq)):
            if type(value) is not int or not -(1 << 31) <= value < (1 << 31):
                raise ValueError(f"{name} must be a 32-bit signed int")
        if type(pid) is not Pid:
            raise TypeError("Fun.pid must be a Pid")
        values = (module, arity, uniq, index, old_index, old_uniq, pid, tuple(free_vars))
        for name, value in zip(self.__slots__, values):
            _setattr(self, name, value)


_fun_sets = _setters(Fun)


def _new_fun(*values: Any) -> Fun:
    obj = _new(Fun)
    for setter, value in zip(_fun_sets, values):
        setter(obj, value)
    return obj


class BitBinary(_Record):
    """A bitstring whose last byte holds ``bits`` (1..8) significant high bits.

    Padding bits are zeroed on construction, as OTP does, so equal bitstrings compare
    equal. The decoder returns plain ``bytes`` when the bitstring is a whole binary.
    """

    __slots__ = ("data", "bits")
    _fields_of = attrgetter(*__slots__)

    data: bytes
    bits: int

    def __init__(self, data: bytes, bits: int) -> None:
        if type(data) is not bytes or not data:
            raise ValueError("BitBinary.data must be non-empty bytes")
        if type(bits) is not int or not 1 <= bits <= 8:
            raise ValueError("BitBinary.bits must be in 1..8")
        mask = (0xFF << (8 - bits)) & 0xFF
        if data[-1] & ~mask & 0xFF:
            data = data[:-1] + bytes((data[-1] & mask,))
        _setattr(self, "data", data)
        _setattr(self, "bits", bits)

    @property
    def bit_size(self) -> int:
        """Length in bits, as ``bit_size/1``."""
        return 8 * len(self.data) - 8 + self.bits


_bitbin_sets = _setters(BitBinary)


def _new_bitbinary(data: bytes, bits: int, _s: tuple = _bitbin_sets) -> BitBinary:
    obj = _new(BitBinary)
    _s[0](obj, data)
    _s[1](obj, bits)
    return obj


class ImproperList(_Record):
    """``[I1, ..., In | Tail]`` with a non-list ``Tail``; ``items`` is a non-empty tuple."""

    __slots__ = ("items", "tail")
    _fields_of = attrgetter(*__slots__)

    items: tuple
    tail: Any

    def __init__(self, items: tuple, tail: Any) -> None:
        items = tuple(items)
        if not items:
            raise ValueError("ImproperList needs at least one item")
        if isinstance(tail, (list, ImproperList)):
            raise ValueError("ImproperList tail must not be a list (that is a proper list)")
        _setattr(self, "items", items)
        _setattr(self, "tail", tail)


_improper_sets = _setters(ImproperList)


def _new_improper(items: tuple, tail: Any, _s: tuple = _improper_sets) -> ImproperList:
    obj = _new(ImproperList)
    _s[0](obj, items)
    _s[1](obj, tail)
    return obj


class MapKey(_Record):
    """A map key Python cannot use as a plain ``dict`` key, wrapped.

    Used (by the decoder, and accepted by the encoder) for keys that are unhashable in
    Python (lists, maps, tuples containing them) and for keys that Python's ``==`` would
    merge with another key of the same map although Erlang keeps them apart (``1`` and
    ``1.0``). Equality and hash come from the key's own encoding, i.e. Erlang exact
    equality; a ``MapKey`` never equals an unwrapped term. It encodes as ``term``.
    """

    __slots__ = ("term", "_encoded")

    term: Any

    def __init__(self, term: Any) -> None:
        from .encoder import encode  # local: encoder imports this module

        _setattr(self, "term", term)
        _setattr(self, "_encoded", encode(term, versioned=False))

    _fields_of = attrgetter("_encoded")

    def __repr__(self) -> str:
        return f"MapKey({self.term!r})"

    def __reduce__(self):
        return (MapKey, (self.term,))


__all__ = ["Atom", "Pid", "Port", "Reference", "Export", "Fun", "BitBinary",
           "ImproperList", "MapKey"]
