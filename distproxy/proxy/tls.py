"""TLS on distproxy's legs, for nodes that run ``-proto_dist inet_tls``.

OTP's TLS distribution is the ordinary dist byte stream inside TLS, found through the
ordinary (plain) EPMD. So TLS is a wrapper around a :class:`~distproxy.proxy.pair.Leg`:

- **accepting** (a listener that TLS nodes dial): :class:`ServerTls` sniffs the first
  byte (``0x16`` opens a TLS record; a plain dist handshake starts with a length byte
  ``0x00``/``0x01``), so TLS and plain peers can share the one port the EPMD names. It
  requires a client certificate, verifies it against the union of the trust configured
  for the nodes that may dial this listener, then *identifies* it: the set of node names
  whose own trust (CA and name, or pin) the certificate satisfies. The pair refuses a
  send_name for a name outside that set, and a TLS-configured name over plain TCP
  (:func:`claim_refusal`): that is what stops ec2_node's certificate opening bob_colo's
  leg. The identity is known before the send_name arrives, because TLS completes first.
- **dialling** (distproxy dials a TLS node): :class:`ClientTls` presents distproxy's own
  certificate and verifies the node's server certificate against that node's trust only,
  inside the handshake, so nothing (not even the send_name) reaches an impostor.

One difference from TCP: OTP 25 frames the *handshake* messages over TLS with a 4-byte
length (``{packet,4}``, as in the data phase) where TCP uses 2 bytes. :class:`_Reframer`
converts them to and from the relay's 2-byte framing until each side's last handshake
message ('r' from the dialler, 'a' from the dialled node), then passes bytes through. It
tells the two framings apart by the first message (a 4-byte length of a handshake
message starts with two zero bytes; a 2-byte one cannot be zero), so a node that uses
the TCP framing over TLS is passed through unchanged.

Session caching and tickets are off: every connection presents and verifies its
certificate, so a resumed session can never skip the identity check.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL, crypto
from twisted.internet import protocol
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from distproxy.config import TlsOwn, TlsTrust

from .pair import DOWNSTREAM, Leg

if TYPE_CHECKING:
    from .pair import ConnectionPair

log = logging.getLogger("distproxy.tls")

TLS_RECORD_HANDSHAKE = 0x16  # first byte of a TLS ClientHello record
MIN_TLS_VERSION = SSL.TLS1_2_VERSION  # OTP 25 speaks 1.2 and 1.3
DEPTH_LEAF = 0
TCP_HS_LENGTH = 2  # bytes of a handshake message's length over TCP (the relay's framing)
TLS_HS_LENGTH = 4  # ... and over OTP's TLS distribution
MAX_HS_MESSAGE = 2**16 - 1  # largest message the 2-byte framing can carry
LAST_FROM_DIALLER = ord("r")  # challenge_reply: the dialler's last handshake message
LAST_FROM_DIALLED = ord("a")  # challenge_ack: the dialled node's last one
# The X.509 verification errors an operator meets; others are shown by number.
X509_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate not trusted",
    19: "self-signed certificate in the chain",
    20: "issuer not trusted (unable to get local issuer certificate)",
    21: "unable to verify the first certificate",
    26: "unsupported certificate purpose",
}


def check_key_pair(cert: Path, key: Path) -> None:
    """Raise ValueError unless ``key`` is the private key of ``cert`` (config time)."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    try:
        ctx.use_certificate_chain_file(str(cert))
        ctx.use_privatekey_file(str(key))
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise ValueError(f"{key} does not load as the private key of {cert}: {_ssl_reason(exc)}") from None


def fingerprint(cert: crypto.X509) -> str:
    """SHA-256 of the DER certificate, lower-case hex (what ``pin_sha256`` holds)."""
    return hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)).hexdigest()


