"""Handshake message bodies (dist-protocol.md 2.2): encoders and strict parsers.

Bodies only; the u16 length is :mod:`framing`'s job. Parsers raise
:class:`HandshakeError` naming the step, never IndexError/struct.error.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import ProtocolError

__all__ = [
    "TAG_NAME", "TAG_OLD_NAME", "TAG_STATUS", "TAG_COMPLEMENT", "TAG_REPLY", "TAG_ACK",
    "VERSION_5", "VERSION_6", "DIGEST_LEN",
    "STATUS_OK", "STATUS_OK_SIMULTANEOUS", "STATUS_NOK", "STATUS_NOT_ALLOWED",
    "STATUS_ALIVE", "STATUS_NAMED_PREFIX", "STATUS_TRUE", "STATUS_FALSE",
    "CONTINUE_STATUSES", "KNOWN_STATUSES",
    "HandshakeError", "WrongCookie",
    "SendName", "Challenge", "Complement", "ChallengeReply", "ChallengeAck",
    "gen_digest", "encode_name", "encode_status", "encode_challenge", "encode_complement",
    "encode_reply", "encode_ack", "parse_name", "parse_status", "parse_challenge",
    "parse_complement", "parse_reply", "parse_ack",
]

TAG_NAME = ord("N")  # send_name (v6) and the acceptor's challenge
TAG_OLD_NAME = ord("n")  # v5 send_name (OTP 23/24 without epmd info)
TAG_STATUS = ord("s")
TAG_COMPLEMENT = ord("c")
TAG_REPLY = ord("r")
TAG_ACK = ord("a")

VERSION_5 = 5
VERSION_6 = 6
DIGEST_LEN = 16

STATUS_OK = "ok"
STATUS_OK_SIMULTANEOUS = "ok_simultaneous"
STATUS_NOK = "nok"
STATUS_NOT_ALLOWED = "not_allowed"
STATUS_ALIVE = "alive"
STATUS_NAMED_PREFIX = "named:"
STATUS_TRUE = "true"
STATUS_FALSE = "false"
#: Statuses after which the handshake goes on to the challenge.
CONTINUE_STATUSES = frozenset({STATUS_OK, STATUS_OK_SIMULTANEOUS})
#: Statuses an acceptor may send (besides ``named:``).
KNOWN_STATUSES = frozenset(
    {STATUS_OK, STATUS_OK_SIMULTANEOUS, STATUS_NOK, STATUS_NOT_ALLOWED, STATUS_ALIVE}
)

_NAME = struct.Struct(">BQIH")  # tag, flags, creation, nlen
_OLD_NAME = struct.Struct(">BHI")  # tag, version, flags32
_CHALLENGE = struct.Struct(">BQIIH")  # tag, flags, challenge, creation, nlen
_COMPLEMENT = struct.Struct(">BII")  # tag, flags_high, creation
_REPLY = struct.Struct(">BI16s")  # tag, challenge, digest
_ACK = struct.Struct(">B16s")  # tag, digest
_U32 = 0xFFFFFFFF


class HandshakeError(ProtocolError):
    """A handshake message is malformed or out of place. ``step`` names where."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        super().__init__(f"{step}: {reason}")


class WrongCookie(HandshakeError):
    """A digest did not verify: the peer does not hold the cookie of this leg."""


def gen_digest(challenge: int, cookie: bytes) -> bytes:
    """md5(cookie ++ decimal(challenge)), as dist_util's gen_digest."""
    return hashlib.md5(cookie + str(challenge & _U32).encode("ascii")).digest()


@dataclass(frozen=True, slots=True)
class SendName:
    """First message of an initiator. ``creation``/high flags are None/0 for a v5 ``'n'``."""

    version: int
    flags: int
    creation: int | None
    name: bytes


@dataclass(frozen=True, slots=True)
class Challenge:
    flags: int
    challenge: int
    creation: int
    name: bytes


@dataclass(frozen=True, slots=True)
class Complement:
    flags_high: int
    creation: int


@dataclass(frozen=True, slots=True)
class ChallengeReply:
    challenge: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class ChallengeAck:
    digest: bytes


def _tag(body: bytes | memoryview, step: str) -> int:
    if not body:
        raise HandshakeError(step, "empty message")
    return body[0]


# -- encoders --------------------------------------------------------------------------


def encode_name(flags: int, creation: int, name: bytes) -> bytes:
    """A version-6 ``'N'`` send_name (the proxy never emits ``'n'``)."""
    return _NAME.pack(TAG_NAME, flags, creation, len(name)) + name


