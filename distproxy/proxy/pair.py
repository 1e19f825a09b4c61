"""One proxied distribution connection: two TCP legs joined by distproxy.

The *downstream* leg is the node that dialled distproxy; the *upstream* leg is the real
node it wanted, which distproxy dials. A :class:`ConnectionPair` routes bytes between
the two legs and the sans-IO objects that understand them:

1. handshake: both legs' bytes go to a ``HandshakeRelay``, whose events say what to write
   to each leg, when to dial upstream, and when the handshake is done or failed;
2. data phase: each direction has a ``FramePump`` that splits frames, asks the policy hook,
   and returns the original bytes to forward (and any polite replies to send back).

Back-pressure is Twisted's producer/consumer: each leg's transport is registered as the
producer of the other, so a slow reader pauses the fast writer instead of filling memory.
If either leg closes, the other is closed; a protocol violation closes only this pair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol, tcp
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.python.failure import Failure

from distproxy.dist import handshake as hs
from distproxy.dist.handshake_messages import STATUS_NOK
from distproxy.dist.datapath import Direction, FramePump

if TYPE_CHECKING:
    from .service import Identity, ProxyService

log = logging.getLogger("distproxy.pair")

_CLEAN_CLOSE = (ConnectionDone, ConnectionLost)

DEADLINE_CHECK_INTERVAL = 0.5  # seconds between handshake deadline checks
#: Bytes asked of the kernel per read on a leg (Twisted's default: 64 KiB). Bigger reads
#: mean fewer reactor turns per frame and more frames whole inside one read.
READ_SIZE = 256 * 1024
DOWNSTREAM = "downstream"
#: Transports whose socket send_now may use directly (tcp.Server: accepted; tcp.Client: dialled).
_PLAIN_TCP = (tcp.Server, tcp.Client)
UPSTREAM = "upstream"


def _tune_transport(transport: Any) -> None:
    """TCP_NODELAY (OTP sets it on its dist sockets: without it, Nagle and delayed ACKs
    add up to 40 ms to a round trip) and bigger reads, on the TCP transport under any
    wrapper (TLS)."""
    for _ in range(3):
        if transport is None or hasattr(transport, "setTcpNoDelay"):
            break
        transport = getattr(transport, "transport", None)
    if transport is None:
        return
    try:
        transport.setTcpNoDelay(True)
    except OSError:  # the socket is already gone; connectionLost follows
        return
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = READ_SIZE


def send_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to a leg, sending it at once if nothing is queued on it.

    Twisted's ``write`` only queues: the send happens on a later reactor turn, after an
    epoll_ctl to watch for writability and another to stop. For a round trip through
    the proxy that is two extra turns per hop. When the leg's queue is empty, a direct
    ``send`` keeps the order and skips all of that; whatever the kernel does not take
    goes through ``write`` as usual (and back-pressure with it). Plain TCP only: a TLS
    leg's transport must encrypt (and forwards attribute lookups to the raw socket).
    """
    if (type(transport) in _PLAIN_TCP and transport.connected and not transport.disconnecting
            and not transport._tempDataBuffer and transport.offset >= len(transport.dataBuffer)):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EAGAIN, or an error Twisted's own write path will report
            sent = 0
        if sent == len(data):
            return
        if sent:
            data = data[sent:]
    transport.write(data)


