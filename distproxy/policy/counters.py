"""Decision counters per (peer, direction, op, verdict), snapshots and ``distproxy stats``.

Audit would-be verdicts are counted under ``audit:<verdict>`` so a dashboard can tell
what was enforced from what only would have been.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distproxy.textable import format_columns

from .decisionlog import format_time
from .model import Decision, Mode

__all__ = ["Counters", "format_stats", "read_snapshot", "SNAPSHOT_VERSION"]

SNAPSHOT_VERSION = 1


def verdict_label(decision: Decision) -> str:
    if decision.mode is Mode.AUDIT:
        return f"audit:{decision.verdict.value}"
    return decision.verdict.value


class Counters:
    """In-memory counters; cheap enough to bump once per frame."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self._rules: dict[str, int] = defaultdict(int)

    def count(self, peer: str, direction: str, op: str, decision: Decision, n: int = 1) -> None:
        self._counts[(peer, str(direction), str(op), verdict_label(decision))] += n
        self._rules[decision.rule_id] += n

    def counter_for(self, peer: str, direction: str, op: str, decision: Decision) -> Callable[[int], None]:
        """A function that counts ``n`` such decisions at once (the data path's reused
        verdicts count a whole run of frames with one call)."""
        counts, rules = self._counts, self._rules
        key = (peer, str(direction), str(op), verdict_label(decision))
        rule = decision.rule_id

        def bump(n: int) -> None:
            counts[key] += n
            rules[rule] += n
        return bump

    def get(self, peer: str, direction: str, op: str, verdict: str) -> int:
        return self._counts.get((peer, direction, op, verdict), 0)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        rows = [
            {"peer": p, "direction": d, "op": o, "verdict": v, "count": n}
            for (p, d, o, v), n in sorted(self._counts.items())
        ]
        snap: dict[str, Any] = {"version": SNAPSHOT_VERSION, "counters": rows,
                                "rules": dict(sorted(self._rules.items()))}
        if now is not None:
            snap["time"] = format_time(now)
        return snap

    def write_snapshot(self, path: str | Path, now: float | None = None) -> None:
        """Write the snapshot as JSON atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.snapshot(now), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_snapshot(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def format_stats(snapshot: dict[str, Any]) -> str:
    """A plain-text table for ``distproxy stats``: one row per peer/direction/op, one
    column per verdict seen, then the busiest rules."""
    rows = snapshot.get("counters", [])
    verdicts: list[str] = []
    for r in rows:
        if r["verdict"] not in verdicts:
            verdicts.append(r["verdict"])
    order = ["accept", "drop", "reject", "disconnect"]
    verdicts.sort(key=lambda v: (v.startswith("audit:"),
                                 order.index(v.removeprefix("audit:"))
                                 if v.removeprefix("audit:") in order else 9, v))
    table: dict[tuple[str, str, str], dict[str, int]] = {}
    for r in rows:
        table.setdefault((r["peer"], r["direction"], r["op"]), {})[r["verdict"]] = r["count"]
    header = ["peer", "direction", "op"] + verdicts
    lines = [header]
    for key in sorted(table):
        lines.append(list(key) + [str(table[key].get(v, 0)) for v in verdicts])
    out = []
    if "time" in snapshot:
        out.append(f"snapshot {snapshot['time']}")
    if len(lines) == 1:
        out.append("no decisions counted yet")
    else:
        out.extend(format_columns(lines, right=range(3, len(header))))
    rules = snapshot.get("rules", {})
    if rules:
        out.append("")
        out.append("rules by decisions:")
        for rid, n in sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))[:20]:
            out.append(f"  {n:>10}  {rid}")
    return "\n".join(out) + "\n"
