"""The evaluator: one call per data frame, first match in file order.

:class:`PolicyEngine` compiles a :class:`Policy` once: every rule becomes a tuple of
predicates (cheap control-tuple tests first, payload tests last) and a pair of
pre-built :class:`Decision` objects, and rules are indexed by op kind so a frame only
tries the rules that can match it. The payload is decoded only when a candidate rule
asks for it.

Order per direction: (from_peer only) the baseline entries, then the file's rules, then
the direction's default. Audit-mode rules are *shadows*: a match is remembered and
evaluation continues as if the rule were absent, so putting a rule in audit mode never
lets through what the enforced rules would stop. The result is the first enforced match
(or the default); if that accepts and a shadow would not have, the shadow's decision is
returned instead (mode audit, so the proxy still forwards, and the log shows the
would-be verdict and rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .baseline import THREATS, BaselineEntry, build_baseline, PREFIX
from .globs import compile_globs
from .inspect import FrameView, spawn_mfa
from .mfa import compile_mfas
from .model import (
    DEFAULT_RULE_ID,
    KIND_NAMES,
    Context,
    Decision,
    Direction,
    DirectionPolicy,
    Mode,
    Policy,
    Rule,
    Verdict,
)
from .patterns import compile_pattern

__all__ = ["PolicyEngine", "evaluate", "Explanation", "compile_rule_predicates"]

Predicate = Callable[[FrameView], bool]


@dataclass(frozen=True, slots=True)
class _Compiled:
    id: str
    preds: tuple[Predicate, ...]
    audit: bool
    verdict: Verdict
    decision: Decision  # payload_dependent=False
    decision_p: Decision  # payload_dependent=True
    source: Rule | BaselineEntry | None
    names: Callable[[str | None], bool] | None = None  # static target-name filter


def _node_matcher(globs: tuple[str, ...]) -> Callable[[str], bool]:
    return lru_cache(maxsize=1024)(compile_globs(globs))


class StateView(FrameView):
    """A FrameView that also carries the connection's state (for the ``reply`` matcher)."""

    __slots__ = ("state",)


def _reply_predicate(want: bool) -> Predicate:
    def reply(v: FrameView) -> bool:
        v.consulted = True  # depends on connection state: never a cacheable decision
        state = getattr(v, "state", None)
        if state is None:  # explain/test: no connection, assume the frame is a reply
            return want
        return state.is_reply(v.msg) is want

    return reply


def compile_rule_predicates(rule: Rule) -> tuple[Predicate, ...]:
    """The rule's matchers as predicates on a FrameView, cheap ones first."""
    cheap: list[Predicate] = []
    deep: list[Predicate] = []
    if rule.reply is not None:
        cheap.append(_reply_predicate(rule.reply))
    if rule.from_node:
        fm = _node_matcher(rule.from_node)
        cheap.append(lambda v: fm(v.sender_node))
    if rule.to_node:
        tm = _node_matcher(rule.to_node)
        cheap.append(lambda v: tm(v.receiver_node))
    if rule.to:
        names = compile_globs(rule.to)

        def to(v: FrameView) -> bool:
            n = v.target_name()
            return n is not None and names(n)

        cheap.append(to)
    if rule.mfa:
        mm = compile_mfas(rule.mfa)
        cheap.append(lambda v: mm(spawn_mfa(v.msg)))
    if rule.call:
        cm = compile_mfas(rule.call)
        deep.append(lambda v: cm(v.call()))
    if rule.payload:
        pats = tuple(compile_pattern(s) for s in rule.payload)

        def payload(v: FrameView) -> bool:
            raw, off = v.raw_payload()
            if off < 0:
                return False
            for p in pats:
                if p.may_match_bytes(raw, off):
                    term = v.payload()
                    if p.match(term):
                        return True
            return False

        deep.append(payload)
    return tuple(cheap + deep)


