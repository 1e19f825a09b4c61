"""The running proxy: EPMD service, listeners, dialling, and the policy hook.

``ProxyService`` turns a :class:`~distproxy.config.ProxyConfig` into listening sockets:

- the *front* listener stands for the trusted node: peers dial it; distproxy dials the
  real trusted node on their behalf;
- one *back* listener per peer stands for that peer: the trusted node dials it;
  distproxy dials the real peer on the trusted node's behalf;
- the front EPMD answers the trusted node's name with the front listener's port; the
  back EPMD answers each peer's name with its back listener's port. distproxy serves
  them itself (``serve``) or registers in existing EPMDs (``register_in``).

The listener a connection arrives on says which node the dialler wants, because the
dialler's send_name carries only its own name.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import IListeningPort

from distproxy.config import HostPort, NodeLocation, PeerConfig, ProxyConfig
from distproxy.dist import flags as dflags
from distproxy.dist import handshake as hs
from distproxy.dist.datapath import Direction, FramePump, Hook, accept_all
from distproxy.dist.epmd import EpmdRegistry
from distproxy.enforcement import Enforcer
from distproxy.policy import Context, Counters, DecisionLog, PolicyStore
from distproxy.policy.decisionlog import format_time
from distproxy.policy.guards import AtomLedger, PeerGuards, StatefulHooks
from distproxy.policy.state import ConnectionState

from . import tls
from .admission import Admission
from .epmd import EpmdLookupError, EpmdRegistration, EpmdServerFactory, lookup_port
from .pair import ConnectionPair, PairInfo, UpstreamFactory

log = logging.getLogger("distproxy.service")

POLICY_POLL_INTERVAL = 2.0  # seconds between checks of the policy files' mtimes
HOUSEKEEPING_INTERVAL = 5.0  # seconds between stats snapshots and log summaries
PROTOCOL_RULE_ID = "protocol"  # decision-log rule id of a pair closed for a protocol violation


@dataclass
class Identity:
    """A node distproxy poses as on one listener, and how to reach the real one."""

    service: "ProxyService"
    node_name: str  # the node this listener stands for (the upstream)
    upstream_cookie: bytes
    location: NodeLocation
    downstream_direction: Direction  # direction of frames the dialler sends
    peer: PeerConfig | None  # set for back listeners (the upstream is this peer)
    port: IListeningPort | None = None
    tls_server: "tls.ServerTls | None" = None  # some node that dials this listener uses TLS
    tls_client: "tls.ClientTls | None" = None  # the node this listener stands for uses TLS

    @property
    def label(self) -> str:
        return f"as {self.node_name}"

    def downstream_cookie(self, name: str) -> bytes | None:
        config = self.service.config
        if self.peer is not None:  # back listener: only the trusted node may dial it
            return config.trusted.cookie if name == config.trusted.name else None
        peer = config.peer(name)  # front listener: any configured peer
        return peer.cookie if peer is not None else None

    def claim_refusal(self, pair: ConnectionPair, name: str) -> str | None:
        """Why this connection may not claim ``name`` (TLS identity binding), or None."""
        config = self.service.config
        if self.peer is not None:
            trust = config.trusted.tls if name == config.trusted.name else None
        else:
            peer = config.peer(name)
            trust = peer.tls if peer is not None else None
        return tls.claim_refusal(trust, pair.tls_identities, name)

    def flag_mask(self, downstream_name: str) -> int:
        peer = self.peer or self.service.config.peer(downstream_name)
        mask = dflags.PROXY_MASK
        if peer is not None and self.service.peer_hidden(peer):
            mask &= ~dflags.DFlag.PUBLISHED
        return int(mask)

    def new_relay(self, now: float, cookie_for: Any = None) -> "hs.HandshakeRelay":
        return hs.HandshakeRelay(
            expected_upstream_name=self.node_name,
            downstream_cookie_for=cookie_for or self.downstream_cookie,
            upstream_cookie=self.upstream_cookie,
            flag_mask=self.flag_mask,
            deadline=self.service.config.handshake_timeout,
            now=now,
        )

    def pair_info(self, done: "hs.HandshakeDone") -> PairInfo:
        trusted = self.service.config.trusted.name
        if self.peer is not None:
            peer_name = self.peer.name
        else:
            peer_name = done.downstream_name
        return PairInfo(
            peer=peer_name,
            trusted=trusted,
            downstream_name=done.downstream_name,
            upstream_name=done.upstream_name,
            flags=done.negotiated_flags,
            downstream_direction=self.downstream_direction,
        )


class _FrontFactory(protocol.ServerFactory):
    noisy = False

    def __init__(self, service: "ProxyService", identity: Identity) -> None:
        self.service = service
        self.identity = identity

    def buildProtocol(self, addr: Any) -> protocol.Protocol | None:
        key = (self.identity.node_name, addr.host)
        if self.service.admission.admit(key, self.service.reactor.seconds()) is not None:
            return None  # Twisted closes the socket at once (handshake flood control)
        pair = ConnectionPair(self.service, self.identity, f"{addr.host}:{addr.port}")
        self.service.admitted[pair] = key
        self.service.pairs.add(pair)
        if self.identity.tls_server is not None:
            return self.identity.tls_server.protocol_for(pair)
        return pair.downstream_protocol()


@dataclass
class ProxyService:
    config: ProxyConfig
    reactor: Any
    store: PolicyStore | None = None  # None: accept everything (protocol tests)
    front_registry: EpmdRegistry = field(default_factory=EpmdRegistry)
    back_registry: EpmdRegistry = field(default_factory=EpmdRegistry)
    pairs: set[ConnectionPair] = field(default_factory=set)
    identities: list[Identity] = field(default_factory=list)
    listening: list[IListeningPort] = field(default_factory=list)
    registrations: list[EpmdRegistration] = field(default_factory=list)
    decisions: Counters = field(default_factory=Counters)
    decision_log: DecisionLog | None = None
    loops: list[task.LoopingCall] = field(default_factory=list)
    # Atoms each peer introduced to T (per peer, for the proxy's life: atoms outlive
    # connections), and the connection state the two pumps of a pair share (held only
    # between the two new_pump calls of one pair).
    atom_ledgers: dict[str, AtomLedger] = field(default_factory=dict)
    # Entries each peer's connection state had to forget (per table), and what was logged.
    state_evictions: dict[str, Counter[str]] = field(default_factory=dict)
    _evictions_logged: dict[str, int] = field(default_factory=dict)
    _pair_states: dict[int, tuple[PairInfo, ConnectionState]] = field(default_factory=dict)
    admission: Admission = field(init=False)  # handshake flood control (admission.py)
    admitted: dict[ConnectionPair, Any] = field(default_factory=dict)  # pairs still in their handshake

    def __post_init__(self) -> None:
        self.admission = Admission(self.config.max_pending_handshakes, self.config.handshake_rate,
                                   self.config.handshake_burst)
    metrics: Any = None  # a metrics.Metrics when the config has `metrics:` (see proxy/metrics.py)

    # -- start-up ---------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Open every socket; returns what was bound (the ready line)."""
        config = self.config
        ready: dict[str, Any] = {"trusted": config.trusted.name, "peers": {}}
        for name, spec, registry in (("front_epmd", config.front_epmd, self.front_registry),
                                     ("back_epmd", config.back_epmd, self.back_registry)):
            if spec.serve is not None:
                port = self.reactor.listenTCP(spec.serve.port, EpmdServerFactory(registry, name),
                                              interface=spec.serve.host)
                self.listening.append(port)
                ready[name] = port.getHost().port
        if config.metrics is not None:
            from .metrics import Metrics

            self.metrics = Metrics(self)
            port = self.reactor.listenTCP(config.metrics.port, self.metrics.site(), interface=config.metrics.host)
            self.listening.append(port)
            ready["metrics"] = port.getHost().port
            self._every(self.metrics.sample_interval, self.metrics.sample_decisions)
        front = Identity(self, config.trusted.name, config.trusted.cookie, config.trusted.location,
                         Direction.FROM_PEER, None,
                         tls_server=tls.server_for(config.tls, {p.name: p.tls for p in config.peers}),
                         tls_client=tls.client_for(config.tls, config.trusted.name, config.trusted.tls))
        front.port = self.reactor.listenTCP(config.listen.port, _FrontFactory(self, front),
                                            interface=config.listen.host)
        self.listening.append(front.port)
        self.identities.append(front)
        ready["listen"] = front.port.getHost().port
        self._advertise(config.trusted.alive, front.port.getHost().port, config.front_epmd.register_in,
                        self.front_registry)
        for peer in config.peers:
            back = Identity(self, peer.name, peer.cookie, peer.location, Direction.TO_PEER, peer,
                            tls_server=tls.server_for(config.tls, {config.trusted.name: config.trusted.tls}),
                            tls_client=tls.client_for(config.tls, peer.name, peer.tls))
            back.port = self.reactor.listenTCP(peer.listen_port, _FrontFactory(self, back),
                                               interface=config.back_address)
            self.listening.append(back.port)
            self.identities.append(back)
            ready["peers"][peer.name] = back.port.getHost().port
            self._advertise(peer.alive, back.port.getHost().port, config.back_epmd.register_in,
                            self.back_registry)
        if self.store is not None:
            self.decision_log = DecisionLog(config.decision_log)
            self._every(POLICY_POLL_INTERVAL, self._poll_policies)
        self._every(HOUSEKEEPING_INTERVAL, self._housekeeping)
        log.info("distproxy ready: %s", json.dumps(ready, sort_keys=True))
        return ready

    def _every(self, interval: float, fn: Any) -> None:
        loop = task.LoopingCall(fn)
        loop.clock = self.reactor
        loop.start(interval, now=False)
        self.loops.append(loop)

    def _advertise(self, alive: str, port: int, register_in: HostPort | None, registry: EpmdRegistry) -> None:
        """Make ``alive`` resolve to ``port``: in our own EPMD, or by registering in another."""
        if register_in is None:
            if registry.register(alive, port) is None:
                raise RuntimeError(f"{alive} is already registered in distproxy's EPMD")
            return
        registration = EpmdRegistration(self.reactor, register_in, alive, port)
        registration.start()
        self.registrations.append(registration)

    def stop(self) -> defer.Deferred[Any]:
        for loop in self.loops:
            if loop.running:
                loop.stop()
        self._housekeeping()
        if self.decision_log is not None:
            self.decision_log.close()
        for registration in self.registrations:
            registration.stop()
        for pair in list(self.pairs):
            pair.close("distproxy is shutting down", error=False)
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.listening])

    # -- dialling ---------------------------------------------------------------------
    def served_registry(self, epmd: HostPort) -> EpmdRegistry | None:
        for spec, registry in ((self.config.front_epmd, self.front_registry),
                               (self.config.back_epmd, self.back_registry)):
            if spec.serve is not None and spec.serve == epmd:
                return registry
        return None

    def dial(self, pair: ConnectionPair, event: "hs.DialUpstream") -> None:
        location = pair.identity.location
        d = self._resolve(pair.identity.node_name, location)

        def connect(port: int) -> None:
            if pair.closing is None:
                factory: Any = UpstreamFactory(pair)
                if pair.identity.tls_client is not None:
                    factory = pair.identity.tls_client.wrap(factory)
                self.reactor.connectTCP(location.address, port, factory, timeout=self.config.handshake_timeout)

        def failed(failure: Any) -> None:
            pair.upstream_failed(f"cannot find {pair.identity.node_name}: {failure.getErrorMessage()}")

        d.addCallbacks(connect, failed)

    def _resolve(self, node_name: str, location: NodeLocation) -> defer.Deferred[int]:
        if location.port is not None:
            return defer.succeed(location.port)
        assert location.epmd is not None
        alive = node_name.split("@", 1)[0]
        registry = self.served_registry(location.epmd)
        if registry is not None:
            entry = registry.lookup(alive)
            if entry is None:
                return defer.fail(EpmdLookupError(f"{alive} is not registered in the EPMD at {location.epmd}"))
            return defer.succeed(entry.port)
        return lookup_port(self.reactor, location.epmd, alive, self.config.handshake_timeout)

    # -- events from pairs ------------------------------------------------------------
    def peer_hidden(self, peer: PeerConfig) -> bool:
        if peer.hidden:
            return True
        policy = self.store.policy_for(peer.name) if self.store is not None else None
        return bool(policy is not None and policy.limits.hidden)

    def max_frame_bytes(self, peer_name: str) -> int:
        limit = self.config.max_frame_bytes
        policy = self.store.policy_for(peer_name) if self.store is not None else None
        if policy is not None and policy.limits.max_frame_bytes:
            limit = min(limit, policy.limits.max_frame_bytes)
        return limit

    def new_pump(self, info: PairInfo, direction: Direction) -> FramePump:
        hook: Hook = accept_all
        if self.store is not None:
            state = self._connection_state(info)
            ledger = self.atom_ledgers.setdefault(info.peer, AtomLedger())
            context = Context(peer_node=info.peer, trusted_node=info.trusted, negotiated_flags=info.flags,
                              state=state)
            guards = (PeerGuards(ledger, state, info.flags, self.reactor.seconds())
                      if direction is Direction.FROM_PEER else None)
            hook = Enforcer(self.store, self.decisions, self.decision_log, context, direction,
                            self.reactor.seconds, StatefulHooks(direction.value, state, guards, ledger))
        return FramePump(direction, hook, self.max_frame_bytes(info.peer))

    def _connection_state(self, info: PairInfo) -> ConnectionState:
        """One ConnectionState for both pumps of the pair ``info`` describes."""
        held = self._pair_states.pop(id(info), None)
        if held is not None and held[0] is info:
            return held[1]
        state = ConnectionState(info.trusted, info.peer,
                                evictions=self.state_evictions.setdefault(info.peer, Counter()))
        self._pair_states[id(info)] = (info, state)
        return state

    def handshake_failed(self, pair: ConnectionPair, event: "hs.HandshakeFailed") -> None:
        if self.metrics is not None:
            self.metrics.handshake_failed(pair, event)

    def pair_established(self, pair: ConnectionPair) -> None:
        assert pair.info is not None
        self._handshake_over(pair)
        if self.metrics is not None:
            self.metrics.pair_established(pair)
        log.info("%s: connected %s <-> %s (flags %#x)", pair.label, pair.info.downstream_name,
                 pair.info.upstream_name, pair.info.flags)

    def _log_protocol_close(self, pair: ConnectionPair) -> None:
        """A peer's protocol violation (unknown op, wrong arity, bad length, ...) closed the
        pair before any rule saw the frame: put it in the decision log too (rule
        ``protocol``), next to the policy's own refusals."""
        reason = pair.closing
        prefix = f"{Direction.FROM_PEER.value}: "
        if self.decision_log is None or pair.info is None or not reason or not reason.startswith(prefix):
            return
        now = self.reactor.seconds()
        self.decision_log.record({
            "time": format_time(now), "peer": pair.info.peer, "direction": Direction.FROM_PEER.value,
            "rule_id": PROTOCOL_RULE_ID, "verdict": "disconnect", "mode": "enforce", "action": "disconnect",
            "reason": reason.removeprefix(prefix)}, now)

    def _handshake_over(self, pair: ConnectionPair) -> None:
        key = self.admitted.pop(pair, None)
        if key is not None:
            self.admission.release(key)

    def pair_closed(self, pair: ConnectionPair) -> None:
        self._handshake_over(pair)
        self._log_protocol_close(pair)
        if self.metrics is not None and pair in self.pairs:
            self.metrics.pair_closed(pair)
        self.pairs.discard(pair)

    # -- policies and housekeeping ------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: reload every policy file; an invalid one keeps the running set."""
        if self.store is None:
            log.info("reload: no policies configured")
            return
        self._report_reload(self.store.reload())

    def _poll_policies(self) -> None:
        assert self.store is not None
        result = self.store.poll()
        if result is not None:
            self._report_reload(result)

    def _report_reload(self, result: Any) -> None:
        (log.info if result.ok else log.error)("%s", result.describe())

    def _housekeeping(self) -> None:
        now = self.reactor.seconds()
        if self.decision_log is not None:
            self.decision_log.tick(now)
        for peer, evictions in self.state_evictions.items():
            total = sum(evictions.values())
            if total != self._evictions_logged.get(peer, 0):
                self._evictions_logged[peer] = total
                log.warning("%s: connection state full, oldest entries retired: %s", peer, dict(evictions))
        try:
            self.decisions.write_snapshot(self.config.stats_file, now)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.stats_file, exc)
