"""Sans-IO fake real nodes that behave like dist_util (written independently of
distproxy.dist.handshake, with struct/hashlib, so the tests check the proxy against
the protocol rather than against itself)."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

OTP25_FLAGS = 0xD07DF7FBD
MANDATORY_25 = 0x1070F94
DIGEST_BIT = 0x4000000


def digest(cookie: bytes, challenge: int) -> bytes:
    return hashlib.md5(cookie + str(challenge).encode()).digest()


def expand(flags: int) -> int:
    return flags | MANDATORY_25 if flags & DIGEST_BIT else flags


def p2(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


class _Packets:
    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while len(self.buf) >= 2:
            n = struct.unpack(">H", self.buf[:2])[0]
            if len(self.buf) < 2 + n:
                break
            out.append(self.buf[2 : 2 + n])
            self.buf = self.buf[2 + n :]
        return out


@dataclass
class FakeInitiator:
    """A real node dialling ``target`` (through the proxy)."""

    name: str
    cookie: bytes
    target: str
    flags: int = OTP25_FLAGS
    creation: int = 0x6B12C0DE
    challenge: int = 0x11223344
    alive_answer: bool = True
    old: bool = False  # send 'n' then 'c', like OTP 23/24 without epmd info
    early_data: bytes = b""  # data frames sent right after the final 'a' is verified
    pipelined: bytes = b""  # bytes sent right behind 'r' (a misbehaving pipelining dialler)
    state: str = "start"
    status: str | None = None
    peer_flags: int = 0
    peer_creation: int = 0
    peer_name: str = ""
    negotiated: int | None = None
    error: str | None = None
    received_after: bytes = b""
    _p: _Packets = field(default_factory=_Packets)
    _their_challenge: int = 0

    def start(self) -> bytes:
        self.state = "status"
        if self.old:
            body = b"n" + struct.pack(">HI", 5, self.flags & 0xFFFFFFFF) + self.name.encode()
        else:
            body = b"N" + struct.pack(">QIH", self.flags, self.creation, len(self.name))
            body += self.name.encode()
        return p2(body)

    def feed(self, data: bytes) -> bytes:
        if self.state == "done":
            self.received_after += data
            return b""
        out = b""
        for m in self._p.feed(data):
            out += self._msg(m)
            if self.state in ("done", "closed", "error"):
                if self.state == "done":
                    self.received_after += self._p.buf
                break
        return out

    def _msg(self, m: bytes) -> bytes:
        if self.state == "status":
            assert m[:1] == b"s", m
            self.status = m[1:].decode()
            if self.status in ("ok", "ok_simultaneous"):
                self.state = "challenge"
            elif self.status == "alive":
                self.state = "challenge" if self.alive_answer else "closed"
                return p2(b"strue" if self.alive_answer else b"sfalse")
            else:
                self.state = "closed"
            return b""
        if self.state == "challenge":
            if m[:1] != b"N":
                self.state, self.error = "error", f"bad challenge {m!r}"
                return b""
            flags, ch, creation, nlen = struct.unpack(">QIIH", m[1:19])
            self.peer_flags, self.peer_creation = flags, creation
            self.peer_name = m[19 : 19 + nlen].decode()
            if self.peer_name != self.target:
                self.state, self.error = "error", "no_node"
                return b""
            self.negotiated = self.flags & expand(flags)
            self._their_challenge = ch
            self.state = "ack"
            out = b""
            if self.old:
                out += p2(b"c" + struct.pack(">II", self.flags >> 32, self.creation))
            out += p2(b"r" + struct.pack(">I", self.challenge) + digest(self.cookie, ch))
            return out + self.pipelined
        if self.state == "ack":
            if m != b"a" + digest(self.cookie, self.challenge):
                self.state, self.error = "error", "bad ack"
                return b""
            self.state = "done"
            return self.early_data
        raise AssertionError(f"message in state {self.state}: {m!r}")


@dataclass
class FakeAcceptor:
    """A real node (T) accepting the proxy's dial; cookies per peer name."""

    name: str
    cookies: dict[str, bytes]
    flags: int = OTP25_FLAGS
    creation: int = 0x5EED0001
    challenge: int = 0x99887766
    status: str = "ok"
    early_data: bytes = b""  # data frames sent right after 'a'
    state: str = "name"
    peer_name: str = ""
    peer_flags: int = 0
    peer_creation: int = 0
    alive_answer: str | None = None
    negotiated: int | None = None
    error: str | None = None
    seen_versions: list[int] = field(default_factory=list)
    _p: _Packets = field(default_factory=_Packets)

    def feed(self, data: bytes) -> bytes:
        out = b""
        for m in self._p.feed(data):
            out += self._msg(m)
            if self.state in ("done", "closed", "error"):
                break
        return out

    def _challenge(self) -> bytes:
        self.state = "reply"
        body = b"N" + struct.pack(">QIIH", self.flags, self.challenge, self.creation, len(self.name))
        return p2(body + self.name.encode())

    def _msg(self, m: bytes) -> bytes:
        if self.state == "name":
            assert m[:1] == b"N", "the proxy must only send 'N'"
            flags, creation, nlen = struct.unpack(">QIH", m[1:15])
            self.peer_flags, self.peer_creation = flags, creation
            self.peer_name = m[15 : 15 + nlen].decode()
            if self.peer_name not in self.cookies:
                self.state = "closed"
                return p2(b"snot_allowed")
            out = p2(b"s" + self.status.encode())
            if self.status in ("ok", "ok_simultaneous"):
                return out + self._challenge()
            if self.status == "alive":
                self.state = "alive"
                return out
            self.state = "closed"
            return out
        if self.state == "alive":
            self.alive_answer = m.decode()
            if m == b"strue":
                return self._challenge()
            self.state = "closed"
            return b""
        if self.state == "reply":
            assert len(m) == 21 and m[:1] == b"r", m
            ch = struct.unpack(">I", m[1:5])[0]
            if m[5:] != digest(self.cookies[self.peer_name], self.challenge):
                self.state, self.error = "closed", "Invalid challenge reply"
                return b""
            self.negotiated = self.flags & expand(self.peer_flags)
            self.state = "done"
            return p2(b"a" + digest(self.cookies[self.peer_name], ch)) + self.early_data
        raise AssertionError(f"message in state {self.state}: {m!r}")
