"""EPMD wire messages, an in-memory registry and a sans-IO server connection (section 1).

distproxy answers the EPMD queries of both sides itself (the front EPMD maps T to the
proxy's front port; the back EPMD maps each peer to its per-peer listener), and can also
register in or query an external epmd as a client. Requests are ``u16 length + body``;
responses carry no length prefix and epmd closes after PORT2_RESP and NAMES_RESP.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

from .errors import InvalidNodeName, ProtocolError
from .names import parse_alive

__all__ = [
    "EPMD_DEFAULT_PORT",
    "ALIVE2_REQ", "ALIVE2_X_RESP", "ALIVE2_RESP", "PORT_PLEASE2_REQ", "PORT2_RESP",
    "NAMES_REQ", "DUMP_REQ", "KILL_REQ", "STOP_REQ",
    "NODE_TYPE_NORMAL", "NODE_TYPE_HIDDEN", "PROTOCOL_TCP_IPV4", "RESULT_OK", "RESULT_ERROR",
    "HIGHEST_VERSION", "LOWEST_VERSION", "X_RESP_MIN_VERSION", "MAX_REQUEST",
    "EpmdError", "NodeEntry", "Alive2Request", "PortPlease2Request", "NamesRequest",
    "UnsupportedRequest", "Alive2Response", "Port2Response",
    "parse_request", "encode_alive2_req", "encode_port_please2_req", "encode_names_req",
    "encode_alive2_resp", "encode_port2_resp", "encode_port2_error", "encode_names_resp",
    "parse_alive2_resp", "parse_port2_resp", "parse_names_resp",
    "EpmdRegistry", "EpmdServerConnection", "Reply", "Close", "Registered",
]

EPMD_DEFAULT_PORT = 4369

ALIVE2_REQ = 120  # 'x'
ALIVE2_X_RESP = 118  # 'v'
ALIVE2_RESP = 121  # 'y'
PORT_PLEASE2_REQ = 122  # 'z'
PORT2_RESP = 119  # 'w'
NAMES_REQ = 110  # 'n'
DUMP_REQ = 100  # 'd'
KILL_REQ = 107  # 'k'
STOP_REQ = 115  # 's'

NODE_TYPE_NORMAL = 77  # 'M'
NODE_TYPE_HIDDEN = 72  # 'H'
PROTOCOL_TCP_IPV4 = 0
RESULT_OK = 0
RESULT_ERROR = 1
#: Versions distproxy registers with (what OTP 25.2.3 sends).
HIGHEST_VERSION = 6
LOWEST_VERSION = 5
#: Registrants whose highest version is at least this get the 32-bit 'v' reply.
X_RESP_MIN_VERSION = 6
#: Largest request body we accept (a name and extra fit easily).
MAX_REQUEST = 1024

_LEN = struct.Struct(">H")
_ALIVE2_HEAD = struct.Struct(">BHBBHHH")  # tag port type proto high low nlen
_X_RESP = struct.Struct(">BBI")
_RESP = struct.Struct(">BBH")
_PORT2_HEAD = struct.Struct(">BBHBBHHH")  # tag result port type proto high low nlen
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_MAX_CREATION = 0xFFFFFFFF
_MAX_CREATION_16 = 0xFFFF


class EpmdError(ProtocolError):
    """Malformed or unsupported EPMD traffic."""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One registration. ``name`` is the short (alive) part."""

    name: str
    port: int
    node_type: int
    protocol: int
    highest: int
    lowest: int
    extra: bytes
    creation: int


@dataclass(frozen=True, slots=True)
class Alive2Request:
    name: str
    port: int
    node_type: int
    protocol: int
    highest: int
    lowest: int
    extra: bytes


@dataclass(frozen=True, slots=True)
class PortPlease2Request:
    name: bytes  # raw: an unknown/invalid name just gets the error reply


@dataclass(frozen=True, slots=True)
class NamesRequest:
    pass


@dataclass(frozen=True, slots=True)
class UnsupportedRequest:
    tag: int


