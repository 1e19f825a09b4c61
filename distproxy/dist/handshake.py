"""Sans-IO distribution handshake: one machine per role, and the two-leg relay.

``AcceptorHandshake`` is the proxy accepting a real node's dial; ``InitiatorHandshake``
is the proxy dialling a real node. Each owns a ``{packet,2}`` :class:`FrameBuffer`,
parses only the messages its current state expects (later ones stay buffered, like
``gen_tcp:recv`` in passive mode) and turns local decisions into bytes. Neither decides
policy: :class:`HandshakeRelay` joins one of each into the sequence of
dist-protocol.md 9.2, with one cookie per leg, and is what the I/O layer drives.

Cookie split: every digest on the downstream leg is computed from the downstream
cookie and every digest on the upstream leg from the upstream cookie, inside the
machine of that leg; the relay never hands one leg's cookie to the other.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Union

from .errors import InvalidNodeName, ProtocolError
from .flags import MANDATORY_25, PROXY_MASK, DFlag, describe, expand_digest, missing_mandatory
from .framing import HEADER_HANDSHAKE, MAX_HANDSHAKE_MESSAGE, FrameBuffer, encode_frame
from .handshake_messages import (
    CONTINUE_STATUSES,
    KNOWN_STATUSES,
    STATUS_ALIVE,
    STATUS_FALSE,
    STATUS_NAMED_PREFIX,
    STATUS_NOT_ALLOWED,
    STATUS_TRUE,
    VERSION_6,
    HandshakeError,
    WrongCookie,
    encode_ack,
    encode_challenge,
    encode_name,
    encode_reply,
    encode_status,
    gen_digest,
    parse_ack,
    parse_challenge,
    parse_complement,
    parse_name,
    parse_reply,
    parse_status,
)
from .names import NodeName, parse_node_name

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_HANDSHAKE_BUFFER",
    "MAX_EARLY_DATA",
    "OLD_NAME_ASSUMED_HIGH_FLAGS",
    "HandshakeError",
    "WrongCookie",
    "AcceptorHandshake",
    "InitiatorHandshake",
    "AState",
    "IState",
    "NameReceived",
    "AliveReply",
    "ComplementReceived",
    "ReplyVerified",
    "StatusReceived",
    "ChallengeReceived",
    "AckVerified",
    "HandshakeRelay",
    "SendDownstream",
    "SendUpstream",
    "DialUpstream",
    "HandshakeDone",
    "HandshakeFailed",
    "RelayEvent",
]

#: Seconds allowed per handshake step (OTP's net_setuptime default).
DEFAULT_DEADLINE = 7.0
#: Unparsed bytes one leg may pile up during the handshake (a few messages' worth).
MAX_HANDSHAKE_BUFFER = 4 * (MAX_HANDSHAKE_MESSAGE + 2)
#: Data-phase bytes one leg may send after its last handshake message while the other
#: leg is still finishing (upstream may talk right after its 'a'). The I/O layer should
#: pause reading that leg when ``HandshakeRelay.upstream_done`` is set.
MAX_EARLY_DATA = 16 * 1024 * 1024
#: High flag bits assumed for a v5 ``'n'`` dialler until its ``'c'`` arrives: what
#: OTP 24 (the newest release that sends ``'n'``) offers: SPAWN, V4_NC, ALIAS.
OLD_NAME_ASSUMED_HIGH_FLAGS = DFlag.SPAWN | DFlag.V4_NC | DFlag.ALIAS
_LOW32 = 0xFFFFFFFF

ChallengeSource = Callable[[], int]


def _random_challenge() -> int:
    return secrets.randbits(32)


# -- machine events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameReceived:
    """The dialler's send_name. ``creation`` is None for a v5 ``'n'`` (it comes in ``'c'``)."""

    name: NodeName
    flags: DFlag
    creation: int | None
    version: int


@dataclass(frozen=True, slots=True)
class AliveReply:
    """``strue``/``sfalse`` after an ``alive`` status."""

    ok: bool


@dataclass(frozen=True, slots=True)
class ComplementReceived:
    flags: DFlag  # the full 64-bit flags (low from 'n', high from 'c')
    creation: int


