"""The decision log: JSON lines, bounded in size and rate, sans-IO friendly.

One line per non-accept decision (audit would-be verdicts included) and per decision of
a ``log: true`` rule. The writer never reads a clock (``now`` is a Unix time passed in)
and never starts threads. Bounds:

* size: when the file would exceed ``max_bytes`` it is rotated (``log``, ``log.1`` ...
  ``log.<keep>``; the oldest is deleted);
* rate: a token bucket of ``rate`` lines/s with ``burst`` capacity; lines over the cap
  are counted, not written, and :meth:`DecisionLog.tick` writes a summary line with the
  suppressed count at most every ``summary_interval`` seconds.
"""

from __future__ import annotations

import json
import os
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .model import Decision
from .render import format_term

__all__ = ["DecisionLog", "LogLimits", "decision_record", "format_time"]


@dataclass(frozen=True)
class LogLimits:
    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5
    rate: float = 100.0  # lines per second
    burst: int = 200
    summary_interval: float = 60.0


def format_time(now: float) -> str:
    """ISO 8601 UTC with milliseconds."""
    t = _time.gmtime(now)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(now % 1 * 1000):03d}Z"


def _target(message: Any) -> str | None:
    t = getattr(message, "target", None)
    if t is None:
        if getattr(message, "kind", None) == "spawn_request":
            mfa = message.control[4]
            return format_term(mfa)
        return None
    return format_term(t)


def decision_record(decision: Decision, *, now: float, peer: str, direction: str,
                    message: Any, policy: str = "", revision: str = "") -> dict[str, Any]:
    """The JSON object of one log line."""
    rec: dict[str, Any] = {
        "time": format_time(now),
        "peer": peer,
        "direction": str(direction),
        "op": str(message.kind),
        "tag": int(message.op),
        "target": _target(message),
        "rule_id": decision.rule_id,
        "verdict": decision.verdict.value,
        "mode": decision.mode.value,
        "action": decision.action.value,
        "policy": policy,
        "revision": revision,
    }
    sender = getattr(message, "sender", None)
    if sender is not None:
        rec["sender"] = format_term(sender)
    return rec


class DecisionLog:
    """Append-only JSON-lines writer with rotation and a rate cap."""

    def __init__(self, path: str | Path, limits: LogLimits = LogLimits()) -> None:
        self.path = Path(path)
        self.limits = limits
        self._tokens = float(limits.burst)
        self._last_refill: float | None = None
        self._last_summary: float | None = None
        self._fh: IO[str] | None = None
        self._size = 0
        self.written = 0
        self.suppressed = 0  # since the last summary
        self.suppressed_total = 0
        self.rotations = 0

    # -- file handling -------------------------------------------------------------------

    def _open(self) -> IO[str]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            try:
                self._size = self.path.stat().st_size
            except OSError:
                self._size = 0
        return self._fh

    def _rotate(self) -> None:
        self.close()
        keep = self.limits.keep
        oldest = self.path.with_name(f"{self.path.name}.{keep}")
        if keep <= 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest.unlink(missing_ok=True)
            for i in range(keep - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            if self.path.exists():
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1
        self._size = 0

    def _write_line(self, rec: dict[str, Any]) -> None:
        line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n"
        n = len(line.encode("utf-8"))
        fh = self._open()
        if self._size and self._size + n > self.limits.max_bytes:
            self._rotate()
            fh = self._open()
        fh.write(line)
        fh.flush()
        self._size += n
        self.written += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # -- rate cap ------------------------------------------------------------------------

    def _take(self, now: float) -> bool:
        lim = self.limits
        if self._last_refill is None:
            self._last_refill = now
        elapsed = max(0.0, now - self._last_refill)
        self._last_refill = now
        self._tokens = min(float(lim.burst), self._tokens + elapsed * lim.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    # -- API -----------------------------------------------------------------------------

    def record(self, rec: dict[str, Any], now: float) -> bool:
        """Write one prepared record if the rate cap allows; True if written."""
        if self._last_summary is None:
            self._last_summary = now
        if not self._take(now):
            self.suppressed += 1
            self.suppressed_total += 1
            return False
        self._write_line(rec)
        return True

    def log(self, decision: Decision, *, now: float, peer: str, direction: str,
            message: Any, policy: str = "", revision: str = "") -> bool:
        """Log ``decision`` if the log policy wants it (non-accept or ``log: true``)."""
        if not decision.should_log:
            return False
        rec = decision_record(decision, now=now, peer=peer, direction=direction,
                              message=message, policy=policy, revision=revision)
        return self.record(rec, now)

    def tick(self, now: float) -> bool:
        """Write the periodic summary line when due and something was suppressed."""
        if self._last_summary is None:
            self._last_summary = now
            return False
        if now - self._last_summary < self.limits.summary_interval:
            return False
        interval = now - self._last_summary
        self._last_summary = now
        if not self.suppressed:
            return False
        self._write_line({"time": format_time(now), "type": "summary",
                          "suppressed": self.suppressed, "interval_s": round(interval, 3),
                          "suppressed_total": self.suppressed_total})
        self.suppressed = 0
        return True