Request = Union[Alive2Request, PortPlease2Request, NamesRequest, UnsupportedRequest]


@dataclass(frozen=True, slots=True)
class Alive2Response:
    result: int
    creation: int

    @property
    def ok(self) -> bool:
        return self.result == RESULT_OK


@dataclass(frozen=True, slots=True)
class Port2Response:
    """``entry`` is None when epmd answered with an error (unknown name)."""

    result: int
    entry: NodeEntry | None


# -- requests ----------------------------------------------------------------------------


def parse_request(body: bytes | memoryview) -> Request:
    """Parse one request body (after its u16 length)."""
    body = bytes(body)
    if not body:
        raise EpmdError("empty request", 0)
    tag = body[0]
    if tag == ALIVE2_REQ:
        if len(body) < _ALIVE2_HEAD.size:
            raise EpmdError("ALIVE2_REQ too short", 0)
        _, port, ntype, proto, high, low, nlen = _ALIVE2_HEAD.unpack_from(body)
        name_end = _ALIVE2_HEAD.size + nlen
        if len(body) < name_end + _U16.size:
            raise EpmdError("ALIVE2_REQ name length exceeds request", _ALIVE2_HEAD.size)
        raw_name = body[_ALIVE2_HEAD.size : name_end]
        (elen,) = _U16.unpack_from(body, name_end)
        extra_start = name_end + _U16.size
        if len(body) != extra_start + elen:
            raise EpmdError("ALIVE2_REQ extra length does not match request", name_end)
        try:
            name = parse_alive(raw_name)
        except InvalidNodeName as e:
            raise EpmdError(f"ALIVE2_REQ: {e.reason}", _ALIVE2_HEAD.size) from e
        return Alive2Request(name, port, ntype, proto, high, low, body[extra_start:])
    if tag == PORT_PLEASE2_REQ:
        return PortPlease2Request(body[1:])
    if tag == NAMES_REQ:
        if len(body) != 1:
            raise EpmdError("NAMES_REQ with trailing bytes", 1)
        return NamesRequest()
    return UnsupportedRequest(tag)


