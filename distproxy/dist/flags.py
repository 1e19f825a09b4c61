"""Distribution capability flags (dist-protocol.md section 3).

The proxy's one rule about flags: offer each leg the *other* leg's flags AND
:data:`PROXY_MASK`, so both real nodes end with the same set ``fa & fb & mask`` and
frames can be forwarded byte for byte. The mask drops the stateful encodings (atom
cache, fragments), the dynamic-name request and every bit this code does not know.
"""

from __future__ import annotations

from enum import IntFlag

__all__ = [
    "DFlag",
    "MANDATORY_25",
    "MANDATORY_26",
    "REJECTABLE",
    "INTERNAL",
    "RESERVED",
    "KNOWN",
    "PROXY_MASK",
    "OTP25_DEFAULT",
    "expand_digest",
    "negotiate",
    "missing_mandatory",
    "describe",
    "flag_names",
]


class DFlag(IntFlag):
    """Every distribution flag bit (dist.h / dist.hrl)."""

    PUBLISHED = 0x1
    ATOM_CACHE = 0x2
    EXTENDED_REFERENCES = 0x4
    DIST_MONITOR = 0x8
    FUN_TAGS = 0x10
    DIST_MONITOR_NAME = 0x20
    HIDDEN_ATOM_CACHE = 0x40
    NEW_FUN_TAGS = 0x80
    EXTENDED_PIDS_PORTS = 0x100
    EXPORT_PTR_TAG = 0x200
    BIT_BINARIES = 0x400
    NEW_FLOATS = 0x800
    UNICODE_IO = 0x1000
    DIST_HDR_ATOM_CACHE = 0x2000
    SMALL_ATOM_TAGS = 0x4000
    ETS_COMPRESSED = 0x8000  # internal to erts, never on the wire
    UTF8_ATOMS = 0x10000
    MAP_TAG = 0x20000
    BIG_CREATION = 0x40000
    SEND_SENDER = 0x80000
    BIG_SEQTRACE_LABELS = 0x100000
    PENDING_CONNECT = 0x200000  # internal
    EXIT_PAYLOAD = 0x400000
    FRAGMENTS = 0x800000
    HANDSHAKE_23 = 0x1000000
    UNLINK_ID = 0x2000000
    MANDATORY_25_DIGEST = 0x4000000
    SPAWN = 1 << 32
    NAME_ME = 1 << 33
    V4_NC = 1 << 34
    ALIAS = 1 << 35
    LOCAL_EXT = 1 << 36  # internal (OTP 26+)
    ALTACT_SIG = 1 << 37  # OTP 28, out of scope


#: Bits 27-31, reserved (dist.hrl DFLAG_RESERVED).
RESERVED = 0xF8000000

#: The 11 bits OTP 25 requires; also what MANDATORY_25_DIGEST stands for.
MANDATORY_25 = (
    DFlag.EXTENDED_REFERENCES
    | DFlag.FUN_TAGS
    | DFlag.NEW_FUN_TAGS
    | DFlag.EXTENDED_PIDS_PORTS
    | DFlag.EXPORT_PTR_TAG
    | DFlag.BIT_BINARIES
    | DFlag.NEW_FLOATS
    | DFlag.UTF8_ATOMS
    | DFlag.MAP_TAG
    | DFlag.BIG_CREATION
    | DFlag.HANDSHAKE_23
)
assert MANDATORY_25 == 0x1070F94

#: OTP 26 and 27 also require UNLINK_ID and V4_NC.
MANDATORY_26 = MANDATORY_25 | DFlag.UNLINK_ID | DFlag.V4_NC
assert MANDATORY_26 == 0x403070F94

#: What erts lets a node negotiate away (25.2.3: 0x802042).
REJECTABLE = (
    DFlag.ATOM_CACHE | DFlag.HIDDEN_ATOM_CACHE | DFlag.DIST_HDR_ATOM_CACHE | DFlag.FRAGMENTS
)

#: Never legitimately on the wire.
INTERNAL = DFlag.ETS_COMPRESSED | DFlag.PENDING_CONNECT | DFlag.LOCAL_EXT

#: Every bit defined above.
KNOWN = DFlag(sum(f.value for f in DFlag))

#: What the proxy lets through: known bits minus the stateful encodings (atom cache,
#: fragments), NAME_ME, internal bits and OTP 28's ALTACT_SIG (we cannot parse it).
PROXY_MASK = KNOWN & ~(REJECTABLE | DFlag.NAME_ME | INTERNAL | DFlag.ALTACT_SIG)

#: What a visible 25.2.3 node offers (0xD07DF7FBC | PUBLISHED).
OTP25_DEFAULT = DFlag(0xD07DF7FBD)


def expand_digest(flags: int) -> DFlag:
    """Apply MANDATORY_25_DIGEST the way dist_util does to a peer's flags.

    A peer setting the digest bit is treated as having every OTP 25 mandatory bit.
    It does not imply UNLINK_ID or V4_NC.
    """
    f = DFlag(flags)
    if f & DFlag.MANDATORY_25_DIGEST:
        f |= MANDATORY_25
    return f


def negotiate(a: int, b: int, mask: int = PROXY_MASK) -> DFlag:
    """The flag set both ends use: ``a & b & mask`` (after digest expansion)."""
    return DFlag(expand_digest(a) & expand_digest(b) & mask)


def missing_mandatory(flags: int, mandatory: int = MANDATORY_25) -> DFlag:
    """Mandatory bits absent from ``flags`` (digest expanded first); 0 if none."""
    return DFlag(mandatory & ~expand_digest(flags))


def flag_names(flags: int) -> list[str]:
    """Names of the set bits, unknown bits as hex (for logs)."""
    flags = int(flags)
    names = [f.name for f in DFlag if f.value & flags and f.name]
    unknown = flags & ~int(KNOWN)
    if unknown:
        names.append(hex(unknown))
    return names


def describe(flags: int) -> str:
    """``0x1070f94 [EXTENDED_REFERENCES|...]`` for log lines."""
    return f"{int(flags):#x} [{'|'.join(flag_names(flags))}]"
