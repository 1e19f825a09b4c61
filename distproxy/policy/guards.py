"""Payload guards and protocol sanity for from_peer frames, before any rule is asked.

The evaluator decides what a frame *means*; the guards decide whether it may cost the
trusted node anything it cannot afford, whatever the rules say. They run on every
from_peer frame (never cached: they depend on counters, clocks and connection state), in
this order, each with a stable id in the decision log:

==================  ================================================  ================
id                  refuses                                           default verdict
==================  ================================================  ================
guard:flags         an op whose distribution flag was not negotiated  disconnect
                    (SPAWN_* without SPAWN, ALIAS_SEND without ALIAS,
                    UNLINK_ID* without UNLINK_ID, PAYLOAD_* without
                    EXIT_PAYLOAD, monitors without DIST_MONITOR(_NAME),
                    SEND_SENDER without SEND_SENDER): OTP closes too
guard:rate          more than ``frames_per_second`` / ``bytes_per_second``  drop
                    (token buckets, ``burst_seconds`` deep, reactor clock)
guard:size          a frame over ``max_message_bytes``                reject
guard:malformed     a term that does not parse (unknown tag, bad      disconnect
                    length, bad UTF-8): T would close the connection
guard:depth         nesting over ``max_depth``                        reject
guard:terms         more than ``max_terms`` terms                     reject
guard:funs          a fun or export whose module is not in            reject
                    ``allow_funs`` (default: ``global``, whose
                    resolve fun is normal traffic)
guard:atoms         atoms that would take the peer over ``max_atoms`` reject
                    distinct atoms T has not itself sent
guard:monitors      a monitor beyond ``max_peer_monitors`` live ones  reject (DOWN noproc)
guard:links         a link beyond ``max_peer_links`` live ones        reject (exit noproc)
==================  ================================================  ================

reject is drop plus OTP's own answer where there is one (a SPAWN_REPLY error for a
spawn request, DOWN ``noproc`` for a gen_server call or a monitor, exit ``noproc`` for a
link), so a refused caller fails at once instead of hanging; rate refusals are only
dropped (answering a flood would amplify it). ``on_limit`` in the policy's ``limits`` replaces every default verdict but guard:flags
and guard:malformed (a frame OTP would refuse cannot be forwarded). The atom ledger is
per *peer* and lives as long as the proxy, because atoms live as long as T: reconnecting
does not buy a peer a fresh budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distproxy.dist.control import Op
from distproxy.dist.flags import DFlag
from distproxy.term import DEFAULT_LIMITS, Atom, DecodeError
from distproxy.term import Limits as DecodeLimits
from distproxy.term.atoms import AtomScan, ScanLimit, scan_at

from .globs import compile_globs
from .model import Decision, Limits, Mode, Verdict
from .state import ConnectionState

__all__ = ["GUARD_PREFIX", "GUARD_IDS", "AtomLedger", "TokenBucket", "PeerGuards",
           "GuardSettings", "settings_for", "DEFAULTS"]

GUARD_PREFIX = "guard:"
MiB = 1024 * 1024


@dataclass(frozen=True)
class GuardSettings:
    """Effective limits for one peer (policy values, or these defaults)."""

    max_atoms: int = 50_000
    frames_per_second: int = 50_000
    bytes_per_second: int = 256 * MiB
    burst_seconds: float = 1.0
    max_message_bytes: int | None = None  # None: max_frame_bytes (config/policy) is the cap
    max_depth: int = 512
    max_terms: int = 1 << 20
    max_peer_monitors: int = 10_000
    max_peer_links: int = 10_000
    allow_funs: tuple[str, ...] = ("global",)
    on_limit: Verdict | None = None


DEFAULTS = GuardSettings()

#: Guard ids and their default verdicts (``on_limit`` overrides all but the fixed ones).
GUARD_IDS: dict[str, Verdict] = {
    "flags": Verdict.DISCONNECT, "rate": Verdict.DROP, "size": Verdict.REJECT,
    "malformed": Verdict.DISCONNECT, "depth": Verdict.REJECT, "terms": Verdict.REJECT,
    "funs": Verdict.REJECT, "atoms": Verdict.REJECT, "monitors": Verdict.REJECT,
    "links": Verdict.REJECT,
}
_FIXED = frozenset(("flags", "malformed"))
#: Fraction of a peer's atom budget after which T's own atoms are learnt (AtomLedger).
LEARN_AT = 0.5
#: Atoms remembered as T's own (seen in to_peer traffic); T's table holds ~1 Mi by default.
MAX_KNOWN_ATOMS = 1 << 21

_FLAG_OF_OP: dict[int, int] = {}
for _ops, _flag in (
    ((Op.SPAWN_REQUEST, Op.SPAWN_REQUEST_TT, Op.SPAWN_REPLY, Op.SPAWN_REPLY_TT), DFlag.SPAWN),
    ((Op.ALIAS_SEND, Op.ALIAS_SEND_TT), DFlag.ALIAS),
    ((Op.UNLINK_ID, Op.UNLINK_ID_ACK), DFlag.UNLINK_ID),
    ((Op.PAYLOAD_EXIT, Op.PAYLOAD_EXIT_TT, Op.PAYLOAD_EXIT2, Op.PAYLOAD_EXIT2_TT,
      Op.PAYLOAD_MONITOR_P_EXIT), DFlag.EXIT_PAYLOAD),
    ((Op.MONITOR_P, Op.DEMONITOR_P, Op.MONITOR_P_EXIT), DFlag.DIST_MONITOR),
    ((Op.SEND_SENDER, Op.SEND_SENDER_TT), DFlag.SEND_SENDER),
):
    for _op in _ops:
        _FLAG_OF_OP[int(_op)] = int(_flag)
_MONITOR_NAME = int(DFlag.DIST_MONITOR_NAME)
_BY_NAME_OPS = (int(Op.MONITOR_P), int(Op.DEMONITOR_P))


def settings_for(limits: Limits) -> GuardSettings:
    """The policy's ``limits`` over the defaults."""
    kw = {name: getattr(limits, name) for name in GuardSettings.__dataclass_fields__
          if getattr(limits, name, None) is not None}
    return GuardSettings(**kw)


