"""Prometheus metrics (``metrics: HOST:PORT`` in the config; off by default).

The data path pays (almost) nothing for them: per-frame figures are read at scrape
time from counters the proxy keeps anyway (the policy's decision ``Counters`` and each
pump's ``PumpStats``; a closed pair's stats are folded into totals once), so a frame
costs no extra dict lookup. Per-connection events (established, handshake failed) bump
a labelled counter once per connection. Decision latency is sampled without a
per-frame cost: every ``DECISION_SAMPLE_INTERVAL`` seconds each live pump's hook is
swapped for a one-shot timer that times the next decision and puts the hook back
(a permanent wrapper measured 150 ns a frame; this costs nothing between samples).

The page is served by twisted.web in the reactor thread (no thread pool), so the
collector reads the live pairs without locks.

For other parts of distproxy: ``service.metrics`` is a :class:`Metrics` or None; set
``state_table_entries.labels(table=NAME)`` and ``atoms_budget_used.labels(peer=NAME)``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Site

from distproxy.dist.datapath import Direction, Hook, HookResult, accept_all

if TYPE_CHECKING:
    from distproxy.dist import handshake as hs
    from distproxy.dist.control import ControlMessage

    from .pair import ConnectionPair
    from .service import ProxyService

METRICS_PATH = b"metrics"
DECISION_SAMPLE_INTERVAL = 0.25  # seconds between decision-latency samples of each pump
# Decisions take microseconds; the top buckets catch a stalled reload or a huge payload.
DECISION_BUCKETS = (2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 2e-2, 0.1)
# Handshake failure reasons, folded into a fixed set so the label cannot grow.
FAILURE_CATEGORIES = ("tls", "identity", "unknown_node", "bad_cookie", "refused", "timeout",
                      "upstream_lost", "closed", "protocol", "other")
PUMP_FIELDS = (  # PumpStats field -> metric name, help
    ("bytes_in", "distproxy_bytes_received_total", "data-phase bytes received from the sending leg"),
    ("bytes_forwarded", "distproxy_bytes_forwarded_total", "data-phase bytes forwarded to the other leg"),
    ("frames", "distproxy_data_frames_total", "data-phase frames received (ticks excluded)"),
    ("frames_dropped", "distproxy_frames_not_forwarded_total", "frames not forwarded (drop, reject, disconnect)"),
    ("ticks", "distproxy_ticks_total", "zero-length keepalive frames"),
)


def failure_category(reason: str, refusal: str | None = None) -> str:
    """One of FAILURE_CATEGORIES for a handshake failure (``refusal``: the pair's TLS one)."""
    if refusal is not None:
        return "tls" if refusal.startswith("TLS") else "identity"
    if reason.startswith("unknown node"):
        return "unknown_node"
    if "wrong cookie" in reason:
        return "bad_cookie"
    if reason.startswith("timeout"):
        return "timeout"
    if reason.startswith("bad "):
        return "protocol"
    if "mandatory flags" in reason or "NAME_ME" in reason or " refused " in reason or "answered sfalse" in reason:
        return "refused"
    if reason.startswith("upstream"):
        return "upstream_lost"
    if reason.startswith("downstream closed"):
        return "closed"
    return "other"


class _OneShotTimer:
    """Stands in for a pump's hook for one decision: times it, then restores the hook."""

    __slots__ = ("pump", "hook", "observe", "armed")

    def __init__(self, pump: Any, observe: Any) -> None:
        self.pump = pump
        self.hook: Hook = pump.hook
        self.observe = observe
        self.armed = True

    def __call__(self, message: "ControlMessage") -> HookResult:
        if not self.armed:  # later frames of the same read, while the pump holds us locally
            return self.hook(message)
        self.armed = False
        self.pump.hook = self.hook
        start = time.perf_counter()
        result = self.hook(message)
        self.observe(time.perf_counter() - start)
        return result


class _LiveCollector(Collector):
    """Scrape-time figures: decision counters, pump stats of live and closed pairs."""

    def __init__(self, metrics: "Metrics") -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        service = self.metrics.service
        frames = CounterMetricFamily("distproxy_frames", "data frames by policy decision",
                                     labels=["peer", "direction", "op", "verdict"])
        for row in service.decisions.snapshot()["counters"]:
            frames.add_metric([row["peer"], row["direction"], row["op"], row["verdict"]], row["count"])
        yield frames

        totals = self.metrics.pump_totals()
        for field, name, doc in PUMP_FIELDS:
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=["peer", "direction"])
            for (peer, direction), stats in sorted(totals.items()):
                family.add_metric([peer, direction], stats.get(field, 0))
            yield family

        open_pairs: dict[str, int] = defaultdict(int)
        handshaking = 0
        for pair in service.pairs:
            if pair.info is None:
                handshaking += 1
            elif pair.closing is None:
                open_pairs[pair.info.peer] += 1
        gauge = GaugeMetricFamily("distproxy_connections_open", "connection pairs in the data phase",
                                  labels=["peer"])
        for peer in service.config.peers:
            gauge.add_metric([peer.name], open_pairs.get(peer.name, 0))
        yield gauge
        yield GaugeMetricFamily("distproxy_handshakes_in_progress", "connections still in the handshake",
                                value=handshaking)


