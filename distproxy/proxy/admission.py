"""Handshake flood control: who may start a handshake, before anything is read.

Each new TCP connection is admitted or refused per (listener, source address): at most
``max_pending`` of its connections may be in their handshake at once, and new ones come
from a token bucket (``rate`` per second, ``burst`` deep, reactor clock). A refused
connection is closed at once: it never reaches the handshake relay, so it costs the
trusted node nothing (node names are validated by the relay anyway, before the trusted
node sees one). Refusals are counted; the log gets the first of each kind per key and
then one line per ``LOG_EVERY``, so a flood cannot flood the log.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Hashable

from distproxy.policy.guards import TokenBucket

__all__ = ["Admission", "LOG_EVERY", "MAX_KEYS"]

log = logging.getLogger("distproxy.admission")

LOG_EVERY = 1000  # refusals between two log lines for one key
MAX_KEYS = 4096  # (listener, address) buckets remembered; the oldest is forgotten first


class Admission:
    """Pending-handshake caps and handshake rates per key (see the module docstring)."""

    def __init__(self, max_pending: int, rate: float, burst: int) -> None:
        self.max_pending = max_pending
        self.rate = rate
        self.burst = burst
        self.pending: Counter[Hashable] = Counter()
        self.buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self.refused: Counter[str] = Counter()
        self._refused_per_key: Counter[tuple[Hashable, str]] = Counter()

    def admit(self, key: Hashable, now: float) -> str | None:
        """None if a connection for ``key`` may start its handshake, else why not (and it
        is counted as refused). An admitted connection must be :meth:`release`d once."""
        reason = None
        if self.pending[key] >= self.max_pending:
            reason = "pending"
        else:
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
                if len(self.buckets) > MAX_KEYS:
                    self.buckets.popitem(last=False)
            else:
                self.buckets.move_to_end(key)
            if not bucket.take(1, now):
                reason = "rate"
        if reason is None:
            self.pending[key] += 1
            return None
        self.refused[reason] += 1
        count = self._refused_per_key[(key, reason)] = self._refused_per_key[(key, reason)] + 1
        if len(self._refused_per_key) > MAX_KEYS:
            self._refused_per_key.clear()
        if count == 1 or count % LOG_EVERY == 0:
            what = (f"{self.max_pending} handshakes pending" if reason == "pending"
                    else f"over {self.rate:g} handshakes/s")
            log.warning("refused a connection from %s: %s (%d refused so far)", key, what, count)
        return reason

    def release(self, key: Hashable) -> None:
        """The handshake of an admitted connection ended (done, failed or closed)."""
        left = self.pending[key] - 1
        if left > 0:
            self.pending[key] = left
        else:
            del self.pending[key]
