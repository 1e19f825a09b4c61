"""Policy: model, YAML loader, evaluator, baseline, patterns, replies, log, counters.

The proxy's entry points (see docs/POLICY.md, "API for the proxy"):

* :class:`PolicyStore` (store.py): peer -> compiled policy, atomic reload, polling;
* :meth:`PolicyEngine.evaluate` / :func:`evaluate` -> :class:`Decision`;
* :func:`reject_frames` (replies.py): the frames a reject sends back;
* :class:`DecisionLog`, :class:`Counters`, :func:`format_stats`;
* :func:`distproxy.policy.cli.add_subcommands` for ``check``/``explain``/``test``.
"""

from .counters import Counters, format_stats, read_snapshot
from .decisionlog import DecisionLog, LogLimits, decision_record
from .evaluator import Explanation, PolicyEngine, evaluate
from .loader import PolicyError, PolicyLoadError, load_policy, load_policy_text
from .model import Context, Decision, Direction, Mode, Policy, Rule, Verdict
from .replies import reject_frames
from .store import PolicyStore, ReloadResult

__all__ = [
    "Context", "Counters", "Decision", "DecisionLog", "Direction", "Explanation",
    "LogLimits", "Mode", "Policy", "PolicyEngine", "PolicyError", "PolicyLoadError",
    "PolicyStore", "ReloadResult", "Rule", "Verdict", "decision_record", "evaluate",
    "format_stats", "load_policy", "load_policy_text", "read_snapshot", "reject_frames",
]