@dataclass(frozen=True, slots=True)
class ReplyVerified:
    """The dialler's ``'r'`` carried the right digest of our challenge."""


@dataclass(frozen=True, slots=True)
class StatusReceived:
    status: str


@dataclass(frozen=True, slots=True)
class ChallengeReceived:
    flags: DFlag
    challenge: int
    creation: int
    name: NodeName


@dataclass(frozen=True, slots=True)
class AckVerified:
    """The acceptor's ``'a'`` carried the right digest of our challenge."""


class AState(Enum):
    AWAIT_NAME = "send_name"
    NAME_RECEIVED = "local status decision"
    AWAIT_ALIVE_REPLY = "alive reply (strue/sfalse)"
    STATUS_SENT = "local challenge"
    AWAIT_COMPLEMENT = "complement ('c')"
    AWAIT_REPLY = "challenge reply ('r')"
    REPLY_VERIFIED = "local challenge ack"
    DONE = "done"
    CLOSED = "closed"
    ERROR = "error"


class IState(Enum):
    START = "local send_name"
    AWAIT_STATUS = "status"
    AWAIT_ALIVE_DECISION = "local alive reply"
    AWAIT_CHALLENGE = "challenge ('N')"
    CHALLENGE_RECEIVED = "local challenge reply"
    AWAIT_ACK = "challenge ack ('a')"
    DONE = "done"
    CLOSED = "closed"
    ERROR = "error"


class _Leg:
    """Shared plumbing: a packet-2 buffer, error latching, leftovers."""

    _state: Enum
    _ERROR: Enum
    _DONE: Enum
    _TERMINAL: frozenset[Enum]

    def __init__(self) -> None:
        self._buf = FrameBuffer(HEADER_HANDSHAKE, MAX_HANDSHAKE_MESSAGE)
        self._error: HandshakeError | None = None

    @property
    def error(self) -> HandshakeError | None:
        return self._error

    def _fail(self, err: HandshakeError) -> HandshakeError:
        self._state = self._ERROR
        self._error = err
        return err

    def _feed(self, data: bytes | memoryview) -> None:
        if self._error is not None:
            raise self._error
        done = self._state is self._DONE
        if self._state in self._TERMINAL and not done:
            raise self._fail(HandshakeError(self._state.value, "data after the handshake ended"))
        try:
            self._buf.feed(data)
        except ProtocolError as e:  # cannot happen with u16 lengths, but stay typed
            raise self._fail(HandshakeError("framing", e.reason)) from e
        if done:  # early data-phase bytes, kept for leftover()
            if self._buf.buffered > MAX_EARLY_DATA:
                raise self._fail(HandshakeError("done", "too much early data before the other leg finished"))
        elif self._buf.buffered > MAX_HANDSHAKE_BUFFER:
            raise self._fail(HandshakeError(self._state.value, "too much data during handshake"))

    def _require(self, state: Enum, action: str) -> None:
        if self._error is not None:
            raise self._error
        if self._state is not state:
            raise HandshakeError(action, f"not allowed in state {self._state.name}")

    def leftover(self) -> bytes:
        """Bytes after the final handshake message (the first data frames); once DONE."""
        return self._buf.take_rest()


