"""Tag bytes of the External Term Format (erts/doc/guides/erl_ext_dist.md).

Named once here so the decoder, the encoder and the tests never use bare numbers.
"""

from __future__ import annotations

from typing import Final

VERSION: Final = 131

NEW_FLOAT_EXT: Final = 70
BIT_BINARY_EXT: Final = 77
COMPRESSED: Final = 80
ATOM_CACHE_REF: Final = 82
NEW_PID_EXT: Final = 88
NEW_PORT_EXT: Final = 89
NEWER_REFERENCE_EXT: Final = 90
SMALL_INTEGER_EXT: Final = 97
INTEGER_EXT: Final = 98
FLOAT_EXT: Final = 99
ATOM_EXT: Final = 100
REFERENCE_EXT: Final = 101
PORT_EXT: Final = 102
PID_EXT: Final = 103
SMALL_TUPLE_EXT: Final = 104
LARGE_TUPLE_EXT: Final = 105
NIL_EXT: Final = 106
STRING_EXT: Final = 107
LIST_EXT: Final = 108
BINARY_EXT: Final = 109
SMALL_BIG_EXT: Final = 110
LARGE_BIG_EXT: Final = 111
NEW_FUN_EXT: Final = 112
EXPORT_EXT: Final = 113
NEW_REFERENCE_EXT: Final = 114
SMALL_ATOM_EXT: Final = 115
MAP_EXT: Final = 116
FUN_EXT: Final = 117
ATOM_UTF8_EXT: Final = 118
SMALL_ATOM_UTF8_EXT: Final = 119
V4_PORT_EXT: Final = 120
LOCAL_EXT: Final = 121

#: Tags we recognise but refuse, with the reason given in the DecodeError.
REFUSED: Final[dict[int, str]] = {
    COMPRESSED: "compressed term (tag 80) refused: never sent by the dist encoder",
    ATOM_CACHE_REF: "ATOM_CACHE_REF (tag 82) refused: atom cache refs belong to the dist header",
    FUN_EXT: "FUN_EXT (tag 117) refused: removed from OTP",
    LOCAL_EXT: "LOCAL_EXT (tag 121) refused: node-local encoding, never valid on dist",
}

#: Human-readable names, for error messages.
NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in list(globals().items())
    if name.isupper() and isinstance(value, int) and name not in ("VERSION",)
}

#: Largest list OTP encodes as STRING_EXT (checked against OTP 25: 65535 elements).
MAX_STRING_EXT_LEN: Final = 0xFFFF
#: Port numbers above this need V4_PORT_EXT (28-bit V3 port numbers).
MAX_V3_PORT_ID: Final = 0x0FFFFFFF
#: OTP keeps maps of at most this many keys as sorted "flatmaps".
MAP_SMALL_MAP_LIMIT: Final = 32
#: NEWER_REFERENCE_EXT word count bound (OTP 25+ with V4_NC).
MAX_REF_WORDS: Final = 5
#: Atoms are at most 255 characters (erl_ext_dist.md, "ATOM_UTF8_EXT").
MAX_ATOM_CHARS: Final = 255
