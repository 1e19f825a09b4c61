"""External Term Format codec: the trust boundary of distproxy.

Pure functions of bytes, no I/O. Hostile nodes write much of what ``decode`` reads, so
every malformed, truncated, over-limit or refused input raises :class:`DecodeError`
(``.offset``, ``.reason``) in time proportional to its length, never another exception.

Type mapping (see docs/ARCHITECTURE.md):

==================  ==========================================================
Erlang              Python
==================  ==========================================================
atom                :class:`Atom` (``.name``); never equal to ``str``. ``true`` and
                    ``false`` decode as Atoms, never ``bool``; ``encode(True)`` is
                    accepted as a convenience and gives the atom ``true``.
integer             ``int`` (bignums too)
float               ``float``; NaN/inf are refused both ways (OTP refuses them)
binary              ``bytes``
bitstring           :class:`BitBinary` ``(data, bits)``, bits 1..7 in practice;
                    padding bits are zeroed as OTP does
proper list         ``list``; STRING_EXT decodes to a list of ints (an Erlang
                    string is a list) and ``encode`` emits STRING_EXT exactly where
                    OTP does (1..65535 ints in 0..255)
improper list       :class:`ImproperList` ``(items: tuple, tail)``
tuple               ``tuple``
map                 ``dict`` in wire order (so re-encoding a decoded map is
                    byte-exact). Keys Python cannot hash (lists, maps, tuples holding
                    them) and keys Python's ``==`` would merge although Erlang keeps
                    them apart (``1`` and ``1.0`` in one map) are wrapped in
                    :class:`MapKey`, whose equality is the key's encoding.
pid / port / ref    :class:`Pid`, :class:`Port`, :class:`Reference`
fun / export        :class:`Fun`, :class:`Export`
==================  ==========================================================

``None`` and ``str`` are refused by ``encode`` (EncodeError): both are ambiguous.
Encoding maps: dicts of up to 32 keys are written in Erlang map-key order (what OTP 25
does for its sorted small maps); larger dicts are written in dict order, which for a
decoded map is the wire order. A Python-built large map therefore decodes identically on
an Erlang node but is not byte-identical to OTP's own encoding (that follows OTP's
internal hash; reproducing it is out of scope).

Equality follows Erlang exact equality where Python allows it; it cannot for numbers
(``1 == 1.0`` in Python), which is why maps need :class:`MapKey` for that case. Map keys
nested too deeply to sort (hundreds of levels) are written in dict order.

API:

- ``decode(data, limits=DEFAULT_LIMITS)``: whole input, 131 first, no trailing bytes.
- ``decode_at(data, offset=0, limits=DEFAULT_LIMITS, *, versioned=True) -> (term, end)``:
  one term; trailing bytes allowed (a dist frame has a payload after the control term).
  Accepts ``bytes`` or any buffer (``memoryview`` of the receive buffer); binaries in the
  result are always ``bytes`` copies.
- ``skip_at(data, offset=0, limits=DEFAULT_LIMITS, versioned=True) -> end``: the same
  validation and limits without building the term (except map-key uniqueness).
- ``encode(term, *, versioned=True) -> bytes``: OTP's bytes (minor_version 2).

Limits (:class:`Limits`, frozen; ``DEFAULT_LIMITS``): max_input_bytes 128 MiB,
max_depth 1024, max_terms 8 Mi, max_atom_chars 255, max_bignum_bytes 1024,
max_binary_bytes 128 MiB. Claimed lengths are checked against the bytes left before any
allocation, so a LIST_EXT claiming 2**32 elements in ten bytes fails at once.

Refused with DecodeError: compressed terms (80), ATOM_CACHE_REF (82, the dist layer's
business), FUN_EXT (117), LOCAL_EXT (121), unknown tags, NaN/infinite floats, invalid
UTF-8 atoms, atoms over 255 characters, references of 0 or more than 5 words, bitstrings
whose bit count breaks OTP's rule (1..8, and 0 exactly when empty), bignum sign bytes
other than 0/1, duplicate map keys, NEW_FUN_EXT whose Size field lies.

Performance: a recursive fast path (fast.py) decodes the common shapes and falls back to
the iterative reference decoder (decoder.py) on anything unusual; atoms and pids are
cached by their raw bytes in bounded caches (cleared when full).
"""

from __future__ import annotations

from .decoder import decode, decode_at
from .encoder import encode
from .errors import DecodeError, EncodeError
from .limits import DEFAULT_LIMITS, Limits
from .skip import skip_at
from .types import (Atom, BitBinary, Export, Fun, ImproperList, MapKey, Pid, Port,
                    Reference)

__all__ = [
    "decode", "decode_at", "encode", "skip_at", "DecodeError", "EncodeError", "Limits",
    "DEFAULT_LIMITS", "Atom", "Pid", "Port", "Reference", "Fun", "Export", "BitBinary",
    "ImproperList", "MapKey",
]