class AcceptorHandshake(_Leg):
    """The proxy accepting a real node's dial (dist_util's ``handshake_other_started``).

    Flow: ``receive_data`` -> :class:`NameReceived`; ``send_status``; [``alive`` ->
    :class:`AliveReply`]; ``send_challenge`` (with this leg's cookie); [v5 ->
    :class:`ComplementReceived`]; :class:`ReplyVerified` (a wrong digest raises
    :class:`WrongCookie`); ``send_ack`` -> DONE, then ``leftover()``.
    """

    _ERROR = AState.ERROR
    _DONE = AState.DONE
    _TERMINAL = frozenset({AState.DONE, AState.CLOSED, AState.ERROR})

    def __init__(self, challenge_source: ChallengeSource = _random_challenge) -> None:
        super().__init__()
        self._state: AState = AState.AWAIT_NAME
        self._challenge_source = challenge_source
        self.peer: NameReceived | None = None
        self._cookie: bytes | None = None
        self._our_challenge = 0
        self._their_challenge = 0

    @property
    def state(self) -> AState:
        return self._state

    def receive_data(self, data: bytes | memoryview = b"") -> list[object]:
        """Feed bytes; returns the events of every message the state allows now."""
        self._feed(data)
        events: list[object] = []
        try:
            while True:
                st = self._state
                if st not in (
                    AState.AWAIT_NAME, AState.AWAIT_ALIVE_REPLY,
                    AState.AWAIT_COMPLEMENT, AState.AWAIT_REPLY,
                ):
                    return events
                body = self._buf.next_frame()
                if body is None:
                    return events
                events.append(self._handle(st, body))
        except HandshakeError as e:
            raise self._fail(e) from None

    def _handle(self, st: AState, body: memoryview) -> object:
        if st is AState.AWAIT_NAME:
            msg = parse_name(body)
            try:  # the name first: the real node would make an atom of it
                name = parse_node_name(msg.name)
            except InvalidNodeName as e:
                raise HandshakeError("send_name", f"invalid node name: {e.reason}") from e
            self.peer = NameReceived(name, DFlag(msg.flags), msg.creation, msg.version)
            self._state = AState.NAME_RECEIVED
            return self.peer
        if st is AState.AWAIT_ALIVE_REPLY:
            text = parse_status(body, "alive reply")
            if text not in (STATUS_TRUE, STATUS_FALSE):
                raise HandshakeError("alive reply", f"expected strue/sfalse, got {text!r}")
            ok = text == STATUS_TRUE
            self._state = AState.STATUS_SENT if ok else AState.CLOSED
            return AliveReply(ok)
        if st is AState.AWAIT_COMPLEMENT:
            c = parse_complement(body)
            assert self.peer is not None
            flags = DFlag((int(self.peer.flags) & _LOW32) | (c.flags_high << 32))
            self._state = AState.AWAIT_REPLY
            return ComplementReceived(flags, c.creation)
        # AWAIT_REPLY
        r = parse_reply(body)
        assert self._cookie is not None and self.peer is not None
        if not secrets.compare_digest(r.digest, gen_digest(self._our_challenge, self._cookie)):
            raise WrongCookie("challenge_reply", f"wrong cookie from {self.peer.name}")
        self._their_challenge = r.challenge
        self._state = AState.REPLY_VERIFIED
        return ReplyVerified()

    def send_status(self, status: str) -> bytes:
        """Answer the name: ok / ok_simultaneous / nok / not_allowed / alive."""
        self._require(AState.NAME_RECEIVED, "send_status")
        if status not in KNOWN_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if status in CONTINUE_STATUSES:
            self._state = AState.STATUS_SENT
        elif status == STATUS_ALIVE:
            self._state = AState.AWAIT_ALIVE_REPLY
        else:
            self._state = AState.CLOSED
        return encode_frame(encode_status(status), HEADER_HANDSHAKE)

    def refuse(self, status: str = STATUS_NOT_ALLOWED) -> bytes:
        """Send a final refusal from any live state (e.g. bad flags after ``'c'``)."""
        if self._error is not None or self._state in self._TERMINAL:
            raise HandshakeError("refuse", f"not allowed in state {self._state.name}")
        self._state = AState.CLOSED
        return encode_frame(encode_status(status), HEADER_HANDSHAKE)

    def send_challenge(self, flags: int, creation: int, name: str, cookie: bytes) -> bytes:
        """Our ``'N'`` challenge, presenting ``name``; ``cookie`` is this leg's cookie."""
        self._require(AState.STATUS_SENT, "send_challenge")
        assert self.peer is not None
        self._cookie = cookie
        self._our_challenge = self._challenge_source() & _LOW32
        self._state = (
            AState.AWAIT_REPLY if self.peer.version == VERSION_6 else AState.AWAIT_COMPLEMENT
        )
        body = encode_challenge(flags, self._our_challenge, creation, name.encode("latin-1"))
        return encode_frame(body, HEADER_HANDSHAKE)

    def send_ack(self) -> bytes:
        """The final ``'a'``; after it the leg is in the data phase."""
        self._require(AState.REPLY_VERIFIED, "send_ack")
        assert self._cookie is not None
        self._state = AState.DONE
        return encode_frame(
            encode_ack(gen_digest(self._their_challenge, self._cookie)), HEADER_HANDSHAKE
        )