def encode_status(status: str) -> bytes:
    return bytes((TAG_STATUS,)) + status.encode("ascii")


def encode_challenge(flags: int, challenge: int, creation: int, name: bytes) -> bytes:
    return _CHALLENGE.pack(TAG_NAME, flags, challenge, creation, len(name)) + name


def encode_complement(flags_high: int, creation: int) -> bytes:
    return _COMPLEMENT.pack(TAG_COMPLEMENT, flags_high, creation)


def encode_reply(challenge: int, digest: bytes) -> bytes:
    return _REPLY.pack(TAG_REPLY, challenge, digest)


def encode_ack(digest: bytes) -> bytes:
    return _ACK.pack(TAG_ACK, digest)


# -- parsers ---------------------------------------------------------------------------


def parse_name(body: bytes | memoryview, step: str = "send_name") -> SendName:
    """``'N'`` (v6) or ``'n'`` (v5). Trailing bytes after a v6 name are ignored, as OTP does."""
    tag = _tag(body, step)
    if tag == TAG_NAME:
        if len(body) < _NAME.size:
            raise HandshakeError(step, f"'N' too short ({len(body)} bytes)")
        _, flags, creation, nlen = _NAME.unpack_from(body)
        end = _NAME.size + nlen
        if len(body) < end:
            raise HandshakeError(step, f"name length {nlen} exceeds message")
        return SendName(VERSION_6, flags, creation, bytes(body[_NAME.size : end]))
    if tag == TAG_OLD_NAME:
        if len(body) < _OLD_NAME.size:
            raise HandshakeError(step, f"'n' too short ({len(body)} bytes)")
        _, version, flags = _OLD_NAME.unpack_from(body)
        return SendName(version, flags, None, bytes(body[_OLD_NAME.size :]))
    raise HandshakeError(step, f"expected 'N' or 'n', got byte {tag}")


def parse_status(body: bytes | memoryview, step: str = "status") -> str:
    """The text of an ``'s'`` message (ASCII; anything else is an error)."""
    if _tag(body, step) != TAG_STATUS:
        raise HandshakeError(step, f"expected 's', got byte {body[0]}")
    raw = bytes(body[1:])
    if not raw.isascii():
        raise HandshakeError(step, f"non-ASCII status {raw!r}")
    return raw.decode("ascii")


def parse_challenge(body: bytes | memoryview, step: str = "challenge") -> Challenge:
    if _tag(body, step) != TAG_NAME:
        raise HandshakeError(step, f"expected 'N' challenge, got byte {body[0]}")
    if len(body) < _CHALLENGE.size:
        raise HandshakeError(step, f"challenge too short ({len(body)} bytes)")
    _, flags, challenge, creation, nlen = _CHALLENGE.unpack_from(body)
    end = _CHALLENGE.size + nlen
    if len(body) < end:
        raise HandshakeError(step, f"name length {nlen} exceeds message")
    return Challenge(flags, challenge, creation, bytes(body[_CHALLENGE.size : end]))


def parse_complement(body: bytes | memoryview, step: str = "complement") -> Complement:
    if _tag(body, step) != TAG_COMPLEMENT:
        raise HandshakeError(step, f"expected 'c', got byte {body[0]}")
    if len(body) != _COMPLEMENT.size:
        raise HandshakeError(step, f"'c' must be {_COMPLEMENT.size} bytes, got {len(body)}")
    _, high, creation = _COMPLEMENT.unpack_from(body)
    return Complement(high, creation)


def parse_reply(body: bytes | memoryview, step: str = "challenge_reply") -> ChallengeReply:
    if _tag(body, step) != TAG_REPLY:
        raise HandshakeError(step, f"expected 'r', got byte {body[0]}")
    if len(body) != _REPLY.size:
        raise HandshakeError(step, f"'r' must be {_REPLY.size} bytes, got {len(body)}")
    _, challenge, digest = _REPLY.unpack_from(body)
    return ChallengeReply(challenge, digest)


def parse_ack(body: bytes | memoryview, step: str = "challenge_ack") -> ChallengeAck:
    if _tag(body, step) != TAG_ACK:
        raise HandshakeError(step, f"expected 'a', got byte {body[0]}")
    if len(body) != _ACK.size:
        raise HandshakeError(step, f"'a' must be {_ACK.size} bytes, got {len(body)}")
    return ChallengeAck(_ACK.unpack_from(body)[1])
