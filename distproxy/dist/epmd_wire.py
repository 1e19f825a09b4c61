"""EPMD, sans-IO: wire messages, the name registry, and one server connection.

distproxy serves EPMD itself (the front EPMD that peers query, the back EPMD the trusted
node uses) and also talks to existing EPMDs as a client (to register a name, to find a
real node's port). Requests are ``u16 length`` + body; replies have no length prefix and
the server closes after PORT2_RESP and NAMES_RESP. A registration lasts as long as the
ALIVE2_REQ connection stays open (dist-protocol.md section 1).
"""

from __future__ import annotations

import itertools
import secrets
import struct
from dataclasses import dataclass
from typing import Union

from .errors import ProtocolError

ALIVE2_REQ = 120  # 'x'
ALIVE2_X_RESP = 118  # 'v': creation is u32 (registrant's highest version >= 6)
ALIVE2_RESP = 121  # 'y': creation is u16
PORT_PLEASE2_REQ = 122  # 'z'
PORT2_RESP = 119  # 'w'
NAMES_REQ = 110  # 'n'
DUMP_REQ = 100  # 'd'
KILL_REQ = 107  # 'k'
STOP_REQ = 115  # 's'

RESULT_OK = 0
RESULT_ERROR = 1
NODE_TYPE_NORMAL = 77  # 'M'
NODE_TYPE_HIDDEN = 72  # 'H'
PROTOCOL_TCP_IPV4 = 0
DIST_VERSION_HIGH = 6
DIST_VERSION_LOW = 5
VERSION_WITH_BIG_CREATION = 6
MAX_NAME_BYTES = 255  # an alive name becomes part of an atom
MAX_REQUEST_BYTES = 1024  # no legitimate EPMD request comes close
DEFAULT_EPMD_PORT = 4369

_U16 = struct.Struct(">H")
_ALIVE2_FIXED = struct.Struct(">BHBBHHH")  # tag, port, type, proto, high, low, nlen
_ALIVE2_X = struct.Struct(">BBI")
_ALIVE2_Y = struct.Struct(">BBH")
_PORT2_OK = struct.Struct(">BBHBBHHH")


