"""The policy data model: verdicts, modes, directions, rules, decisions, context.

Plain frozen objects produced by the loader and consumed by the evaluator. Rules keep
their source text (for ``explain`` and logs) next to the compiled matchers built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from distproxy.dist.control import Kind
from distproxy.dist.datapath import Direction  # one definition for the data path and policies

__all__ = [
    "Verdict",
    "Mode",
    "Direction",
    "KIND_NAMES",
    "MfaSpec",
    "Rule",
    "DirectionPolicy",
    "BaselineConfig",
    "Limits",
    "Policy",
    "Decision",
    "Context",
    "DEFAULT_RULE_ID",
]


class Verdict(StrEnum):
    """What happens to a frame. Only ``accept`` forwards it (in enforce mode)."""

    ACCEPT = "accept"
    DROP = "drop"  # silently, like a message to a dead process
    REJECT = "reject"  # drop and synthesise a polite failure back (replies.py)
    DISCONNECT = "disconnect"  # close both legs of the connection pair


class Mode(StrEnum):
    ENFORCE = "enforce"
    AUDIT = "audit"  # record the would-be verdict, forward anyway


#: The folded op names a rule's ``op`` may use.
KIND_NAMES: tuple[str, ...] = tuple(kind.value for kind in Kind)

#: Rule id used for a direction's default verdict.
DEFAULT_RULE_ID = "default"


@dataclass(frozen=True)
class MfaSpec:
    """``"mod:fun/arity"`` with globs in module and function and ``*`` for any arity."""

    source: str
    module: str
    function: str
    arity: int | None  # None: any arity


@dataclass(frozen=True)
class Rule:
    """One rule as written in the file (the evaluator compiles it)."""

    id: str
    line: int
    action: Verdict
    mode: Mode | None = None  # None: the file's mode
    log: bool = False
    ops: tuple[str, ...] = ()  # empty: any op
    to: tuple[str, ...] = ()  # registered-name globs
    mfa: tuple[MfaSpec, ...] = ()
    call: tuple[MfaSpec, ...] = ()
    payload: tuple[str, ...] = ()  # pattern sources (any of)
    from_node: tuple[str, ...] = ()
    to_node: tuple[str, ...] = ()
    reply_error: str | None = None  # spawn_request reject: the error atom
    description: str = ""
    reply: bool | None = None  # True: only replies to what T asked (state.py); False: only non-replies


@dataclass(frozen=True)
class DirectionPolicy:
    default: Verdict
    default_line: int
    rules: tuple[Rule, ...] = ()
    default_log: bool = False


#: Baseline entry ids (without the ``baseline:`` prefix); see baseline.py.
@dataclass(frozen=True)
class BaselineConfig:
    enabled: bool = True
    mode: Mode | None = None  # None: the file's mode
    log: bool = False
    allow_spawn: tuple[MfaSpec, ...] = ()
    allow_names: tuple[str, ...] = ()
    pg_scopes: tuple[str, ...] = ("pg",)
    #: io-request MFAs io servers may apply: what io:format/fwrite/write/fread send
    allow_io_mfa: tuple[MfaSpec, ...] = (
        MfaSpec("io_lib:format/2", "io_lib", "format", 2),
        MfaSpec("io_lib:fwrite/2", "io_lib", "fwrite", 2),
        MfaSpec("io_lib:write/1", "io_lib", "write", 1),
        MfaSpec("io_lib:fread/1", "io_lib", "fread", 1),
    )
    disable: tuple[str, ...] = ()  # entry ids switched off


@dataclass(frozen=True)
class Limits:
    """Per-peer limits enforced by the proxy layer (not by the evaluator).

    None means the safe default of ``distproxy.policy.guards`` (docs/POLICY.md section 3).
    """

    max_frame_bytes: int | None = None
    max_atoms: int | None = None  # distinct atoms the peer may introduce to T
    frames_per_second: int | None = None
    handshake_timeout_s: float | None = None
    hidden: bool | None = None  # clear DFLAG_PUBLISHED on the peer's legs
    bytes_per_second: int | None = None
    burst_seconds: float | None = None  # token-bucket depth, in seconds of the rate
    max_message_bytes: int | None = None  # one frame from the peer
    max_depth: int | None = None  # nesting of one from_peer term
    max_terms: int | None = None  # terms in one from_peer frame
    max_peer_monitors: int | None = None  # live monitors the peer holds on T processes
    max_peer_links: int | None = None  # live links the peer created to T processes
    allow_funs: tuple[str, ...] | None = None  # module globs of funs/exports a peer may send
    on_limit: Verdict | None = None  # None: each guard's own default verdict


@dataclass(frozen=True)
class Policy:
    name: str
    path: str
    revision: str  # sha256 prefix of the file content
    mode: Mode
    baseline: BaselineConfig
    to_peer: DirectionPolicy
    from_peer: DirectionPolicy
    limits: Limits = field(default_factory=Limits)
    description: str = ""

    def direction(self, d: Direction | str) -> DirectionPolicy:
        return self.from_peer if d == Direction.FROM_PEER else self.to_peer

    @property
    def rule_count(self) -> int:
        return len(self.to_peer.rules) + len(self.from_peer.rules)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one frame.

    ``verdict`` is what the deciding rule says; ``mode`` whether it is enforced. The
    proxy acts on :attr:`action` (``verdict`` in enforce mode, ``accept`` in audit mode).
    ``payload_dependent`` is False when no payload matcher and no connection state (the
    ``reply`` matcher) was consulted, so the same
    decision holds for any frame with the same wire op, target name, spawn MFA, sender
    node and connection under the same policy revision.
    """

    verdict: Verdict
    rule_id: str
    mode: Mode = Mode.ENFORCE
    log: bool = False
    reason: str = ""
    payload_dependent: bool = False
    reply_error: str | None = None

    @property
    def action(self) -> Verdict:
        return self.verdict if self.mode is Mode.ENFORCE else Verdict.ACCEPT

    @property
    def forward(self) -> bool:
        return self.action is Verdict.ACCEPT

    @property
    def should_log(self) -> bool:
        """Decision-log policy: every non-accept (including audit would-be) and log: true."""
        return self.log or self.verdict is not Verdict.ACCEPT


@dataclass(frozen=True, slots=True)
class Context:
    """The connection a frame travels on (constant for the connection's life)."""

    peer_node: str  # e.g. "ec2_node@10.0.0.5"
    trusted_node: str  # e.g. "my_desktop@127.0.0.1"
    negotiated_flags: int = 0
    #: the connection's ConnectionState (policy/state.py); None outside a real connection
    #: (explain, test), where the ``reply`` matcher assumes a frame is a reply
    state: Any = field(default=None, compare=False, hash=False, repr=False)

    def sender_node(self, direction: Direction | str) -> str:
        return self.peer_node if direction == Direction.FROM_PEER else self.trusted_node

    def receiver_node(self, direction: Direction | str) -> str:
        return self.trusted_node if direction == Direction.FROM_PEER else self.peer_node


def as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