def flag_violation(message: Any, flags: int) -> str | None:
    """Why ``message`` may not be sent on a connection with ``flags``, or None."""
    op = int(message.op)
    need = _FLAG_OF_OP.get(op)
    if need is not None and not flags & need:
        return f"{message.op.name} without {DFlag(need).name}"
    if op in _BY_NAME_OPS and type(message.control[2]) is Atom and not flags & _MONITOR_NAME:
        return f"{message.op.name} by name without DIST_MONITOR_NAME"
    return None


class TokenBucket:
    """``rate`` per second, at most ``burst`` banked; ``now`` comes from the caller."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, amount: float, now: float) -> bool:
        elapsed = now - self.last
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.last = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


@dataclass
class AtomLedger:
    """Atoms one peer has introduced to T, and atoms T itself sent (which are free)."""

    known: set[bytes] = field(default_factory=set)
    introduced: set[bytes] = field(default_factory=set)
    known_full: int = 0  # atoms not remembered because ``known`` was full
    #: Scan T's to_peer frames for atoms? Only once the peer has used LEARN_AT of its
    #: budget: before that no atom of T's can be refused, and scanning every frame T
    #: sends costs more than everything else the proxy does with it.
    learning: bool = False

    def learn(self, atoms: set[bytes]) -> None:
        known = self.known
        if len(known) + len(atoms) > MAX_KNOWN_ATOMS:
            self.known_full += len(atoms)
            return
        known |= atoms

    def fresh(self, atoms: set[bytes]) -> set[bytes]:
        return atoms - self.known - self.introduced

    def commit(self, fresh: set[bytes]) -> None:
        self.introduced |= fresh


@dataclass
class Refusal:
    guard: str
    detail: str


class PeerGuards:
    """The from_peer guards of one connection (see the module docstring)."""

    def __init__(self, ledger: AtomLedger, state: ConnectionState, flags: int, now: float) -> None:
        self.ledger = ledger
        self.state = state
        self.flags = flags
        self._settings_src: Limits | None = None
        self.settings = DEFAULTS
        self._allow_funs = compile_globs(DEFAULTS.allow_funs)
        self._scan_limits = DecodeLimits(max_depth=DEFAULTS.max_depth, max_terms=DEFAULTS.max_terms)
        self._frames = TokenBucket(DEFAULTS.frames_per_second,
                                   DEFAULTS.frames_per_second * DEFAULTS.burst_seconds, now)
        self._bytes = TokenBucket(DEFAULTS.bytes_per_second,
                                  DEFAULTS.bytes_per_second * DEFAULTS.burst_seconds, now)
        self._pending: set[bytes] = set()
        self.refused: dict[str, int] = {}
        # T made these atoms at the handshake (or has them anyway): never charged.
        ledger.learn({state.trusted_node.encode(), state.peer_node.encode(), b""})

    def configure(self, limits: Limits, now: float) -> None:
        """Apply a (re)loaded policy's limits; cheap when they did not change."""
        if limits is self._settings_src:
            return
        self._settings_src = limits
        s = self.settings = settings_for(limits)
        self._allow_funs = compile_globs(s.allow_funs) if s.allow_funs else (lambda name: False)
        self._scan_limits = DecodeLimits(max_depth=s.max_depth, max_terms=s.max_terms)
        self._frames = TokenBucket(s.frames_per_second, s.frames_per_second * s.burst_seconds, now)
        self._bytes = TokenBucket(s.bytes_per_second, s.bytes_per_second * s.burst_seconds, now)

    def verdict(self, guard: str) -> Verdict:
        if guard not in _FIXED and self.settings.on_limit is not None:
            return self.settings.on_limit
        return GUARD_IDS[guard]

    def check(self, message: Any, now: float) -> Refusal | None:
        """The first guard that refuses ``message``, or None (then :meth:`commit` it)."""
        self._pending = set()
        why = flag_violation(message, self.flags)
        if why is not None:
            return Refusal("flags", why)
        s = self.settings
        frame = message.frame
        size = len(frame)
        if not self._frames.take(1, now) or not self._bytes.take(size, now):
            return Refusal("rate", f"over {s.frames_per_second} frames/s or {s.bytes_per_second} bytes/s")
        if s.max_message_bytes is not None and size > s.max_message_bytes:
            return Refusal("size", f"{size} bytes (max {s.max_message_bytes})")
        kind = message.kind
        if kind == "monitor" and len(self.state.peer_monitors) >= s.max_peer_monitors:
            return Refusal("monitors", f"the peer already holds {s.max_peer_monitors} monitors")
        if kind == "link" and len(self.state.peer_links) >= s.max_peer_links:
            return Refusal("links", f"the peer already holds {s.max_peer_links} links")
        ledger = self.ledger
        remaining = s.max_atoms - len(ledger.introduced)
        try:
            scan = _scan_frame(message, self._scan_limits, (ledger.known, ledger.introduced),
                               max(remaining, 0))
        except ScanLimit as exc:
            return Refusal(exc.limit, exc.reason)
        except DecodeError as exc:
            return Refusal("malformed", f"at byte {exc.offset}: {exc.reason}")
        for what, module in scan.funs:
            name = module.decode("utf-8", "replace")
            if not self._allow_funs(name):
                return Refusal("funs", f"{what} of module {name}")
        if scan.fresh_exceeded:
            return Refusal("atoms", f"more than the {max(remaining, 0)} new atoms left of the budget of "
                                    f"{s.max_atoms}")
        if scan.overflow:
            return Refusal("atoms", "more distinct atoms in one frame than the scanner collects")
        fresh = ledger.fresh(scan.atoms)
        if not ledger.learning and len(ledger.introduced) + len(fresh) >= s.max_atoms * LEARN_AT:
            ledger.learning = True
        if fresh and len(ledger.introduced) + len(fresh) > s.max_atoms:
            return Refusal("atoms", f"{len(fresh)} new atoms would pass the budget of {s.max_atoms} "
                                    f"({len(self.ledger.introduced)} used)")
        self._pending = fresh
        return None

    def commit(self) -> None:
        """The checked frame is forwarded: its new atoms now exist on T."""
        if self._pending:
            self.ledger.commit(self._pending)
            self._pending = set()

    def decision(self, refusal: Refusal, mode: Mode) -> Decision:
        self.refused[refusal.guard] = self.refused.get(refusal.guard, 0) + 1
        return Decision(self.verdict(refusal.guard), GUARD_PREFIX + refusal.guard, mode, True,
                        refusal.detail, True)


