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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from distproxy.dist.control import ControlMessage
from distproxy.dist.datapath import ACCEPT, Direction, HookResult
from distproxy.policy import Context, Counters, DecisionLog, PolicyStore, Verdict, reject_frames
from distproxy.policy.guards import StatefulHooks

DROP = HookResult(forward=False)


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

    def __call__(self, message: ControlMessage) -> HookResult:
        peer = self.context.peer_node
        engine = self.store.engine_for(peer)
        if engine is None:  # no policy covers this peer: nothing passes
            return HookResult(forward=False, close=f"no policy covers {peer}")
        hooks = self.hooks
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
            return ACCEPT
        if action is Verdict.DROP:
            return DROP
        if action is Verdict.REJECT:
            replies = reject_frames(message, self.context.negotiated_flags, decision.reply_error)
            return HookResult(forward=False, replies=tuple(replies)) if replies else DROP
        return HookResult(forward=False, close=f"policy rule {decision.rule_id} disconnects ({message.kind})")
