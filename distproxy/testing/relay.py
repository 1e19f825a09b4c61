"""A raw byte relay in Twisted: the floor for any Python distribution proxy.

It sits exactly where distproxy sits (a man in the middle registered in the front EPMD
in place of the trusted node T, dialling T's real port) but forwards every byte blindly,
the handshake included: both legs must therefore share one cookie. Whatever this relay
costs, distproxy cannot cost less; the benchmark suite reports both side by side.

Run as ``python -m distproxy.testing.relay --trusted my_desktop``. It serves two EPMDs
itself (like distproxy's default): the *front* one, where peers register and where T's
name resolves to the relay, and the *back* one, where T registers its real port. It
prints one JSON line with the bound ports once it listens, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import ITCPTransport

from distproxy.dist.epmd import EpmdRegistry
from distproxy.proxy.epmd import EpmdServerFactory

HOST = "127.0.0.1"
#: Bytes asked of the kernel per read (Twisted's default is 64 KiB).
READ_SIZE = 256 * 1024


def tune(transport: ITCPTransport) -> None:
    """OTP sets TCP_NODELAY on its dist sockets; a relay that does not adds latency."""
    transport.setTcpNoDelay(True)
    transport.bufferSize = READ_SIZE  # type: ignore[attr-defined]


class _Leg(protocol.Protocol):
    def __init__(self, relay: "_Splice") -> None:
        self.relay = relay
        self.other: "_Leg | None" = None
        self.pending: list[bytes] = []

    def connectionMade(self) -> None:
        tune(self.transport)
        self.relay.leg_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        self.relay.leg_lost(self)


class _Splice:
    """The two legs of one relayed connection."""

    def __init__(self, reactor: Any, target: tuple[str, int] | None) -> None:
        self.reactor = reactor
        self.down = _Leg(self)
        self.up: _Leg | None = None
        self.target = target
        self.closed = False

    def leg_made(self, leg: _Leg) -> None:
        if leg is self.down:
            if self.target is None:
                leg.transport.loseConnection()
                return
            self.down.transport.pauseProducing()  # until upstream is connected
            factory = protocol.ClientFactory.forProtocol(lambda: self._up())
            factory.clientConnectionFailed = lambda _c, _r: self.down.transport.loseConnection()
            self.reactor.connectTCP(self.target[0], self.target[1], factory)
            return
        assert self.up is leg
        if self.closed:
            leg.transport.loseConnection()
            return
        self.down.other, self.up.other = self.up, self.down
        # Back-pressure: a full write buffer on one leg pauses reading on the other.
        self.down.transport.registerProducer(self.up.transport, True)
        self.up.transport.registerProducer(self.down.transport, True)
        for data in self.down.pending:
            self.up.transport.write(data)
        self.down.pending.clear()
        self.down.transport.resumeProducing()

    def _up(self) -> _Leg:
        self.up = _Leg(self)
        return self.up

    def leg_lost(self, leg: _Leg) -> None:
        self.closed = True
        for other in (self.down, self.up):
            if other is not None and other is not leg and other.transport is not None:
                other.transport.loseConnection()


class RelayFactory(protocol.ServerFactory):
    """Accepts dialers of T and dials T's real port (resolved in the back EPMD)."""

    noisy = False

    def __init__(self, reactor: Any, back: EpmdRegistry, trusted_alive: str) -> None:
        self.reactor = reactor
        self.back = back
        self.trusted_alive = trusted_alive

    def buildProtocol(self, addr: Any) -> _Leg:
        entry = self.back.lookup(self.trusted_alive)
        splice = _Splice(self.reactor, (HOST, entry.port) if entry is not None else None)
        return splice.down


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trusted", required=True, help="alive name of the trusted node T")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    front, back = EpmdRegistry(), EpmdRegistry()
    listener = reactor.listenTCP(0, RelayFactory(reactor, back, args.trusted), interface=HOST)
    port = listener.getHost().port
    front.register(args.trusted, port)
    front_epmd = reactor.listenTCP(0, EpmdServerFactory(front, "front_epmd"), interface=HOST)
    back_epmd = reactor.listenTCP(0, EpmdServerFactory(back, "back_epmd"), interface=HOST)
    ready = {"listen": port, "front_epmd": front_epmd.getHost().port,
             "back_epmd": back_epmd.getHost().port}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["RelayFactory", "main", "tune"]