def _decisions(rule_id: str, verdict: Verdict, mode: Mode, log: bool, reason: str,
               reply_error: str | None) -> tuple[Decision, Decision]:
    return (Decision(verdict, rule_id, mode, log, reason, False, reply_error),
            Decision(verdict, rule_id, mode, log, reason, True, reply_error))


#: Kinds whose target may be a registered name (candidates are pre-filtered by name).
NAME_KINDS = frozenset(("reg_send", "monitor", "demonitor"))
#: Bound on the per-table cache of (kind, name) -> candidate rules.
MAX_NAME_CACHE = 4096


@dataclass(frozen=True)
class _Table:
    by_kind: dict[str, tuple[_Compiled, ...]]
    any_kind: tuple[_Compiled, ...]
    default: _Compiled
    by_name: dict[tuple[str, str | None], tuple[_Compiled, ...]]

    def for_name(self, kind: str, name: str | None) -> tuple[_Compiled, ...]:
        """The candidates of ``kind`` that can match a frame addressed to ``name``."""
        key = (kind, name)
        hit = self.by_name.get(key)
        if hit is None:
            hit = tuple(c for c in self.by_kind[kind] if c.names is None or c.names(name))
            if len(self.by_name) < MAX_NAME_CACHE:
                self.by_name[key] = hit
        return hit


@dataclass(frozen=True)
class Explanation:
    """What ``explain`` prints: the decision plus every rule that matched, in order."""

    decision: Decision
    matches: tuple[tuple[str, Mode, Verdict, str], ...]  # (id, mode, verdict, why)
    tried: int


def _describe_rule(rule: Rule) -> str:
    parts = []
    if rule.ops:
        parts.append("op " + "|".join(rule.ops))
    if rule.reply is not None:
        parts.append("a reply" if rule.reply else "not a reply")
    for label, vals in (("to", rule.to), ("from_node", rule.from_node),
                        ("to_node", rule.to_node), ("payload", rule.payload)):
        if vals:
            parts.append(f"{label} " + " | ".join(vals))
    for label, specs in (("mfa", rule.mfa), ("call", rule.call)):
        if specs:
            parts.append(f"{label} " + " | ".join(s.source for s in specs))
    text = ", ".join(parts) if parts else "any frame"
    if rule.description:
        text += f" ({rule.description})"
    return text