def _with_len(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def encode_alive2_req(
    name: str,
    port: int,
    node_type: int = NODE_TYPE_NORMAL,
    protocol: int = PROTOCOL_TCP_IPV4,
    highest: int = HIGHEST_VERSION,
    lowest: int = LOWEST_VERSION,
    extra: bytes = b"",
) -> bytes:
    """ALIVE2_REQ with its length prefix (``name`` is the short name)."""
    raw = name.encode("ascii")
    body = _ALIVE2_HEAD.pack(ALIVE2_REQ, port, node_type, protocol, highest, lowest, len(raw))
    return _with_len(body + raw + _U16.pack(len(extra)) + extra)


def encode_port_please2_req(name: str) -> bytes:
    return _with_len(bytes((PORT_PLEASE2_REQ,)) + name.encode("ascii"))


def encode_names_req() -> bytes:
    return _with_len(bytes((NAMES_REQ,)))


# -- responses ---------------------------------------------------------------------------


def encode_alive2_resp(result: int, creation: int, highest: int) -> bytes:
    """'v' (32-bit creation) when the registrant speaks version 6, else 'y' (16-bit)."""
    if highest >= X_RESP_MIN_VERSION:
        return _X_RESP.pack(ALIVE2_X_RESP, result, creation & _MAX_CREATION)
    return _RESP.pack(ALIVE2_RESP, result, creation & _MAX_CREATION_16)


def encode_port2_resp(entry: NodeEntry) -> bytes:
    raw = entry.name.encode("ascii")
    head = _PORT2_HEAD.pack(
        PORT2_RESP, RESULT_OK, entry.port, entry.node_type, entry.protocol,
        entry.highest, entry.lowest, len(raw),
    )
    return head + raw + _U16.pack(len(entry.extra)) + entry.extra


def encode_port2_error() -> bytes:
    return bytes((PORT2_RESP, RESULT_ERROR))


def encode_names_resp(epmd_port: int, entries: list[NodeEntry]) -> bytes:
    lines = "".join(f"name {e.name} at port {e.port}\n" for e in entries)
    return _U32.pack(epmd_port) + lines.encode("ascii")


def parse_alive2_resp(data: bytes | memoryview) -> Alive2Response | None:
    """Parse an ALIVE2_X_RESP or ALIVE2_RESP; None if more bytes are needed."""
    data = bytes(data)
    if not data:
        return None
    if data[0] == ALIVE2_X_RESP:
        if len(data) < _X_RESP.size:
            return None
        _, result, creation = _X_RESP.unpack_from(data)
    elif data[0] == ALIVE2_RESP:
        if len(data) < _RESP.size:
            return None
        _, result, creation = _RESP.unpack_from(data)
    else:
        raise EpmdError(f"expected ALIVE2 response, got byte {data[0]}", 0)
    return Alive2Response(result, creation)


def parse_port2_resp(data: bytes | memoryview, name: str = "") -> Port2Response | None:
    """Parse a PORT2_RESP; None if more bytes are needed."""
    data = bytes(data)
    if len(data) < 2:
        return None
    if data[0] != PORT2_RESP:
        raise EpmdError(f"expected PORT2_RESP, got byte {data[0]}", 0)
    if data[1] != RESULT_OK:
        return Port2Response(data[1], None)
    if len(data) < _PORT2_HEAD.size:
        return None
    _, result, port, ntype, proto, high, low, nlen = _PORT2_HEAD.unpack_from(data)
    name_end = _PORT2_HEAD.size + nlen
    if len(data) < name_end + _U16.size:
        return None
    (elen,) = _U16.unpack_from(data, name_end)
    end = name_end + _U16.size + elen
    if len(data) < end:
        return None
    raw = data[_PORT2_HEAD.size : name_end]
    try:
        rname = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise EpmdError(f"non-ASCII node name {raw!r}", _PORT2_HEAD.size) from e
    entry = NodeEntry(rname or name, port, ntype, proto, high, low, data[name_end + 2 : end], 0)
    return Port2Response(result, entry)


def parse_names_resp(data: bytes | memoryview) -> tuple[int, list[tuple[str, int]]]:
    """Parse a complete NAMES_RESP (read until epmd closes)."""
    data = bytes(data)
    if len(data) < _U32.size:
        raise EpmdError("NAMES_RESP shorter than its port", 0)
    (port,) = _U32.unpack_from(data)
    out: list[tuple[str, int]] = []
    for line in data[_U32.size :].decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "name" and parts[2:4] == ["at", "port"]:
            try:
                out.append((parts[1], int(parts[4])))
            except ValueError:
                raise EpmdError(f"bad NAMES_RESP line {line!r}") from None
        elif line.strip():
            raise EpmdError(f"bad NAMES_RESP line {line!r}")
    return port, out


# -- registry ----------------------------------------------------------------------------


class EpmdRegistry:
    """The name table distproxy's own EPMD serves.

    Creations are non-zero 32-bit values from a counter with a random start, so every
    (re-)registration of a name gets a different creation, as with epmd.
    """

    def __init__(self, first_creation: int | None = None) -> None:
        self._nodes: dict[str, NodeEntry] = {}
        start = secrets.randbits(32) if first_creation is None else first_creation
        self._next_creation = start & _MAX_CREATION or 1

    def _creation(self) -> int:
        c = self._next_creation
        nxt = (c + 1) & _MAX_CREATION
        self._next_creation = nxt or 1
        return c

    def register(
        self,
        name: str,
        port: int,
        node_type: int = NODE_TYPE_NORMAL,
        protocol: int = PROTOCOL_TCP_IPV4,
        highest: int = HIGHEST_VERSION,
        lowest: int = LOWEST_VERSION,
        extra: bytes = b"",
    ) -> int | None:
        """Register ``name``; returns its creation, or None if the name is taken."""
        if name in self._nodes:
            return None
        creation = self._creation()
        if highest < X_RESP_MIN_VERSION:
            # old registrants get a 16-bit creation in 'y'; keep the stored one equal
            creation = (creation & _MAX_CREATION_16) or 1
        self._nodes[name] = NodeEntry(name, port, node_type, protocol, highest, lowest,
                                      bytes(extra), creation)
        return creation

    def unregister(self, name: str) -> NodeEntry | None:
        return self._nodes.pop(name, None)

    def lookup(self, name: str) -> NodeEntry | None:
        return self._nodes.get(name)

    def names(self) -> list[NodeEntry]:
        return list(self._nodes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[NodeEntry]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)


# -- server connection -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket (after writing earlier replies). ``reason`` is for the log."""

    reason: str


@dataclass(frozen=True, slots=True)
class Registered:
    entry: NodeEntry


EpmdEvent = Union[Reply, Close, Registered]


class EpmdServerConnection:
    """One client connection to distproxy's EPMD, sans-IO.

    Handles exactly one request, like epmd: ALIVE2 keeps the connection (and the
    registration) until ``connection_lost``; PORT_PLEASE2 and NAMES reply and close.
    ``local`` says whether the peer is on loopback: remote ALIVE2 is refused (epmd
    treats it as hostile), as are DUMP/KILL/STOP and unknown requests.
    """

    def __init__(self, registry: EpmdRegistry, epmd_port: int = EPMD_DEFAULT_PORT,
                 local: bool = True) -> None:
        self.registry = registry
        self.epmd_port = epmd_port
        self.local = local
        self._buf = b""
        self._done = False
        self.registered: NodeEntry | None = None

    def receive_data(self, data: bytes | memoryview) -> list[EpmdEvent]:
        if self._done:
            # epmd ignores anything after the request on a registration socket
            return []
        self._buf += bytes(data)
        if len(self._buf) < _LEN.size:
            return []
        (n,) = _LEN.unpack_from(self._buf)
        if n > MAX_REQUEST:
            return self._close(f"request length {n} exceeds {MAX_REQUEST}")
        if n == 0:
            return self._close("empty request")
        if len(self._buf) < _LEN.size + n:
            return []
        body = self._buf[_LEN.size : _LEN.size + n]
        self._buf = b""
        self._done = True
        try:
            req = parse_request(body)
        except EpmdError as e:
            return self._close(f"bad request: {e.reason}")
        return self._handle(req)

    def _close(self, reason: str) -> list[EpmdEvent]:
        self._done = True
        return [Close(reason)]

    def _handle(self, req: Request) -> list[EpmdEvent]:
        if isinstance(req, Alive2Request):
            if not self.local:
                return self._close(f"ALIVE2_REQ for {req.name} from a remote host")
            creation = self.registry.register(
                req.name, req.port, req.node_type, req.protocol, req.highest, req.lowest,
                req.extra,
            )
            if creation is None:
                resp = encode_alive2_resp(RESULT_ERROR, 0, req.highest)
                return [Reply(resp), Close(f"name {req.name} already registered")]
            entry = self.registry.lookup(req.name)
            assert entry is not None
            self.registered = entry
            return [Reply(encode_alive2_resp(RESULT_OK, creation, req.highest)), Registered(entry)]
        if isinstance(req, PortPlease2Request):
            try:
                name = parse_alive(req.name)
            except InvalidNodeName:
                entry = None
            else:
                entry = self.registry.lookup(name)
            data = encode_port2_resp(entry) if entry else encode_port2_error()
            return [Reply(data), Close("port reply sent")]
        if isinstance(req, NamesRequest):
            return [Reply(encode_names_resp(self.epmd_port, self.registry.names())),
                    Close("names reply sent")]
        return self._close(f"unsupported request {req.tag}")

    def connection_lost(self) -> NodeEntry | None:
        """The socket closed: drop this connection's registration (returned, if any)."""
        entry, self.registered = self.registered, None
        if entry is not None and self.registry.lookup(entry.name) is entry:
            self.registry.unregister(entry.name)
            return entry
        return None
