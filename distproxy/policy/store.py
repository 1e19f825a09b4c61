"""PolicyStore: the running policies of every peer, with atomic, all-or-nothing reload.

The proxy asks ``store.engine_for(peer_node)`` per connection (or per frame: it is a dict
lookup). ``reload()`` loads every assigned file first and swaps the whole set at once only
if all are valid; otherwise the running policies stay and the result says why. ``poll()``
is the cheap periodic check (mtime + size of each file) the proxy calls from a timer;
SIGHUP handlers call ``reload()``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .evaluator import PolicyEngine
from .globs import compile_glob, is_glob
from .loader import PolicyLoadError, load_policy
from .model import Policy

__all__ = ["PolicyStore", "ReloadResult"]


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    swapped: bool  # True if the running set changed
    revisions: dict[str, str] = field(default_factory=dict)  # path -> revision (loaded)
    changed: tuple[str, ...] = ()  # paths whose revision differs from before
    errors: tuple[str, ...] = ()  # file:line: ... lines when not ok

    def describe(self) -> str:
        if not self.ok:
            return "policy reload failed, keeping the running policies:\n" + \
                "\n".join(self.errors)
        if not self.changed:
            return "policies unchanged"
        return "policies reloaded: " + ", ".join(
            f"{p} ({self.revisions[p]})" for p in self.changed)


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class PolicyStore:
    """Assignments of peers to policy files.

    ``assignments`` maps a peer node name, or a node-name glob such as ``"bob_*@*"``, to a
    policy path; exact names win over globs, globs are tried in the given order, and
    ``default`` (if any) covers everyone else. The constructor loads everything and
    raises PolicyLoadError if any file is invalid (refuse to start on a bad policy).
    """

    def __init__(self, assignments: Mapping[str, str | Path],
                 default: str | Path | None = None) -> None:
        self._exact = {k: str(v) for k, v in assignments.items() if not is_glob(k)}
        self._globs = [(compile_glob(k), str(v)) for k, v in assignments.items() if is_glob(k)]
        self._default = str(default) if default is not None else None
        self._engines: dict[str, PolicyEngine] = {}
        self._stats: dict[str, tuple[int, int] | None] = {}
        self._peer_cache: dict[str, PolicyEngine | None] = {}
        self._last_errors: list = []
        result = self.reload()
        if not result.ok:
            raise PolicyLoadError(self._last_errors)

    @property
    def paths(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in list(self._exact.values()) + [p for _, p in self._globs]:
            seen.setdefault(p, None)
        if self._default is not None:
            seen.setdefault(self._default, None)
        return list(seen)

    def path_for(self, peer_node: str) -> str | None:
        p = self._exact.get(peer_node)
        if p is not None:
            return p
        for match, path in self._globs:
            if match(peer_node):
                return path
        return self._default

    def engine_for(self, peer_node: str) -> PolicyEngine | None:
        """The compiled policy for ``peer_node``; None: the peer has no policy (refuse it)."""
        try:
            return self._peer_cache[peer_node]
        except KeyError:
            pass
        path = self.path_for(peer_node)
        engine = self._engines.get(path) if path is not None else None
        if len(self._peer_cache) < 10000:
            self._peer_cache[peer_node] = engine
        return engine

    def policy_for(self, peer_node: str) -> Policy | None:
        e = self.engine_for(peer_node)
        return e.policy if e is not None else None

    def policies(self) -> dict[str, Policy]:
        return {p: e.policy for p, e in self._engines.items()}

    def reload(self) -> ReloadResult:
        """Load every file; swap all at once only if all are valid."""
        new: dict[str, PolicyEngine] = {}
        stats: dict[str, tuple[int, int] | None] = {}
        errors: list[str] = []
        self._last_errors = []
        for path in self.paths:
            stats[path] = _stat_key(path)
            old = self._engines.get(path)
            try:
                policy = load_policy(path)
            except PolicyLoadError as e:
                self._last_errors.extend(e.errors)
                errors.extend(str(x) for x in e.errors)
                continue
            if old is not None and old.policy.revision == policy.revision:
                new[path] = old  # unchanged: keep the compiled engine
            else:
                new[path] = PolicyEngine(policy)
        if errors:
            # keep the running set; remember the stats so polling does not retry a
            # broken file on every tick (it retries once the file changes again)
            self._stats.update(stats)
            return ReloadResult(False, False, {}, (), tuple(errors))
        revisions = {p: e.policy.revision for p, e in new.items()}
        changed = tuple(p for p, e in new.items()
                        if p not in self._engines or self._engines[p] is not e)
        self._engines = new  # the atomic swap: one reference assignment
        self._peer_cache = {}
        self._stats = stats
        return ReloadResult(True, bool(changed), revisions, changed, ())

    def changed_on_disk(self) -> bool:
        """Cheap change detection: any assigned file's (mtime, size) differs."""
        return any(_stat_key(p) != self._stats.get(p) for p in self.paths)

    def poll(self) -> ReloadResult | None:
        """Reload if a file changed on disk, else None."""
        if not self.changed_on_disk():
            return None
        return self.reload()

