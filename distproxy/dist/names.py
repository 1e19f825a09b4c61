"""Node-name validation (dist-protocol.md 2.3 and 9.2.1).

The accepting VM turns a dialler's name into an atom *before* authentication, so the
proxy validates it first, more strictly than OTP: only names a policy would expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidNodeName

__all__ = ["NodeName", "InvalidNodeName", "parse_node_name", "MAX_NODE_NAME", "MAX_ALIVE"]

#: An atom holds at most 255 characters.
MAX_NODE_NAME = 255
#: EPMD and the 'N' message carry the name length as u16, but an atom caps it anyway.
MAX_ALIVE = MAX_NODE_NAME

_ALIVE_RE = re.compile(rb"[A-Za-z0-9_-]+")
_HOST_RE = re.compile(rb"[!-~]+")  # printable ASCII, no space


@dataclass(frozen=True, slots=True)
class NodeName:
    """``alive@host``; ``full`` is the whole name (the atom text)."""

    alive: str
    host: str
    full: str

    def __str__(self) -> str:
        return self.full


def parse_node_name(raw: bytes | bytearray | memoryview) -> NodeName:
    """Validate ``alive@host`` bytes. Raises :class:`InvalidNodeName` with a reason."""
    raw = bytes(raw)
    if not raw:
        raise InvalidNodeName("empty node name")
    if len(raw) > MAX_NODE_NAME:
        raise InvalidNodeName(f"node name longer than {MAX_NODE_NAME} bytes ({len(raw)})")
    if raw.count(b"@") != 1:
        raise InvalidNodeName(f"node name must contain exactly one '@': {raw!r}")
    alive, host = raw.split(b"@")
    if not alive:
        raise InvalidNodeName(f"empty name part: {raw!r}")
    if not host:
        raise InvalidNodeName(f"empty host part: {raw!r}")
    if not _ALIVE_RE.fullmatch(alive):
        raise InvalidNodeName(f"name part must match [A-Za-z0-9_-]+: {raw!r}")
    if not _HOST_RE.fullmatch(host):
        raise InvalidNodeName(f"host part must be printable ASCII without spaces: {raw!r}")
    full = raw.decode("ascii")
    return NodeName(alive.decode("ascii"), host.decode("ascii"), full)


def parse_alive(raw: bytes | bytearray | memoryview) -> str:
    """Validate the short (alive) part alone, as EPMD carries it."""
    raw = bytes(raw)
    if not raw or len(raw) > MAX_ALIVE or not _ALIVE_RE.fullmatch(raw):
        raise InvalidNodeName(f"bad short node name {raw!r}")
    return raw.decode("ascii")