class InitiatorHandshake(_Leg):
    """The proxy dialling a real node (dist_util's ``handshake_we_started``). Never sends ``'n'``.

    Flow: ``send_name``; :class:`StatusReceived`; [``alive`` -> ``send_alive_reply``];
    :class:`ChallengeReceived` (name checked against ``expected_name``, mandatory flags
    checked); ``send_reply`` (with this leg's cookie); :class:`AckVerified` -> DONE.
    """

    _ERROR = IState.ERROR
    _DONE = IState.DONE
    _TERMINAL = frozenset({IState.DONE, IState.CLOSED, IState.ERROR})

    def __init__(
        self,
        expected_name: str,
        challenge_source: ChallengeSource = _random_challenge,
        mandatory: int = MANDATORY_25,
    ) -> None:
        super().__init__()
        self._state: IState = IState.START
        self.expected_name = expected_name
        self._challenge_source = challenge_source
        self._mandatory = mandatory
        self.peer: ChallengeReceived | None = None
        self._cookie: bytes | None = None
        self._our_challenge = 0

    @property
    def state(self) -> IState:
        return self._state

    def send_name(self, flags: int, creation: int, name: str) -> bytes:
        self._require(IState.START, "send_name")
        self._state = IState.AWAIT_STATUS
        return encode_frame(encode_name(flags, creation, name.encode("latin-1")), HEADER_HANDSHAKE)

    def receive_data(self, data: bytes | memoryview = b"") -> list[object]:
        self._feed(data)
        events: list[object] = []
        try:
            while True:
                st = self._state
                if st not in (IState.AWAIT_STATUS, IState.AWAIT_CHALLENGE, IState.AWAIT_ACK):
                    return events
                body = self._buf.next_frame()
                if body is None:
                    return events
                events.append(self._handle(st, body))
        except HandshakeError as e:
            raise self._fail(e) from None

    def _handle(self, st: IState, body: memoryview) -> object:
        if st is IState.AWAIT_STATUS:
            status = parse_status(body)
            if status.startswith(STATUS_NAMED_PREFIX):
                raise HandshakeError("status", "unexpected 'named:' (we never ask for a name)")
            if status not in KNOWN_STATUSES:
                raise HandshakeError("status", f"unknown status {status!r}")
            if status in CONTINUE_STATUSES:
                self._state = IState.AWAIT_CHALLENGE
            elif status == STATUS_ALIVE:
                self._state = IState.AWAIT_ALIVE_DECISION
            else:
                self._state = IState.CLOSED
            return StatusReceived(status)
        if st is IState.AWAIT_CHALLENGE:
            c = parse_challenge(body)
            try:
                name = parse_node_name(c.name)
            except InvalidNodeName as e:
                raise HandshakeError("challenge", f"invalid node name: {e.reason}") from e
            if name.full != self.expected_name:
                raise HandshakeError(
                    "challenge", f"node answered as {name.full}, expected {self.expected_name}"
                )
            missing = missing_mandatory(c.flags, self._mandatory)
            if missing:
                raise HandshakeError(
                    "challenge", f"{name} lacks mandatory flags {describe(missing)}"
                )
            self.peer = ChallengeReceived(DFlag(c.flags), c.challenge, c.creation, name)
            self._state = IState.CHALLENGE_RECEIVED
            return self.peer
        # AWAIT_ACK
        a = parse_ack(body)
        assert self._cookie is not None
        if not secrets.compare_digest(a.digest, gen_digest(self._our_challenge, self._cookie)):
            raise WrongCookie(
                "challenge_ack", f"bad challenge ack from {self.expected_name} (cookie mismatch)"
            )
        self._state = IState.DONE
        return AckVerified()

    def send_alive_reply(self, ok: bool) -> bytes:
        self._require(IState.AWAIT_ALIVE_DECISION, "send_alive_reply")
        self._state = IState.AWAIT_CHALLENGE if ok else IState.CLOSED
        return encode_frame(encode_status(STATUS_TRUE if ok else STATUS_FALSE), HEADER_HANDSHAKE)

    def send_reply(self, cookie: bytes) -> bytes:
        """``'r'``: our fresh challenge + md5(cookie, their challenge); ``cookie`` of this leg."""
        self._require(IState.CHALLENGE_RECEIVED, "send_reply")
        assert self.peer is not None
        self._cookie = cookie
        self._our_challenge = self._challenge_source() & _LOW32
        self._state = IState.AWAIT_ACK
        body = encode_reply(self._our_challenge, gen_digest(self.peer.challenge, cookie))
        return encode_frame(body, HEADER_HANDSHAKE)


