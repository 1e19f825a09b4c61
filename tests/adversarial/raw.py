"""A raw distribution client: a real handshake (sans-IO InitiatorHandshake), then any
bytes at all. It is how a hostile peer sends what no OTP API would send."""

from __future__ import annotations

import socket
import struct
from typing import Any

from distproxy.dist import flags as dflags
from distproxy.dist.control import build_frame
from distproxy.dist.handshake import InitiatorHandshake
from distproxy.term import Atom, Pid

SOCKET_TIMEOUT = 15.0
#: What a visible OTP 25 node offers, minus PUBLISHED: a hidden connection, so the
#: trusted node's global and rex do not try to sync with a client that never answers.
HIDDEN_FLAGS = 0xD07DF7FBD & ~int(dflags.DFlag.PUBLISHED)
CREATION = 0x5EED


class RawPeer:
    """One handshaken connection to distproxy's front listener, posing as ``name``."""

    def __init__(self, port: int, trusted: str, name: str, cookie: str, flags: int = HIDDEN_FLAGS) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        hs = InitiatorHandshake(trusted)
        self.sock.sendall(hs.send_name(flags, CREATION, name))
        while hs.state.name != "DONE":
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"distproxy closed the handshake in state {hs.state.name}")
            for event in hs.receive_data(chunk):
                if type(event).__name__ == "ChallengeReceived":
                    self.sock.sendall(hs.send_reply(cookie.encode()))
        self.flags = flags

    def pid(self, n: int = 1, node: str | None = None) -> Pid:
        return Pid(Atom(node or self.name), n, 0, CREATION)

    def send(self, control: tuple[Any, ...], payload: Any = None) -> None:
        self.sock.sendall(build_frame(control, payload))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_body(self, body: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """Read (and discard) until distproxy closes the connection, or ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawPeer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