class EpmdError(ProtocolError):
    """A malformed or unsupported EPMD message."""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One registered name, as PORT2_RESP describes it."""

    name: str
    port: int
    node_type: int = NODE_TYPE_NORMAL
    protocol: int = PROTOCOL_TCP_IPV4
    highest: int = DIST_VERSION_HIGH
    lowest: int = DIST_VERSION_LOW
    extra: bytes = b""
    creation: int = 0


# -- requests ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Alive2Request:
    entry: NodeEntry


@dataclass(frozen=True, slots=True)
class PortPleaseRequest:
    name: str


@dataclass(frozen=True, slots=True)
class NamesRequest:
    pass


@dataclass(frozen=True, slots=True)
class UnsupportedRequest:
    code: int


Request = Union[Alive2Request, PortPleaseRequest, NamesRequest, UnsupportedRequest]


def _name(raw: bytes, what: str) -> str:
    if not raw or len(raw) > MAX_NAME_BYTES:
        raise EpmdError(f"{what}: name of {len(raw)} bytes (1..{MAX_NAME_BYTES} allowed)")
    if not all(0x21 <= b <= 0x7E and b != 0x40 for b in raw):  # printable, no '@'
        raise EpmdError(f"{what}: name {raw!r} is not printable ASCII without '@'")
    return raw.decode("ascii")


def parse_request(body: bytes) -> Request:
    """Parse one request body (after the u16 length)."""
    if not body:
        raise EpmdError("empty request")
    code = body[0]
    if code == ALIVE2_REQ:
        if len(body) < _ALIVE2_FIXED.size:
            raise EpmdError("ALIVE2_REQ too short")
        _, port, node_type, proto, high, low, nlen = _ALIVE2_FIXED.unpack_from(body)
        end = _ALIVE2_FIXED.size + nlen
        if len(body) < end + 2:
            raise EpmdError("ALIVE2_REQ name or extra length truncated")
        name = _name(body[_ALIVE2_FIXED.size:end], "ALIVE2_REQ")
        (elen,) = _U16.unpack_from(body, end)
        extra = body[end + 2:end + 2 + elen]
        if len(extra) != elen:
            raise EpmdError("ALIVE2_REQ extra truncated")
        return Alive2Request(NodeEntry(name, port, node_type, proto, high, low, bytes(extra)))
    if code == PORT_PLEASE2_REQ:
        return PortPleaseRequest(_name(body[1:], "PORT_PLEASE2_REQ"))
    if code == NAMES_REQ:
        return NamesRequest()
    return UnsupportedRequest(code)


def encode_request(body: bytes) -> bytes:
    return _U16.pack(len(body)) + body


def alive2_request(entry: NodeEntry) -> bytes:
    name = entry.name.encode("ascii")
    return encode_request(
        _ALIVE2_FIXED.pack(ALIVE2_REQ, entry.port, entry.node_type, entry.protocol, entry.highest,
                           entry.lowest, len(name)) + name + _U16.pack(len(entry.extra)) + entry.extra
    )


def port_please_request(name: str) -> bytes:
    return encode_request(bytes([PORT_PLEASE2_REQ]) + name.encode("ascii"))


# -- responses ---------------------------------------------------------------------------
def alive2_response(ok: bool, creation: int, highest: int) -> bytes:
    result = RESULT_OK if ok else RESULT_ERROR
    if highest >= VERSION_WITH_BIG_CREATION:
        return _ALIVE2_X.pack(ALIVE2_X_RESP, result, creation & 0xFFFFFFFF)
    return _ALIVE2_Y.pack(ALIVE2_RESP, result, creation & 0xFFFF)


def port2_response(entry: NodeEntry | None) -> bytes:
    if entry is None:
        return bytes([PORT2_RESP, RESULT_ERROR])
    name = entry.name.encode("ascii")
    return (_PORT2_OK.pack(PORT2_RESP, RESULT_OK, entry.port, entry.node_type, entry.protocol,
                           entry.highest, entry.lowest, len(name))
            + name + _U16.pack(len(entry.extra)) + entry.extra)


def names_response(epmd_port: int, entries: list[NodeEntry]) -> bytes:
    text = "".join(f"name {e.name} at port {e.port}\n" for e in entries)
    return struct.pack(">I", epmd_port) + text.encode("ascii")


def parse_alive2_response(data: bytes) -> tuple[bool, int] | None:
    """``(ok, creation)`` once enough bytes are there, else None."""
    if not data:
        return None
    if data[0] == ALIVE2_X_RESP:
        if len(data) < _ALIVE2_X.size:
            return None
        _, result, creation = _ALIVE2_X.unpack_from(data)
        return result == RESULT_OK, creation
    if data[0] == ALIVE2_RESP:
        if len(data) < _ALIVE2_Y.size:
            return None
        _, result, creation = _ALIVE2_Y.unpack_from(data)
        return result == RESULT_OK, creation
    raise EpmdError(f"unexpected reply {data[0]} to ALIVE2_REQ")


def parse_port2_response(data: bytes) -> NodeEntry | None:
    """Parse a complete PORT2_RESP (the server closes after it). Raises on 'not found'."""
    if len(data) < 2 or data[0] != PORT2_RESP:
        raise EpmdError("not a PORT2_RESP")
    if data[1] != RESULT_OK:
        return None
    if len(data) < _PORT2_OK.size:
        raise EpmdError("PORT2_RESP truncated")
    _, _, port, node_type, proto, high, low, nlen = _PORT2_OK.unpack_from(data)
    end = _PORT2_OK.size + nlen
    name = data[_PORT2_OK.size:end].decode("ascii", errors="replace")
    elen = _U16.unpack_from(data, end)[0] if len(data) >= end + 2 else 0
    return NodeEntry(name, port, node_type, proto, high, low, bytes(data[end + 2:end + 2 + elen]))


# -- the registry ------------------------------------------------------------------------
class EpmdRegistry:
    """Names and ports, as one EPMD daemon holds them.

    ``register`` is what an ALIVE2_REQ does (fails if the name is taken); ``register_static``
    is distproxy advertising one of its own listeners. Creations are non-zero and change
    on every registration, so a restarted node is a new incarnation for its peers.
    """

    def __init__(self) -> None:
        self._entries: dict[str, NodeEntry] = {}
        self._creations = itertools.count(secrets.randbelow(1 << 30) + 1)

    def _next_creation(self) -> int:
        return next(self._creations) & 0xFFFFFFFF or 1

    def register(self, entry: NodeEntry) -> NodeEntry | None:
        if entry.name in self._entries:
            return None
        registered = NodeEntry(entry.name, entry.port, entry.node_type, entry.protocol, entry.highest,
                               entry.lowest, entry.extra, self._next_creation())
        self._entries[entry.name] = registered
        return registered

    def register_static(self, name: str, port: int) -> NodeEntry:
        entry = NodeEntry(name, port, creation=self._next_creation())
        self._entries[name] = entry
        return entry

    def unregister(self, name: str, entry: NodeEntry | None = None) -> None:
        """Remove ``name`` (only if it is still ``entry``, when given)."""
        if entry is None or self._entries.get(name) is entry:
            self._entries.pop(name, None)

    def lookup(self, name: str) -> NodeEntry | None:
        return self._entries.get(name)

    def names(self) -> list[NodeEntry]:
        return list(self._entries.values())


# -- one server connection ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes
    close: bool  # the server closes after this reply


class EpmdServerConnection:
    """One client of distproxy's EPMD: ``receive_data`` returns replies to write.

    ``local`` says whether the client is on this host: as the real epmd does, a remote
    ALIVE2_REQ is refused (only local nodes may register).
    """

    def __init__(self, registry: EpmdRegistry, epmd_port: int, local: bool) -> None:
        self.registry = registry
        self.epmd_port = epmd_port
        self.local = local
        self.buffer = bytearray()
        self.registered: NodeEntry | None = None
        self.closed = False

    def receive_data(self, data: bytes) -> list[Reply]:
        if self.closed:
            return []
        if self.registered is not None:
            return []  # a registration socket carries nothing after ALIVE2
        self.buffer += data
        if len(self.buffer) < _U16.size:
            return []
        (size,) = _U16.unpack_from(self.buffer)
        if size > MAX_REQUEST_BYTES:
            raise EpmdError(f"request of {size} bytes is larger than any EPMD request")
        if len(self.buffer) < _U16.size + size:
            return []
        body = bytes(self.buffer[_U16.size:_U16.size + size])
        del self.buffer[:_U16.size + size]
        return [self._handle(parse_request(body))]

    def _handle(self, request: Request) -> Reply:
        if isinstance(request, PortPleaseRequest):
            self.closed = True
            return Reply(port2_response(self.registry.lookup(request.name)), close=True)
        if isinstance(request, NamesRequest):
            self.closed = True
            return Reply(names_response(self.epmd_port, self.registry.names()), close=True)
        if isinstance(request, Alive2Request):
            if not self.local:
                raise EpmdError("ALIVE2_REQ from a remote host is refused")
            entry = self.registry.register(request.entry)
            if entry is None:
                # Like epmd: result 1, connection closed.
                self.closed = True
                return Reply(alive2_response(False, 0, request.entry.highest), close=True)
            self.registered = entry
            return Reply(alive2_response(True, entry.creation, request.entry.highest), close=False)
        raise EpmdError(f"unsupported EPMD request {request.code}")

    def connection_lost(self) -> None:
        if self.registered is not None:
            self.registry.unregister(self.registered.name, self.registered)
            self.registered = None