def _scan_frame(message: Any, limits: DecodeLimits, known: tuple[set[bytes], ...] = (),
                max_fresh: int | None = None) -> AtomScan:
    frame = message.frame
    if type(frame) is not bytes:
        frame = bytes(frame)  # one copy for both scans
    scan = scan_at(frame, 1, limits, known=known, max_fresh=max_fresh)
    if scan.fresh_exceeded:
        return scan
    if message.payload_offset is not None:
        scan = scan_at(frame, message.payload_offset, limits, into=scan, known=known, max_fresh=max_fresh)
        if scan.fresh_exceeded:
            return scan
        if scan.end != len(frame):
            raise DecodeError(scan.end, "trailing bytes after the payload")
    return scan


def learn_atoms(ledger: AtomLedger, message: Any) -> None:
    """Record the atoms of a forwarded to_peer frame (T has them already)."""
    try:
        scan = _scan_frame(message, DEFAULT_LIMITS)
    except DecodeError:
        return
    ledger.learn(scan.atoms)


#: to_peer frames larger than this are not scanned for atoms (their atoms, if the peer
#: echoes them, count against its budget: conservative, and keeps big sends cheap).
LEARN_MAX_FRAME = 64 * 1024


class StatefulHooks:
    """What an Enforcer runs around the rules on a connection with state.

    ``before`` (from_peer: the guards) may decide a frame without the rules; ``accepted``
    records what a forwarded frame changes (connection state, atoms now on T). Both
    depend on per-connection state, so an Enforcer with hooks never offers a cached
    verdict: every frame must pass through them.
    """

    __slots__ = ("direction", "state", "guards", "ledger")

    def __init__(self, direction: str, state: ConnectionState, guards: PeerGuards | None = None,
                 ledger: AtomLedger | None = None) -> None:
        self.direction = direction
        self.state = state
        self.guards = guards
        self.ledger = ledger

    def before(self, message: Any, policy: Any, now: float) -> Decision | None:
        guards = self.guards
        if guards is None:
            return None
        guards.configure(policy.limits, now)
        refusal = guards.check(message, now)
        # The guards follow the baseline's mode: a policy auditing its baseline audits them too.
        return None if refusal is None else guards.decision(refusal, policy.baseline.mode or policy.mode)

    def accepted(self, message: Any) -> None:
        if self.direction == "from_peer":
            self.state.record_from_peer(message)
            if self.guards is not None:
                self.guards.commit()
        else:
            self.state.record_to_peer(message)
            ledger = self.ledger
            if ledger is not None and ledger.learning and len(message.frame) <= LEARN_MAX_FRAME:
                learn_atoms(ledger, message)