def certificate_names(cert: crypto.X509) -> set[str]:
    """The subject CN and every DNS and IP subjectAltName."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    parsed = cert.to_cryptography()
    names = {str(a.value) for a in parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names.update(san.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return names


def describe(cert: crypto.X509 | None) -> str:
    if cert is None:
        return "no certificate"
    subject = cert.get_subject().CN or "(no CN)"
    return f"CN={subject} sha256={fingerprint(cert)[:16]}..."


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        return "; ".join(str(item[-1]) for item in exc.args[0] if item) or str(exc)
    return str(exc)


def _load_store(ca: Path) -> crypto.X509Store:
    from cryptography import x509

    store = crypto.X509Store()
    for cert in x509.load_pem_x509_certificates(ca.read_bytes()):
        store.add_cert(crypto.X509.from_cryptography(cert))
    return store


@dataclass
class NodeTrust:
    """One node's :class:`TlsTrust`, compiled: does a certificate stand for this node?"""

    name: str
    trust: TlsTrust
    store: crypto.X509Store | None

    @classmethod
    def build(cls, name: str, trust: TlsTrust) -> "NodeTrust":
        return cls(name, trust, _load_store(trust.ca) if trust.ca is not None else None)

    def refusal(self, leaf: crypto.X509, chain: Iterable[crypto.X509] | None) -> str | None:
        """None if ``leaf`` (with its intermediates) identifies this node, else why not.

        ``chain=None``: OpenSSL has already verified the chain against this node's CA
        (the dialling side), so only the pin and the name binding are left."""
        if self.trust.pins and fingerprint(leaf) not in self.trust.pins:
            return f"{describe(leaf)} is not a pinned certificate of {self.name}"
        if self.store is not None:
            if chain is not None:
                try:
                    crypto.X509StoreContext(self.store, leaf, list(chain)).verify_certificate()
                except crypto.X509StoreContextError as exc:
                    return f"{describe(leaf)} does not verify against {self.trust.ca}: {exc}"
            names = certificate_names(leaf)
            if not names.intersection(self.trust.names):
                return (f"{describe(leaf)} names {sorted(names)}, none of which is {self.name}'s "
                        f"({', '.join(self.trust.names)})")
        return None


def claim_refusal(trust: TlsTrust | None, identities: frozenset[str] | None, claimed: str) -> str | None:
    """Why a dialler may not claim ``claimed`` on this connection, or None if it may.

    ``identities`` is what the connection's verified certificate identifies (None: plain
    TCP). A name with TLS configured must come over TLS with a certificate for it; a
    TLS connection may only claim a name its certificate identifies.
    """
    if identities is None:
        return None if trust is None else f"{claimed} must connect over TLS (it has tls configured), not plain TCP"
    if claimed not in identities:
        which = ", ".join(sorted(identities)) or "no node allowed here"
        return f"its TLS certificate identifies {which}, but its send_name claims {claimed}"
    return None


