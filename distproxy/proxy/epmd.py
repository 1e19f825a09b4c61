"""EPMD over Twisted: distproxy's own EPMD server, and a client for existing EPMDs."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from twisted.internet import defer, protocol
from twisted.python.failure import Failure

from distproxy.config import HostPort
from distproxy.dist.epmd import (
    Close,
    EpmdError,
    EpmdRegistry,
    EpmdServerConnection,
    Registered,
    Reply,
    encode_alive2_req,
    encode_port_please2_req,
    parse_alive2_resp,
    parse_port2_resp,
)

log = logging.getLogger("distproxy.epmd")

REREGISTER_DELAY = 2.0  # seconds, as erl_epmd retries a lost registration


class EpmdLookupError(Exception):
    """A name could not be resolved to a port."""


def _is_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EpmdServerProtocol(protocol.Protocol):
    def __init__(self, factory: "EpmdServerFactory") -> None:
        self.factory = factory
        self.conn: EpmdServerConnection | None = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.conn = EpmdServerConnection(self.factory.registry, self.transport.getHost().port,
                                         local=_is_local(peer.host))

    def dataReceived(self, data: bytes) -> None:
        assert self.conn is not None
        for event in self.conn.receive_data(data):
            if isinstance(event, Reply):
                self.transport.write(event.data)
            elif isinstance(event, Registered):
                log.info("%s EPMD: %s registered at port %d (creation %d)", self.factory.label,
                         event.entry.name, event.entry.port, event.entry.creation)
            elif isinstance(event, Close):
                if not event.reason.endswith("reply sent"):
                    log.warning("%s EPMD: closing %s: %s", self.factory.label,
                                self.transport.getPeer().host, event.reason)
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.conn is not None and self.conn.registered is not None:
            log.info("%s EPMD: %s unregistered", self.factory.label, self.conn.registered.name)
            self.conn.connection_lost()


class EpmdServerFactory(protocol.ServerFactory):
    noisy = False

    def __init__(self, registry: EpmdRegistry, label: str) -> None:
        self.registry = registry
        self.label = label

    def buildProtocol(self, addr: Any) -> EpmdServerProtocol:
        return EpmdServerProtocol(self)


# -- client: look a name up --------------------------------------------------------------
class _PortPlease(protocol.Protocol):
    def __init__(self, name: str, result: defer.Deferred[int]) -> None:
        self.name = name
        self.result = result
        self.data = bytearray()

    def connectionMade(self) -> None:
        self.transport.write(encode_port_please2_req(self.name))

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.result.called:
            return
        try:
            response = parse_port2_resp(bytes(self.data), self.name)
        except EpmdError as exc:
            self.result.errback(EpmdLookupError(f"bad EPMD reply for {self.name}: {exc}"))
            return
        if response is None:
            self.result.errback(EpmdLookupError(f"truncated EPMD reply for {self.name}"))
        elif response.entry is None:
            self.result.errback(EpmdLookupError(f"{self.name} is not registered"))
        else:
            self.result.callback(response.entry.port)


def lookup_port(reactor: Any, epmd: HostPort, name: str, timeout: float) -> defer.Deferred[int]:
    """PORT_PLEASE2 ``name`` at an existing EPMD."""
    result: defer.Deferred[int] = defer.Deferred()
    creator = protocol.ClientCreator(reactor, _PortPlease, name, result)
    d = creator.connectTCP(epmd.host, epmd.port, timeout=timeout)

    def failed(failure: Failure) -> None:
        if not result.called:
            result.errback(EpmdLookupError(f"EPMD at {epmd} unreachable: {failure.getErrorMessage()}"))

    d.addErrback(failed)
    timer = reactor.callLater(timeout, lambda: None if result.called else result.errback(
        EpmdLookupError(f"EPMD at {epmd} did not answer in {timeout}s")))
    result.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
    return result


# -- client: keep a name registered ------------------------------------------------------
class _Registrant(protocol.Protocol):
    def __init__(self, owner: "EpmdRegistration") -> None:
        self.owner = owner
        self.data = bytearray()

    def connectionMade(self) -> None:
        self.transport.write(encode_alive2_req(self.owner.alive, self.owner.port))

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        try:
            parsed = parse_alive2_resp(bytes(self.data))
        except EpmdError as exc:
            log.error("registering %s in EPMD %s: %s", self.owner.alive, self.owner.epmd, exc)
            self.transport.loseConnection()
            return
        if parsed is None:
            return
        if parsed.ok:
            log.info("registered %s in EPMD %s at port %d", self.owner.alive, self.owner.epmd, self.owner.port)
        else:
            log.error("EPMD %s refused %s: the name is already registered", self.owner.epmd, self.owner.alive)
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.owner.lost()


class EpmdRegistration:
    """Registers ``alive`` -> ``port`` in an existing EPMD and keeps the socket open,
    re-registering every 2 s after a loss, as a node does."""

    def __init__(self, reactor: Any, epmd: HostPort, alive: str, port: int) -> None:
        self.reactor = reactor
        self.epmd = epmd
        self.alive = alive
        self.port = port
        self.stopped = False
        self.connection: Any = None
        self.retry: Any = None

    def start(self) -> None:
        creator = protocol.ClientCreator(self.reactor, _Registrant, self)
        d = creator.connectTCP(self.epmd.host, self.epmd.port, timeout=REREGISTER_DELAY * 5)
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, proto: _Registrant) -> None:
        self.connection = proto
        if self.stopped:
            proto.transport.loseConnection()

    def _failed(self, failure: Failure) -> None:
        log.warning("EPMD %s unreachable for %s: %s", self.epmd, self.alive, failure.getErrorMessage())
        self.lost()

    def lost(self) -> None:
        self.connection = None
        if not self.stopped and (self.retry is None or not self.retry.active()):
            self.retry = self.reactor.callLater(REREGISTER_DELAY, self.start)

    def stop(self) -> None:
        self.stopped = True
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        if self.connection is not None:
            self.connection.transport.loseConnection()