class Metrics:
    """The registry, the event counters, and the scrape-time collector of one service."""

    sample_interval = DECISION_SAMPLE_INTERVAL

    def __init__(self, service: "ProxyService") -> None:
        self.service = service
        disable_created_metrics()  # no *_created series: noise on every scrape
        self.registry = CollectorRegistry()
        self.connections = Counter("distproxy_connections", "connection pairs established",
                                   ["peer", "direction"], registry=self.registry)
        self.handshake_failures = Counter("distproxy_handshake_failures", "handshakes that failed, by reason",
                                          ["reason"], registry=self.registry)
        self.decision_seconds = Histogram("distproxy_decision_seconds",
                                          "policy decision time per frame (sampled per pump "
                                          f"every {DECISION_SAMPLE_INTERVAL:g}s)",
                                          ["direction"], buckets=DECISION_BUCKETS, registry=self.registry)
        self.state_table_entries = Gauge("distproxy_state_table_entries",
                                         "entries in distproxy's per-connection state tables", ["table"],
                                         registry=self.registry)
        self.atoms_budget_used = Gauge("distproxy_atoms_budget_used",
                                       "atoms a peer has made the trusted node create, of its budget", ["peer"],
                                       registry=self.registry)
        for category in FAILURE_CATEGORIES:  # export zeros, so rate() works from the start
            self.handshake_failures.labels(reason=category)
        for peer in service.config.peers:
            for direction in Direction:
                self.connections.labels(peer=peer.name, direction=direction.value)
        self._closed: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._observe = {d: self.decision_seconds.labels(direction=d.value).observe for d in Direction}
        self.registry.register(_LiveCollector(self))

    # -- events (once per connection) ---------------------------------------------------
    def sample_decisions(self) -> None:
        """Arm a one-shot timer on every live pump with a policy hook (a LoopingCall)."""
        for pair in self.service.pairs:
            for pump in pair.pumps.values():
                hook = getattr(pump, "hook", None)
                if hook is not None and hook is not accept_all and not isinstance(hook, _OneShotTimer):
                    pump.hook = _OneShotTimer(pump, self._observe[pump.direction])

    def pair_established(self, pair: "ConnectionPair") -> None:
        assert pair.info is not None
        # The direction of the dial, named by the frames the dialler sends.
        self.connections.labels(peer=pair.info.peer, direction=pair.info.downstream_direction.value).inc()

    def handshake_failed(self, pair: "ConnectionPair", event: "hs.HandshakeFailed") -> None:
        self.handshake_failures.labels(reason=failure_category(event.reason, pair.refusal)).inc()

    def pair_closed(self, pair: "ConnectionPair") -> None:
        if pair.info is None:
            return
        for pump in pair.pumps.values():
            self._fold(self._closed[(pair.info.peer, pump.direction.value)], pump.stats)

    # -- scrape time --------------------------------------------------------------------
    @staticmethod
    def _fold(into: dict[str, int], stats: Any) -> None:
        for field, _, _ in PUMP_FIELDS:
            into[field] += getattr(stats, field, 0)

    def pump_totals(self) -> dict[tuple[str, str], dict[str, int]]:
        totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for key, stats in self._closed.items():
            for field, value in stats.items():
                totals[key][field] += value
        for pair in self.service.pairs:
            if pair.info is not None:
                for pump in pair.pumps.values():
                    self._fold(totals[(pair.info.peer, pump.direction.value)], pump.stats)
        return totals

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def site(self) -> Site:
        root = Resource()
        root.putChild(METRICS_PATH, _MetricsPage(self))
        site = _QuietSite(root)
        site.noisy = False
        return site


class _MetricsPage(Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.render()


class _QuietSite(Site):
    """No access-log line per scrape."""

    def log(self, request: Any) -> None:
        return None