def _base_context(own: TlsOwn) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(MIN_TLS_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_TICKET | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.use_certificate_chain_file(str(own.cert))
    ctx.use_privatekey_file(str(own.key))
    ctx.check_privatekey()
    return ctx


def _leg_of(conn: SSL.Connection | None) -> Leg | None:
    """The Leg inside a TLS connection (behind its :class:`_Reframer`)."""
    inner = getattr(conn.get_app_data() if conn is not None else None, "wrappedProtocol", None)
    leg = getattr(inner, "leg", inner)
    return leg if isinstance(leg, Leg) else None


def _pair_of(conn: SSL.Connection) -> "ConnectionPair | None":
    leg = _leg_of(conn)
    return leg.pair if leg is not None else None


class _Framing:
    """Rewrites the length prefix of handshake messages, one direction, until ``last``."""

    def __init__(self, src_length: int, dst_length: int, last: int, sniff: bool = False) -> None:
        self.src, self.dst, self.last = src_length, dst_length, last
        self.sniff = sniff  # decide from the first two bytes whether src is really 4 bytes
        self.buffer = bytearray()
        self.done = False
        self.passthrough = False  # the remote turned out to use the 2-byte framing itself

    def convert(self, data: bytes) -> bytes:
        if self.done:
            return data
        self.buffer += data
        if self.sniff:
            if len(self.buffer) < TCP_HS_LENGTH:
                return b""
            self.sniff = False
            if self.buffer[:TCP_HS_LENGTH] != bytes(TCP_HS_LENGTH):  # already 2-byte framing
                self.done = self.passthrough = True
                data, self.buffer = bytes(self.buffer), bytearray()
                return data
        out = bytearray()
        while len(self.buffer) >= self.src:
            size = int.from_bytes(self.buffer[:self.src], "big")
            if size > MAX_HS_MESSAGE:  # not a handshake message: let the relay refuse it
                self.done = True
                break
            if len(self.buffer) < self.src + size:
                break
            body = self.buffer[self.src:self.src + size]
            out += size.to_bytes(self.dst, "big") + body
            del self.buffer[:self.src + size]
            if body[:1] == bytes((self.last,)):
                self.done = True
                break
        if self.done:
            out += self.buffer
            self.buffer.clear()
        return bytes(out)


@implementer(IHandshakeListener)
class _Reframer(protocol.Protocol):
    """Sits between a TLS connection and a Leg, converting the handshake framing.

    The Leg sees it as its transport (writes are converted, everything else is the TLS
    transport's); it sees the TLS connection's decrypted bytes first."""

    def __init__(self, leg: Leg, remote_dials: bool) -> None:
        self.leg = leg
        self.pair = leg.pair
        last_in, last_out = (LAST_FROM_DIALLER, LAST_FROM_DIALLED) if remote_dials else (LAST_FROM_DIALLED, LAST_FROM_DIALLER)
        self.remote_dials = remote_dials
        self.incoming = _Framing(TLS_HS_LENGTH, TCP_HS_LENGTH, last_in, sniff=True)
        self.outgoing = _Framing(TCP_HS_LENGTH, TLS_HS_LENGTH, last_out)

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        self.leg.makeConnection(self)

    def dataReceived(self, data: bytes) -> None:
        data = self.incoming.convert(data)
        if self.incoming.passthrough and self.remote_dials:
            self.outgoing.done = True  # answer a TCP-framed dialler in its own framing
        if data:
            self.leg.dataReceived(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.leg.connectionLost(reason)

    def handshakeCompleted(self) -> None:
        if isinstance(self.leg, TlsLeg):
            self.leg.handshakeCompleted()

    def write(self, data: bytes) -> None:
        data = self.outgoing.convert(data)
        if data:
            self.transport.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        if self.outgoing.done:
            self.transport.writeSequence(data)
        else:
            self.write(b"".join(data))

    def __getattr__(self, name: str) -> Any:
        # loseConnection, pauseProducing, registerProducer, getPeer, ...: the TLS transport's.
        transport = self.__dict__.get("transport")
        if transport is None:
            raise AttributeError(name)
        return getattr(transport, name)


class _ReframingClientFactory(protocol.ClientFactory):
    """Wraps the pair's UpstreamFactory so its Leg gets a :class:`_Reframer`."""

    noisy = False

    def __init__(self, factory: protocol.ClientFactory) -> None:
        self.factory = factory

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        leg = self.factory.buildProtocol(addr)
        assert isinstance(leg, Leg)
        return _Reframer(leg, remote_dials=False)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.factory.clientConnectionFailed(connector, reason)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.factory.clientConnectionLost(connector, reason)


def _x509_error(errno: int) -> str:
    return X509_ERRORS.get(errno, f"X.509 error {errno}")


@implementer(IHandshakeListener)
class TlsLeg(Leg):
    """A downstream leg inside TLS: learns the certificate's identity once TLS is up."""

    def __init__(self, pair: "ConnectionPair", server: "ServerTls") -> None:
        super().__init__(pair, DOWNSTREAM)
        self.server = server
        self.connection: SSL.Connection | None = None
        self.verify_error: str | None = None
        self.handshake_done = False

    def handshakeCompleted(self) -> None:
        self.handshake_done = True
        assert self.connection is not None
        leaf = self.connection.get_peer_certificate()
        if leaf is None:  # cannot happen with FAIL_IF_NO_PEER_CERT; refuse if it does
            self.pair.close("TLS: the dialler presented no certificate")
            return
        leaf_print = fingerprint(leaf)
        chain = [c for c in self.connection.get_peer_cert_chain() or () if fingerprint(c) != leaf_print]
        identities = self.server.identify(leaf, chain)
        self.pair.tls_identities = identities
        self.pair.tls_peer = describe(leaf)
        if not identities:
            # Refused at its send_name (claim_refusal), before anything is dialled; say why here.
            log.warning("%s: TLS certificate %s identifies no node allowed here: %s", self.pair.label,
                        describe(leaf), "; ".join(self.server.refusals(leaf, chain)))
            return
        log.info("%s: TLS %s, certificate %s identifies %s", self.pair.label, self.connection.get_protocol_version_name(),
                 describe(leaf), ", ".join(sorted(identities)))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.handshake_done and self.pair.closing is None:
            why = self.verify_error or _ssl_reason(reason.value)
            self.pair.refusal = f"TLS handshake failed: {why}"
            log.warning("%s: TLS handshake failed: %s", self.pair.label, why)
        super().connectionLost(reason)


class _Sniffer(protocol.Protocol):
    """Decides TLS or plain from a connection's first byte, then steps aside.

    The plain leg is attached at once (so the pair can time the handshake out and close
    the socket); a TLS ClientHello swaps in a TLS-wrapped leg, which the pair adopts."""

    def __init__(self, pair: "ConnectionPair", server: "ServerTls") -> None:
        self.pair = pair
        self.server = server
        self.inner: protocol.Protocol = pair.downstream_protocol()
        self.decided = False

    def connectionMade(self) -> None:
        self.inner.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if not self.decided:
            self.decided = True
            if data[0] == TLS_RECORD_HANDSHAKE:
                leg = _Reframer(TlsLeg(self.pair, self.server), remote_dials=True)
                self.inner = TLSMemoryBIOProtocol(self.server.factory, leg)
                self.inner.makeConnection(self.transport)
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.inner.connectionLost(reason)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTls:
    """TLS for one listener: distproxy's certificate, and the nodes that may dial it."""

    def __init__(self, own: TlsOwn, trusts: Mapping[str, TlsTrust]) -> None:
        self.nodes = [NodeTrust.build(name, trust) for name, trust in trusts.items()]
        self._pins = frozenset(pin for node in self.nodes for pin in node.trust.pins)
        self._pin_only = any(node.store is None for node in self.nodes)
        ctx = _base_context(own)
        for node in self.nodes:
            if node.trust.ca is not None:
                ctx.load_verify_locations(str(node.trust.ca))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        self.context = ctx
        self.factory = TLSMemoryBIOFactory(self, False, protocol.Factory())

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        """Coarse check in the handshake (some node's CA, or a pin); :meth:`identify`
        decides afterwards which node, with that node's own trust only."""
        if ok:
            return True
        if depth != DEPTH_LEAF:
            return self._pin_only  # a pinned leaf's issuers need not verify
        if fingerprint(cert) in self._pins:
            return True
        pair = _pair_of(conn)
        leg = _leg_of(conn)
        if isinstance(leg, TlsLeg):
            leg.verify_error = f"client certificate {describe(cert)} refused: {_x509_error(errno)}"
        if pair is not None:
            log.debug("%s: client certificate refused (depth %d, error %d)", pair.label, depth, errno)
        return False

    def serverConnectionForTLS(self, tls_protocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(tls_protocol)
        leg = getattr(tls_protocol.wrappedProtocol, "leg", None)
        if isinstance(leg, TlsLeg):
            leg.connection = conn
        return conn

    def identify(self, leaf: crypto.X509, chain: list[crypto.X509]) -> frozenset[str]:
        return frozenset(node.name for node in self.nodes if node.refusal(leaf, chain) is None)

    def refusals(self, leaf: crypto.X509, chain: list[crypto.X509]) -> list[str]:
        return [reason for node in self.nodes if (reason := node.refusal(leaf, chain)) is not None]

    def protocol_for(self, pair: "ConnectionPair") -> protocol.Protocol:
        return _Sniffer(pair, self)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTls:
    """TLS when distproxy dials one node: its own certificate as client, that node's
    trust (and only that) for the server certificate, checked inside the handshake."""

    def __init__(self, own: TlsOwn, name: str, trust: TlsTrust) -> None:
        self.node = NodeTrust.build(name, trust)
        ctx = _base_context(own)
        if trust.ca is not None:
            ctx.load_verify_locations(str(trust.ca))
        ctx.set_verify(SSL.VERIFY_PEER, self._verify)
        self.context = ctx

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        if depth != DEPTH_LEAF:
            return bool(ok) or self.node.store is None
        if self.node.store is not None and not ok:
            reason = f"{describe(cert)}: {_x509_error(errno)}"
        else:
            # The chain is already verified by OpenSSL (or not needed, with a pin only):
            # check the pin and the name binding against the leaf alone.
            reason = self.node.refusal(cert, None)
        if reason is None:
            return True
        pair = _pair_of(conn)
        message = f"TLS: server certificate of {self.node.name} refused: {reason}"
        if pair is not None:
            pair.refusal = message
            log.warning("%s: %s", pair.label, message)
        else:
            log.warning("%s", message)
        return False

    def clientConnectionForTLS(self, tls_protocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(tls_protocol)
        conn.set_connect_state()
        return conn

    def wrap(self, factory: protocol.ClientFactory) -> TLSMemoryBIOFactory:
        return TLSMemoryBIOFactory(self, True, _ReframingClientFactory(factory))


def client_for(own: TlsOwn | None, name: str, trust: TlsTrust | None) -> ClientTls | None:
    return ClientTls(own, name, trust) if own is not None and trust is not None else None


def server_for(own: TlsOwn | None, trusts: Mapping[str, TlsTrust | None]) -> ServerTls | None:
    configured = {name: trust for name, trust in trusts.items() if trust is not None}
    return ServerTls(own, configured) if own is not None and configured else None


__all__ = ["ClientTls", "NodeTrust", "ServerTls", "TlsLeg", "check_key_pair", "claim_refusal",
           "client_for", "describe", "fingerprint", "server_for"]