class Leg(protocol.Protocol):
    """A TCP connection that belongs to a pair; it only routes bytes and events."""

    def __init__(self, pair: "ConnectionPair", side: str) -> None:
        self.pair = pair
        self.side = side

    def connectionMade(self) -> None:
        self.pair.leg_connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.pair.data_received(self.side, data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.pair.leg_lost(self.side, reason)


class UpstreamFactory(protocol.ClientFactory):
    """Dials the real node for one pair."""

    noisy = False

    def __init__(self, pair: "ConnectionPair") -> None:
        self.pair = pair

    def buildProtocol(self, addr: Any) -> Leg:
        return Leg(self.pair, UPSTREAM)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.pair.upstream_failed(f"cannot connect to {connector.getDestination()}: {reason.getErrorMessage()}")


@dataclass(frozen=True)
class PairInfo:
    """What is known about a pair once its handshake is done (for logs, stats, policy)."""

    peer: str  # the untrusted node's name
    trusted: str
    downstream_name: str
    upstream_name: str
    flags: int
    downstream_direction: Direction  # the direction of frames the downstream leg sends


class ConnectionPair:
    """Joins a downstream leg (accepted) and an upstream leg (dialled by us)."""

    def __init__(self, service: "ProxyService", identity: "Identity", downstream_addr: str) -> None:
        self.service = service
        self.identity = identity
        self.reactor: IReactorTime = service.reactor
        self.downstream_addr = downstream_addr
        self.legs: dict[str, Leg] = {}
        # TLS (see tls.py): what the dialler's verified certificate identifies (None: plain
        # TCP), that certificate for logs, and why the dialler was refused, if it was.
        self.tls_identities: frozenset[str] | None = None
        self.tls_peer: str | None = None
        self.refusal: str | None = None
        self.relay = identity.new_relay(self.reactor.seconds(), self._downstream_cookie)
        self.pumps: dict[str, FramePump] = {}
        self.info: PairInfo | None = None
        self.closing: str | None = None
        self._pending_upstream: list[bytes] = []
        self._deadline_call: Any = self.reactor.callLater(DEADLINE_CHECK_INTERVAL, self._check_deadline)
        self.label = f"{identity.label} from {downstream_addr}"

    # -- legs -------------------------------------------------------------------------
    def downstream_protocol(self) -> Leg:
        return Leg(self, DOWNSTREAM)

    def leg_connected(self, leg: Leg) -> None:
        self.legs[leg.side] = leg
        _tune_transport(leg.transport)
        if self.closing is not None:
            leg.transport.loseConnection()
            return
        if leg.side == UPSTREAM:
            self._apply(self.relay.upstream_connected(self.reactor.seconds()))

    def data_received(self, side: str, data: bytes) -> None:
        if self.closing is not None:
            return
        pump = self.pumps.get(side)
        if pump is not None:
            self._pump(side, pump, data)
            return
        now = self.reactor.seconds()
        if side == DOWNSTREAM:
            self._apply(self.relay.receive_downstream(data, now))
        else:
            self._apply(self.relay.receive_upstream(data, now))
            if self.relay.upstream_done and not self.pumps and self.closing is None:
                # The real node is already in its data phase; hold its frames in the
                # kernel until the dialler has finished its side of the handshake.
                self.legs[UPSTREAM].transport.pauseProducing()

    def leg_lost(self, side: str, reason: Failure) -> None:
        self.legs.pop(side, None)
        if self.closing is None and not self.pumps:
            # Lost during the handshake: let the relay say at which step (and why, likely).
            why = reason.getErrorMessage()
            if side == UPSTREAM:
                self._apply(self.relay.upstream_failed(why))
            else:
                self._apply(self.relay.downstream_closed(why))
        if self.closing is None:
            what = "closed the connection" if reason.check(*_CLEAN_CLOSE) else reason.getErrorMessage()
            self.close(f"{side} ({self._leg_name(side)}) {what}", error=False)
        elif not self.legs:
            self._finished()

    def upstream_failed(self, reason: str) -> None:
        if self.closing is None:
            self._apply(self.relay.upstream_failed(reason))

    # -- handshake --------------------------------------------------------------------
    def _downstream_cookie(self, name: str) -> bytes | None:
        """The relay's cookie lookup for the name in send_name, after checking that this
        connection may claim it (a TLS certificate binds the dialler to its own name)."""
        refusal = self.identity.claim_refusal(self, name)
        if refusal is not None:
            self.refusal = f"refused {name}: {refusal}"
            log.warning("%s: %s", self.label, self.refusal)
            return None
        return self.identity.downstream_cookie(name)

    def _apply(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, hs.SendDownstream):
                self._write(DOWNSTREAM, event.data)
            elif isinstance(event, hs.SendUpstream):
                self._write(UPSTREAM, event.data)
            elif isinstance(event, hs.DialUpstream):
                self.service.dial(self, event)
            elif isinstance(event, hs.HandshakeDone):
                self._start_data_phase(event)
            elif isinstance(event, hs.HandshakeFailed):
                self.service.handshake_failed(self, event)
                detail = f" [{event.detail}]" if event.detail else ""
                # `nok` is the normal end of the losing side of a simultaneous connect.
                expected = self.refusal is None and event.reason.endswith(f": {STATUS_NOK}")
                self.close(f"handshake failed ({event.leg}): {self.refusal or event.reason}{detail}",
                           error=not expected)
                return

    def _check_deadline(self) -> None:
        self._deadline_call = None
        if self.closing is not None or self.pumps:
            return
        self._apply(self.relay.tick(self.reactor.seconds()))
        if self.closing is None and not self.pumps:
            self._deadline_call = self.reactor.callLater(DEADLINE_CHECK_INTERVAL, self._check_deadline)

    def _start_data_phase(self, done: "hs.HandshakeDone") -> None:
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None
        self.info = self.identity.pair_info(done)
        down_dir = self.info.downstream_direction
        up_dir = Direction.TO_PEER if down_dir is Direction.FROM_PEER else Direction.FROM_PEER
        self.pumps = {
            DOWNSTREAM: self.service.new_pump(self.info, down_dir),
            UPSTREAM: self.service.new_pump(self.info, up_dir),
        }
        down, up = self.legs[DOWNSTREAM], self.legs[UPSTREAM]
        # Each transport is the producer of the other: a full write buffer on one leg
        # pauses reading on the other.
        down.transport.registerProducer(up.transport, True)
        up.transport.registerProducer(down.transport, True)
        up.transport.resumeProducing()
        self.service.pair_established(self)
        if done.leftover_downstream:
            self._pump(DOWNSTREAM, self.pumps[DOWNSTREAM], done.leftover_downstream)
        if done.leftover_upstream and self.closing is None:
            self._pump(UPSTREAM, self.pumps[UPSTREAM], done.leftover_upstream)

    # -- data phase -------------------------------------------------------------------
    def _pump(self, side: str, pump: FramePump, data: bytes) -> None:
        out = pump.receive(data)
        if out.forward:
            other = self.legs.get(UPSTREAM if side == DOWNSTREAM else DOWNSTREAM)
            if other is not None:
                send_now(other.transport, out.forward)
        if out.back:
            this = self.legs.get(side)
            if this is not None:
                this.transport.writeSequence(out.back)
        if out.close is not None:
            self.close(out.close)

    def _write(self, side: str, data: bytes) -> None:
        leg = self.legs.get(side)
        if leg is not None:
            leg.transport.write(data)

    # -- closing ----------------------------------------------------------------------
    def _leg_name(self, side: str) -> str:
        if self.info is not None:
            return self.info.downstream_name if side == DOWNSTREAM else self.info.upstream_name
        return self.downstream_addr if side == DOWNSTREAM else self.identity.node_name

    def close(self, reason: str, error: bool = True) -> None:
        """Close both legs (once), logging why."""
        if self.closing is not None:
            return
        self.closing = reason
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None
        (log.warning if error else log.info)("%s: closing: %s", self.label, reason)
        for leg in list(self.legs.values()):
            transport: ITransport = leg.transport
            transport.loseConnection()
        if not self.legs:
            self._finished()

    def _finished(self) -> None:
        self.service.pair_closed(self)