# -- relay events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDownstream:
    data: bytes


@dataclass(frozen=True, slots=True)
class SendUpstream:
    data: bytes


@dataclass(frozen=True, slots=True)
class DialUpstream:
    """Connect to ``node_name`` now, then call ``upstream_connected`` (or ``upstream_failed``)."""

    node_name: str
    dialer_name: str


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """Both legs are in the data phase with the same ``negotiated_flags``.

    ``leftover_*`` are bytes that followed the last handshake message on that leg
    (already-sent data frames): feed them to the data-phase framer of that leg.
    """

    negotiated_flags: DFlag
    downstream_name: str
    upstream_name: str
    downstream_creation: int
    upstream_creation: int
    leftover_downstream: bytes
    leftover_upstream: bytes
    downstream_flags: DFlag
    upstream_flags: DFlag


Leg = Literal["downstream", "upstream"]


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """Close both legs (after writing any Send* emitted before this event)."""

    reason: str
    leg: Leg
    detail: str = ""


RelayEvent = Union[SendDownstream, SendUpstream, DialUpstream, HandshakeDone, HandshakeFailed]


class _R(Enum):
    """Relay phases; the value names the step for timeout messages."""

    AWAIT_NAME = "downstream send_name"
    DIALLING = "upstream connection"
    AWAIT_STATUS = "upstream status"
    AWAIT_ALIVE_REPLY = "downstream alive reply"
    AWAIT_CHALLENGE = "upstream challenge"
    AWAIT_FINISH = "downstream challenge reply / upstream challenge ack"
    DONE = "done"
    FAILED = "failed"