class PolicyEngine:
    """A compiled policy. Immutable after construction; safe to share between peers."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._tables: dict[str, _Table] = {
            Direction.TO_PEER.value: self._table(policy.to_peer, [], policy.mode),
            Direction.FROM_PEER.value: self._table(
                policy.from_peer, build_baseline(policy.baseline), policy.mode),
        }

    # -- compilation ---------------------------------------------------------------------

    def _table(self, dp: DirectionPolicy, baseline: list[BaselineEntry],
               file_mode: Mode) -> _Table:
        compiled: list[tuple[tuple[str, ...], _Compiled]] = []
        bmode = self.policy.baseline.mode or file_mode
        for e in baseline:
            reason = THREATS.get(e.id.removeprefix(PREFIX), "")
            d, dp_ = _decisions(e.id, e.verdict, bmode, self.policy.baseline.log, reason, None)
            compiled.append((e.kinds, _Compiled(e.id, (e.denies,), bmode is Mode.AUDIT,
                                                e.verdict, d, dp_, e, e.names)))
        for r in dp.rules:
            mode = r.mode or file_mode
            d, dp_ = _decisions(r.id, r.action, mode, r.log, _describe_rule(r), r.reply_error)
            names = None
            if r.to:
                g = compile_globs(r.to)
                names = (lambda g: lambda n: n is not None and g(n))(g)
            compiled.append((r.ops, _Compiled(r.id, compile_rule_predicates(r),
                                              mode is Mode.AUDIT, r.action, d, dp_, r, names)))
        by_kind: dict[str, tuple[_Compiled, ...]] = {}
        for kind in KIND_NAMES:
            by_kind[kind] = tuple(c for kinds, c in compiled if not kinds or kind in kinds)
        any_kind = tuple(c for kinds, c in compiled if not kinds)
        d, dp_ = _decisions(DEFAULT_RULE_ID, dp.default, file_mode, dp.default_log,
                            "no rule matched: the direction's default", None)
        default = _Compiled(DEFAULT_RULE_ID, (), file_mode is Mode.AUDIT, dp.default,
                            d, dp_, None)
        return _Table(by_kind, any_kind, default, {})

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, message: Any, direction: Direction | str, ctx: Context) -> Decision:
        """The decision for one parsed frame travelling in ``direction`` on ``ctx``."""
        table = self._tables[direction]
        cands = table.by_kind.get(message.kind)
        if cands is None:
            cands = table.any_kind
        if direction == "from_peer":
            view = StateView(message, direction, ctx.peer_node, ctx.trusted_node,
                             ctx.peer_node)
        else:
            view = StateView(message, direction, ctx.trusted_node, ctx.peer_node,
                             ctx.peer_node)
        view.state = ctx.state
        if message.kind in NAME_KINDS:
            cands = table.for_name(message.kind, view.target_name())
        shadow: _Compiled | None = None
        final: _Compiled | None = None
        for c in cands:
            for p in c.preds:
                if not p(view):
                    break
            else:
                if c.audit:
                    if shadow is None:
                        shadow = c
                    continue
                final = c
                break
        else:
            final = table.default
            if final.audit:
                if shadow is None:
                    shadow = final
                final = None
        if final is None or (shadow is not None and final.verdict is Verdict.ACCEPT
                             and shadow.verdict is not Verdict.ACCEPT):
            chosen = shadow
        else:
            chosen = final
        assert chosen is not None
        return chosen.decision_p if view.consulted else chosen.decision

    def explain(self, message: Any, direction: Direction | str, ctx: Context) -> Explanation:
        """Like :meth:`evaluate`, but records every matching rule and why (slow path)."""
        decision = self.evaluate(message, direction, ctx)
        table = self._tables[direction]
        cands = table.by_kind.get(message.kind, table.any_kind)
        sender = ctx.sender_node(direction)
        receiver = ctx.receiver_node(direction)
        matches: list[tuple[str, Mode, Verdict, str]] = []
        for c in cands:
            view = StateView(message, direction, sender, receiver, ctx.peer_node)
            view.state = ctx.state
            if all(p(view) for p in c.preds):
                src = c.source
                if isinstance(src, Rule):
                    why = _describe_rule(src)
                elif isinstance(src, BaselineEntry):
                    why = THREATS.get(src.id.removeprefix(PREFIX), "")
                else:
                    why = ""
                matches.append((c.id, c.decision.mode, c.verdict, why))
        d = table.default
        matches.append((d.id, d.decision.mode, d.verdict, d.decision.reason))
        return Explanation(decision, tuple(matches), len(cands))

    def rule_ids(self, direction: Direction | str) -> list[str]:
        t = self._tables[direction]
        seen: dict[str, None] = {}
        for cands in t.by_kind.values():
            for c in cands:
                seen.setdefault(c.id, None)
        return list(seen)


_ENGINES: dict[int, tuple[Policy, PolicyEngine]] = {}


def engine_for(policy: Policy | PolicyEngine) -> PolicyEngine:
    """The compiled engine for ``policy`` (compiled once per Policy object)."""
    if isinstance(policy, PolicyEngine):
        return policy
    hit = _ENGINES.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    engine = PolicyEngine(policy)
    if len(_ENGINES) > 256:
        _ENGINES.clear()
    _ENGINES[id(policy)] = (policy, engine)
    return engine


def evaluate(policy: Policy | PolicyEngine, message: Any, direction: Direction | str,
             ctx: Context) -> Decision:
    """Functional form of :meth:`PolicyEngine.evaluate` (compiles and caches per policy)."""
    return engine_for(policy).evaluate(message, direction, ctx)
