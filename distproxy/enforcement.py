"""Enforcement: turn a policy decision into what the data path does with one frame.

This is the glue between the frame pump (``distproxy.dist.datapath``) and the policy
engine (``distproxy.policy``): for each parsed frame it asks the peer's current engine
(so a reload applies to the next frame, without touching connections), counts the
decision, writes the decision log, and maps the effective action to a ``HookResult``:

- accept: forward the original bytes;
- drop: forward nothing (like a message to a dead process);
- reject: forward nothing, and send the sender OTP's own answer (exit/DOWN ``noproc``,
  a SPAWN_REPLY error), so callers fail at once instead of hanging;
- disconnect: forward nothing and close the connection pair.

In audit mode the decision records the would-be verdict and the frame is forwarded.

The stateful path (``hooks``, ``distproxy.policy.guards.StatefulHooks``) runs for every
frame: from_peer guards (flag gating, rates, sizes, atoms, funs, caps) before the rules,
connection-state recording after an accept. An Enforcer with hooks never hands out a
reusable verdict: a cached verdict must not bypass them.

An accept that read no payload and writes no log line holds for every frame with the
same control bytes on this connection and direction, until the peer's policy changes:
such results carry a :class:`Reuse` token, and the pump reuses them without decoding
(:mod:`distproxy.dist.datapath`), reporting the reuses so the counters stay exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distproxy.dist.control import ControlMessage
from distproxy.dist.datapath import ACCEPT, Direction, HookResult
from distproxy.policy import Context, Counters, DecisionLog, PolicyStore, Verdict, reject_frames
from distproxy.policy.guards import GUARD_PREFIX, StatefulHooks

DROP = HookResult(forward=False)


class Reuse:
    """The cache token of one cacheable accept (see the module docstring)."""

    __slots__ = ("enforcer", "engine", "kind", "decision", "bump")

    def __init__(self, enforcer: "Enforcer", engine: Any, kind: str, decision: Any) -> None:
        self.enforcer = enforcer
        self.engine = engine
        self.kind = kind
        self.decision = decision
        self.bump: Callable[[int], None] | None = None  # built on first reuse: most never are

    def still_valid(self) -> bool:
        e = self.enforcer
        return e.store.engine_for(e.context.peer_node) is self.engine

    def reuse(self, count: int) -> None:
        bump = self.bump
        if bump is None:
            e = self.enforcer
            bump = self.bump = e.counters.counter_for(e.context.peer_node, e.direction,
                                                      self.kind, self.decision)
        bump(count)


@dataclass
class Enforcer:
    """The policy hook of one direction of one connection pair."""

    store: PolicyStore
    counters: Counters
    decision_log: DecisionLog | None
    context: Context
    direction: Direction
    clock: Callable[[], float]
    hooks: StatefulHooks | None = None  # guards and connection state: never cached
    # The last plain accept (no payload or state read, nothing to log), with the control
    # tuple it was made for and a counter for it: (control, engine, bump). The pump hands
    # the same tuple object to every frame whose control bytes it has parsed before, so
    # a stream from one sender to one target is evaluated once, while the stateful hooks
    # still see every frame.
    _memo: tuple[Any, Any, Callable[[int], None]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def __call__(self, message: ControlMessage) -> HookResult:
        peer = self.context.peer_node
        engine = self.store.engine_for(peer)
        if engine is None:  # no policy covers this peer: nothing passes
            return HookResult(forward=False, close=f"no policy covers {peer}")
        hooks = self.hooks
        memo = self._memo
        if (memo is not None and memo[0] is message.control and memo[1] is engine
                and (hooks is None or hooks.guards is None)):
            memo[2](1)
            if hooks is not None:
                hooks.accepted(message)
            return ACCEPT
        decision = hooks.before(message, engine.policy, self.clock()) if hooks is not None else None
        if decision is None:
            decision = engine.evaluate(message, self.direction, self.context)
        self.counters.count(peer, self.direction, message.kind, decision)
        if decision.should_log and self.decision_log is not None:
            policy = engine.policy
            self.decision_log.log(decision, now=self.clock(), peer=peer, direction=self.direction,
                                  message=message, policy=policy.name, revision=policy.revision)
        action = decision.action
        if action is Verdict.ACCEPT:
            if hooks is not None:
                hooks.accepted(message)
                if not (decision.payload_dependent or decision.should_log or decision.rule_id.startswith(GUARD_PREFIX)):
                    self._memo = (message.control, engine, self.counters.counter_for(
                        peer, self.direction, message.kind, decision))
                return ACCEPT
            if decision.payload_dependent or decision.should_log:
                return ACCEPT
            return HookResult(cache=Reuse(self, engine, message.kind, decision))
        if action is Verdict.DROP:
            return DROP
        if action is Verdict.REJECT:
            replies = reject_frames(message, self.context.negotiated_flags, decision.reply_error)
            return HookResult(forward=False, replies=tuple(replies)) if replies else DROP
        detail = f": {decision.reason}" if decision.rule_id.startswith(GUARD_PREFIX) else ""
        return HookResult(forward=False, close=f"policy rule {decision.rule_id} disconnects ({message.kind}){detail}")