class HandshakeRelay:
    """The two-leg handshake (dist-protocol.md 9.2) with split cookies.

    Downstream = the real node that dialled this listener; upstream = the real node it
    wanted (``expected_upstream_name``). Sequence: downstream ``'N'`` -> name syntax
    (bad: close silently, as OTP does), unknown name / NAME_ME / missing mandatory flags
    (after digest expansion and masking) -> ``snot_allowed``; else :class:`DialUpstream`.
    Upstream gets ``'N'`` with ``downstream_flags & mask`` and the dialler's real name
    and creation; upstream statuses are relayed verbatim (``strue``/``sfalse`` back);
    on the upstream challenge we reply upstream with the upstream cookie and send the
    dialler our own challenge with ``upstream_flags & mask`` and the upstream's real
    name and creation. The downstream ``'a'`` is sent only once both the downstream
    ``'r'`` and the upstream ``'a'`` verified; then :class:`HandshakeDone`.

    ``flag_mask`` may be a callable ``(downstream_name) -> mask``, resolved once the
    dialler's name has been validated and found in ``downstream_cookie_for``.
    ``mandatory`` is the set the trusted node requires (MANDATORY_26 for OTP 26+).

    Old ``'n'`` diallers (OTP 23/24 without epmd info): their creation and high flag
    bits arrive in ``'c'`` only after our challenge, i.e. after upstream was dialled.
    We dial upstream with the low flags plus ``old_name_high_flags`` (default: what
    OTP 24 offers) and a proxy-chosen non-zero creation (OTP 25 does not bind delivery
    to the handshake creation, see 2.7). When ``'c'`` arrives we check that the real
    flags give the *same* negotiated set on both legs and that the mandatory set is
    present; otherwise the dialler gets ``snot_allowed`` (as 25.3+ does after ``'c'``)
    and the handshake fails with a reason saying which bits differ.
    """

    def __init__(
        self,
        expected_upstream_name: str,
        downstream_cookie_for: Callable[[str], bytes | None],
        upstream_cookie: bytes,
        now: float,
        flag_mask: int | Callable[[str], int] = PROXY_MASK,
        deadline: float = DEFAULT_DEADLINE,
        mandatory: int = MANDATORY_25,
        old_name_high_flags: int = OLD_NAME_ASSUMED_HIGH_FLAGS,
        challenge_source: ChallengeSource = _random_challenge,
    ) -> None:
        self.expected_upstream_name = expected_upstream_name
        self._cookie_for = downstream_cookie_for
        self._upstream_cookie = upstream_cookie
        # A callable mask is resolved once the dialler's name is known (e.g. a hidden
        # leg for some peers on a shared front listener).
        self._mask_for = flag_mask if callable(flag_mask) else None
        self.flag_mask = DFlag(PROXY_MASK if callable(flag_mask) else flag_mask)
        self.deadline = deadline
        self.mandatory = DFlag(mandatory)
        self._old_high = int(old_name_high_flags) & ~_LOW32
        self._challenge_source = challenge_source
        self.down = AcceptorHandshake(challenge_source)
        self.up = InitiatorHandshake(expected_upstream_name, challenge_source, mandatory)
        self._phase = _R.AWAIT_NAME
        self._step_start = now
        self._name: NameReceived | None = None
        self._cookie: bytes | None = None
        self._down_flags = DFlag(0)  # dialler's full flags (known after 'c' for v5)
        self._down_creation = 0
        self._offered_up = DFlag(0)  # what upstream was told the dialler supports
        self._up_flags = DFlag(0)
        self._down_ok = False  # downstream 'r' verified (and 'c' checked)
        self._up_ok = False  # upstream 'a' verified
        self._up_connected = False
        self.result: HandshakeDone | HandshakeFailed | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def step(self) -> str:
        """What the relay is waiting for (for logs and timeout reasons)."""
        if self._phase is _R.AWAIT_FINISH:
            if self._down_ok and not self._up_ok:
                return "upstream challenge ack"
            if self._up_ok and not self._down_ok:
                return "downstream challenge reply"
        return self._phase.value

    @property
    def upstream_done(self) -> bool:
        """Upstream is in the data phase; pause reading it until HandshakeDone."""
        return self.up.state is IState.DONE

    def _waiting_leg(self) -> Leg:
        if self._phase in (_R.DIALLING, _R.AWAIT_STATUS, _R.AWAIT_CHALLENGE):
            return "upstream"
        if self._phase is _R.AWAIT_FINISH and self._down_ok:
            return "upstream"
        return "downstream"

    @property
    def finished(self) -> bool:
        return self._phase in (_R.DONE, _R.FAILED)

    def receive_downstream(self, data: bytes | memoryview, now: float) -> list[RelayEvent]:
        return self._run("downstream", lambda: self._on_down(self.down.receive_data(data)), now)

    def receive_upstream(self, data: bytes | memoryview, now: float) -> list[RelayEvent]:
        return self._run("upstream", lambda: self._on_up(self.up.receive_data(data)), now)

    def upstream_connected(self, now: float) -> list[RelayEvent]:
        return self._run("upstream", self._connected, now)

    def upstream_failed(self, reason: str, now: float | None = None) -> list[RelayEvent]:
        """The dial failed, or the upstream connection closed during the handshake."""
        if self.finished:
            return []
        hint = " (wrong upstream cookie?)" if self._phase is _R.AWAIT_FINISH else ""
        return self._failed(
            f"upstream {self.expected_upstream_name} lost while waiting for {self.step}{hint}",
            "upstream",
            reason,
        )

    def downstream_closed(self, reason: str = "connection closed") -> list[RelayEvent]:
        if self.finished:
            return []
        return self._failed(f"downstream closed while waiting for {self.step}", "downstream", reason)

    def tick(self, now: float) -> list[RelayEvent]:
        """Deadline check: each step must finish within ``deadline`` of the previous one."""
        if self.finished or now - self._step_start <= self.deadline:
            return []
        return self._failed(
            f"timeout waiting for {self.step}",
            self._waiting_leg(),
            f"{now - self._step_start:.3f}s > {self.deadline}s",
        )

    def next_deadline(self) -> float | None:
        """When ``tick`` should next be called (None when finished)."""
        return None if self.finished else self._step_start + self.deadline

    # -- plumbing -------------------------------------------------------------------------

    def _run(self, leg: Leg, fn: Callable[[], list[RelayEvent]], now: float) -> list[RelayEvent]:
        if self._phase is _R.DONE:
            raise RuntimeError("handshake finished: feed further bytes to the data phase")
        if self.finished:
            return []
        timed_out = self.tick(now)
        if timed_out:
            return timed_out
        before = self._progress_marker()
        try:
            out = fn()
        except WrongCookie as e:
            out = self._failed(e.reason.split(": ", 1)[-1], leg, e.step)
        except HandshakeError as e:
            out = self._failed(f"bad {leg} handshake at {e.reason}", leg, e.step)
        except ProtocolError as e:  # defensive: keep errors typed
            out = self._failed(f"bad {leg} handshake: {e.reason}", leg)
        if self._progress_marker() != before:
            self._step_start = now
        return out

    def _progress_marker(self) -> tuple[object, ...]:
        return (self._phase, self._down_ok, self._up_ok, self.down.state, self.up.state)

    def _failed(self, reason: str, leg: Leg, detail: str = "") -> list[RelayEvent]:
        self._phase = _R.FAILED
        ev = HandshakeFailed(reason, leg, detail)
        self.result = ev
        return [ev]

    def _refuse(self, reason: str, detail: str = "") -> list[RelayEvent]:
        data = self.down.refuse(STATUS_NOT_ALLOWED)
        return [SendDownstream(data), *self._failed(reason, "downstream", detail)]

    # -- downstream -----------------------------------------------------------------------

    def _on_down(self, events: list[object]) -> list[RelayEvent]:
        out: list[RelayEvent] = []
        for ev in events:
            if self.finished:
                break
            if isinstance(ev, NameReceived):
                out += self._on_name(ev)
            elif isinstance(ev, AliveReply):
                out.append(SendUpstream(self.up.send_alive_reply(ev.ok)))
                if ev.ok:
                    self._phase = _R.AWAIT_CHALLENGE
                    out += self._on_up(self.up.receive_data())
                else:
                    out += self._failed(
                        f"{self._name_str()} answered sfalse to alive", "downstream"
                    )
            elif isinstance(ev, ComplementReceived):
                out += self._on_complement(ev)
            elif isinstance(ev, ReplyVerified):
                self._down_ok = True
                out += self._maybe_finish()
        return out

    def _name_str(self) -> str:
        return self._name.name.full if self._name else "?"

    def _on_name(self, ev: NameReceived) -> list[RelayEvent]:
        self._name = ev
        name = ev.name.full
        if ev.flags & DFlag.NAME_ME:
            return self._refuse(f"{name} asked for a dynamic name (NAME_ME)", describe(ev.flags))
        cookie = self._cookie_for(name)
        if cookie is None:
            return self._refuse(f"unknown node {name}")
        self._cookie = cookie
        if self._mask_for is not None:
            self.flag_mask = DFlag(self._mask_for(name))
        flags = ev.flags
        if ev.version != VERSION_6:
            flags = DFlag((int(flags) & _LOW32) | self._old_high)
        masked = DFlag(expand_digest(flags) & self.flag_mask)
        missing = missing_mandatory(masked, self.mandatory)
        if ev.version != VERSION_6:
            missing &= _LOW32  # the high bits are only known after 'c'
        if missing:
            return self._refuse(
                f"{name} lacks mandatory flags {describe(missing)}", describe(ev.flags)
            )
        self._down_flags = flags
        self._down_creation = ev.creation if ev.creation is not None else self._fake_creation()
        self._offered_up = masked
        self._phase = _R.DIALLING
        return [DialUpstream(self.expected_upstream_name, name)]

    def _fake_creation(self) -> int:
        c = self._challenge_source() & _LOW32
        return c or 1

    def _on_complement(self, ev: ComplementReceived) -> list[RelayEvent]:
        name = self._name_str()
        real = DFlag(expand_digest(ev.flags) & self.flag_mask)
        missing = missing_mandatory(real, self.mandatory)
        if missing:
            return self._refuse(f"{name} lacks mandatory flags {describe(missing)} (after 'c')")
        # What each real node will use: upstream saw our assumed flags, the dialler
        # will combine its real flags with the upstream flags we offered it.
        up_side = self._up_flags & self._offered_up & self.flag_mask
        down_side = self._up_flags & real & self.flag_mask
        if up_side != down_side:
            return self._refuse(
                f"old 'n' handshake from {name}: real flags differ from those assumed "
                f"when dialling upstream",
                f"differing bits {describe(up_side ^ down_side)}",
            )
        self._down_flags = ev.flags
        self._down_creation = ev.creation
        return []

    # -- upstream -------------------------------------------------------------------------

    def _connected(self) -> list[RelayEvent]:
        if self._phase is not _R.DIALLING:
            raise HandshakeError("upstream_connected", f"unexpected in step {self.step}")
        self._up_connected = True
        self._phase = _R.AWAIT_STATUS
        assert self._name is not None
        data = self.up.send_name(self._offered_up, self._down_creation, self._name.name.full)
        return [SendUpstream(data)] + self._on_up(self.up.receive_data())

    def _on_up(self, events: list[object]) -> list[RelayEvent]:
        out: list[RelayEvent] = []
        for ev in events:
            if self.finished:
                break
            if isinstance(ev, StatusReceived):
                out += self._on_status(ev.status)
            elif isinstance(ev, ChallengeReceived):
                out += self._on_challenge(ev)
            elif isinstance(ev, AckVerified):
                self._up_ok = True
                out += self._maybe_finish()
        return out

    def _on_status(self, status: str) -> list[RelayEvent]:
        out: list[RelayEvent] = [SendDownstream(self.down.send_status(status))]
        if status in CONTINUE_STATUSES:
            self._phase = _R.AWAIT_CHALLENGE
        elif status == STATUS_ALIVE:
            self._phase = _R.AWAIT_ALIVE_REPLY
            out += self._on_down(self.down.receive_data())
        else:
            out += self._failed(
                f"upstream {self.expected_upstream_name} refused {self._name_str()}: {status}",
                "upstream",
            )
        return out

    def _on_challenge(self, ev: ChallengeReceived) -> list[RelayEvent]:
        self._up_flags = ev.flags
        self._phase = _R.AWAIT_FINISH
        out: list[RelayEvent] = [SendUpstream(self.up.send_reply(self._upstream_cookie))]
        assert self._cookie is not None
        offer = DFlag(ev.flags & self.flag_mask)
        out.append(
            SendDownstream(self.down.send_challenge(offer, ev.creation, ev.name.full, self._cookie))
        )
        out += self._on_down(self.down.receive_data())
        if not self.finished:
            out += self._on_up(self.up.receive_data())
        return out

    def _maybe_finish(self) -> list[RelayEvent]:
        if not (self._down_ok and self._up_ok) or self.finished:
            return []
        assert self._name is not None and self.up.peer is not None
        ack = self.down.send_ack()
        negotiated = DFlag(
            expand_digest(self._up_flags) & expand_digest(self._down_flags) & self.flag_mask
        )
        self._phase = _R.DONE
        done = HandshakeDone(
            negotiated_flags=negotiated,
            downstream_name=self._name.name.full,
            upstream_name=self.up.peer.name.full,
            downstream_creation=self._down_creation,
            upstream_creation=self.up.peer.creation,
            leftover_downstream=self.down.leftover(),
            leftover_upstream=self.up.leftover(),
            downstream_flags=self._down_flags,
            upstream_flags=self._up_flags,
        )
        self.result = done
        return [SendDownstream(ack), done]
