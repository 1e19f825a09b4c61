"""Distribution control messages (dist-protocol.md section 5).

distproxy strips DIST_HDR_ATOM_CACHE and FRAGMENTS from both legs, so every data-phase
frame is ``'p'`` + a 131-prefixed control tuple + an optional 131-prefixed payload.
:func:`parse_frame` decodes the control tuple (bounded by ``Limits``), checks it against
the one table :data:`OPS`, and records only the offset of the payload: the proxy
forwards ``frame`` unchanged and most policies never need the message body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from distproxy.term import (
    DEFAULT_LIMITS,
    Atom,
    DecodeError,
    Limits,
    Pid,
    Reference,
    decode_at,
    encode,
    skip_at,
)

from .errors import FrameError

__all__ = [
    "PASS_THROUGH",
    "VERSION_MAGIC",
    "Op",
    "Kind",
    "OpSpec",
    "OPS",
    "ControlMessage",
    "parse_frame",
    "make_control",
    "frame_body",
    "with_length",
    "build_frame",
    "FrameError",
]

#: First byte of a pass-through frame (no dist header).
PASS_THROUGH = 112  # 'p'
#: External term format version byte in front of each term.
VERSION_MAGIC = 131
_LEN4 = struct.Struct(">I")


class Op(IntEnum):
    """Control message tags (dist.h ``enum dop``); 9-11, 14, 15, 17, 37+ are unassigned."""

    LINK = 1
    SEND = 2
    EXIT = 3
    UNLINK = 4
    NODE_LINK = 5
    REG_SEND = 6
    GROUP_LEADER = 7
    EXIT2 = 8
    SEND_TT = 12
    EXIT_TT = 13
    REG_SEND_TT = 16
    EXIT2_TT = 18
    MONITOR_P = 19
    DEMONITOR_P = 20
    MONITOR_P_EXIT = 21
    SEND_SENDER = 22
    SEND_SENDER_TT = 23
    PAYLOAD_EXIT = 24
    PAYLOAD_EXIT_TT = 25
    PAYLOAD_EXIT2 = 26
    PAYLOAD_EXIT2_TT = 27
    PAYLOAD_MONITOR_P_EXIT = 28
    SPAWN_REQUEST = 29
    SPAWN_REQUEST_TT = 30
    SPAWN_REPLY = 31
    SPAWN_REPLY_TT = 32
    ALIAS_SEND = 33
    ALIAS_SEND_TT = 34
    UNLINK_ID = 35
    UNLINK_ID_ACK = 36


class Kind(StrEnum):
    """Protocol meaning with the seq-trace and payload variants folded together.

    A policy must treat e.g. SEND (2) and SEND_SENDER (22) alike: which one a node uses
    depends on negotiated flags and on whether the message was encoded before connect.
    """

    SEND = "send"
    REG_SEND = "reg_send"
    EXIT = "exit"
    EXIT2 = "exit2"
    MONITOR = "monitor"
    DEMONITOR = "demonitor"
    MONITOR_EXIT = "monitor_exit"
    SPAWN_REQUEST = "spawn_request"
    SPAWN_REPLY = "spawn_reply"
    ALIAS_SEND = "alias_send"
    LINK = "link"
    UNLINK = "unlink"
    UNLINK_ID = "unlink_id"
    UNLINK_ID_ACK = "unlink_id_ack"
    GROUP_LEADER = "group_leader"
    NODE_LINK = "node_link"


# Field type classes (checked by parse_frame so policies can rely on them).
_ANY = "any"
_PID = "pid"
_ATOM = "atom"
_PROC = "pid|atom"  # a process given by pid or registered name
_REF = "ref"
_INT = "int"
_MFA = "mfa"
_LIST = "list"


@dataclass(frozen=True, slots=True)
class OpSpec:
    """Shape of one control message.

    ``fields`` are the tuple elements after the tag, in wire order. ``sender``,
    ``target``, ``token`` and ``ref`` name the field playing that role (or None).
    ``payload`` names the term that follows the control tuple (``message``, ``reason``,
    ``args``) or is None when the op has no payload.
    """

    op: Op
    kind: Kind
    fields: tuple[str, ...]
    types: tuple[str, ...]
    payload: str | None = None
    sender: str | None = "from"
    target: str | None = "to"
    ref: str | None = None
    arity: int = field(init=False)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        assert len(self.fields) == len(self.types), self.op
        object.__setattr__(self, "arity", len(self.fields) + 1)
        object.__setattr__(self, "index", {n: i + 1 for i, n in enumerate(self.fields)})
        for role in (self.sender, self.target, self.ref):
            assert role is None or role in self.index, (self.op, role)

    @property
    def token(self) -> str | None:
        return "token" if "token" in self.index else None

    @property
    def has_payload(self) -> bool:
        return self.payload is not None


def _spec(op: Op, kind: Kind, fields: str, types: str, **kw: Any) -> OpSpec:
    names = tuple(fields.split())
    return OpSpec(op, kind, names, tuple(types.split()), **kw)


_K = Kind
_MSG = {"payload": "message"}
_RSN = {"payload": "reason"}

#: The one table: every op, its tuple layout, payload and roles.
OPS: dict[int, OpSpec] = {
    s.op: s
    for s in (
        _spec(Op.LINK, _K.LINK, "from to", "pid pid"),
        _spec(Op.SEND, _K.SEND, "unused to", "any pid", sender=None, **_MSG),
        _spec(Op.EXIT, _K.EXIT, "from to reason", "pid pid any"),
        _spec(Op.UNLINK, _K.UNLINK, "from to", "pid pid"),
        _spec(Op.NODE_LINK, _K.NODE_LINK, "", "", sender=None, target=None),
        _spec(Op.REG_SEND, _K.REG_SEND, "from unused to_name", "pid any atom",
              target="to_name", **_MSG),
        _spec(Op.GROUP_LEADER, _K.GROUP_LEADER, "from to", "pid pid"),
        _spec(Op.EXIT2, _K.EXIT2, "from to reason", "pid pid any"),
        _spec(Op.SEND_TT, _K.SEND, "unused to token", "any pid any", sender=None, **_MSG),
        _spec(Op.EXIT_TT, _K.EXIT, "from to token reason", "pid pid any any"),
        _spec(Op.REG_SEND_TT, _K.REG_SEND, "from unused to_name token", "pid any atom any",
              target="to_name", **_MSG),
        _spec(Op.EXIT2_TT, _K.EXIT2, "from to token reason", "pid pid any any"),
        _spec(Op.MONITOR_P, _K.MONITOR, "from to ref", "pid pid|atom ref", ref="ref"),
        _spec(Op.DEMONITOR_P, _K.DEMONITOR, "from to ref", "pid pid|atom ref", ref="ref"),
        _spec(Op.MONITOR_P_EXIT, _K.MONITOR_EXIT, "from to ref reason",
              "pid|atom pid ref any", ref="ref"),
        _spec(Op.SEND_SENDER, _K.SEND, "from to", "pid pid", **_MSG),
        _spec(Op.SEND_SENDER_TT, _K.SEND, "from to token", "pid pid any", **_MSG),
        _spec(Op.PAYLOAD_EXIT, _K.EXIT, "from to", "pid pid", **_RSN),
        _spec(Op.PAYLOAD_EXIT_TT, _K.EXIT, "from to token", "pid pid any", **_RSN),
        _spec(Op.PAYLOAD_EXIT2, _K.EXIT2, "from to", "pid pid", **_RSN),
        _spec(Op.PAYLOAD_EXIT2_TT, _K.EXIT2, "from to token", "pid pid any", **_RSN),
        _spec(Op.PAYLOAD_MONITOR_P_EXIT, _K.MONITOR_EXIT, "from to ref",
              "pid|atom pid ref", ref="ref", **_RSN),
        _spec(Op.SPAWN_REQUEST, _K.SPAWN_REQUEST, "req_id from group_leader mfa opts",
              "ref pid pid mfa list", target=None, ref="req_id", payload="args"),
        _spec(Op.SPAWN_REQUEST_TT, _K.SPAWN_REQUEST,
              "req_id from group_leader mfa opts token", "ref pid pid mfa list any",
              target=None, ref="req_id", payload="args"),
        _spec(Op.SPAWN_REPLY, _K.SPAWN_REPLY, "req_id to flags result", "ref pid int any",
              sender=None, ref="req_id"),
        _spec(Op.SPAWN_REPLY_TT, _K.SPAWN_REPLY, "req_id to flags result token",
              "ref pid int any any", sender=None, ref="req_id"),
        _spec(Op.ALIAS_SEND, _K.ALIAS_SEND, "from alias", "pid ref", target="alias", **_MSG),
        _spec(Op.ALIAS_SEND_TT, _K.ALIAS_SEND, "from alias token", "pid ref any",
              target="alias", **_MSG),
        _spec(Op.UNLINK_ID, _K.UNLINK_ID, "id from to", "int pid pid"),
        _spec(Op.UNLINK_ID_ACK, _K.UNLINK_ID_ACK, "id from to", "int pid pid"),
    )
}
assert set(OPS) == set(Op), "OPS must cover every Op"


def _is_mfa(v: object) -> bool:
    return (
        type(v) is tuple
        and len(v) == 3
        and isinstance(v[0], Atom)
        and isinstance(v[1], Atom)
        and type(v[2]) is int
    )


_CHECKS: dict[str, Any] = {
    _ANY: None,
    _PID: lambda v: isinstance(v, Pid),
    _ATOM: lambda v: isinstance(v, Atom),
    _PROC: lambda v: isinstance(v, (Pid, Atom)),
    _REF: lambda v: isinstance(v, Reference),
    _INT: lambda v: type(v) is int,
    _MFA: _is_mfa,
    _LIST: lambda v: type(v) is list,
}
# Per op: ((tuple index, field name, predicate), ...) for the fields with a type rule.
_TYPE_RULES: dict[int, tuple[tuple[int, str, Any], ...]] = {
    op: tuple(
        (i + 1, name, _CHECKS[t])
        for i, (name, t) in enumerate(zip(s.fields, s.types))
        if _CHECKS[t] is not None
    )
    for op, s in OPS.items()
}

_MISSING = object()


class ControlMessage:
    """One parsed data-phase frame. Immutable; the payload is decoded on demand.

    ``frame`` is the frame body exactly as received (without the u32 length); the proxy
    forwards it unchanged when the policy allows it.
    """

    __slots__ = ("spec", "control", "frame", "payload_offset", "_limits", "_payload")

    spec: OpSpec
    control: tuple[Any, ...]
    frame: bytes | memoryview
    payload_offset: int | None

    def __init__(
        self,
        spec: OpSpec,
        control: tuple[Any, ...],
        frame: bytes | memoryview,
        payload_offset: int | None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        _set = object.__setattr__
        _set(self, "spec", spec)
        _set(self, "control", control)
        _set(self, "frame", frame)
        _set(self, "payload_offset", payload_offset)
        _set(self, "_limits", limits)
        _set(self, "_payload", _MISSING)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ControlMessage is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ControlMessage is immutable")

    @property
    def op(self) -> Op:
        return self.spec.op

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def has_payload(self) -> bool:
        return self.payload_offset is not None

    def field(self, name: str, default: Any = _MISSING) -> Any:
        """The control-tuple element called ``name`` (see :data:`OPS`)."""
        i = self.spec.index.get(name)
        if i is None:
            if default is _MISSING:
                raise KeyError(f"{self.spec.op.name} has no field {name!r}")
            return default
        return self.control[i]

    def fields(self) -> dict[str, Any]:
        """All named fields (for logs and `explain`)."""
        return {n: self.control[i] for n, i in self.spec.index.items()}

    def _role(self, name: str | None) -> Any:
        return None if name is None else self.control[self.spec.index[name]]

    @property
    def sender(self) -> Any:
        """The sending process (Pid; for monitor exits also a name Atom), or None."""
        return self._role(self.spec.sender)

    @property
    def target(self) -> Any:
        """The addressee: Pid, registered-name Atom (REG_SEND, monitors) or alias Reference."""
        return self._role(self.spec.target)

    @property
    def token(self) -> Any:
        """The seq-trace token of a _TT op, else None."""
        return self._role(self.spec.token)

    @property
    def ref(self) -> Any:
        """The monitor reference or spawn request id, else None."""
        return self._role(self.spec.ref)

    def payload_bytes(self) -> memoryview | None:
        """The raw payload (131-prefixed), without decoding it."""
        if self.payload_offset is None:
            return None
        return memoryview(self.frame)[self.payload_offset :]

    def payload(self, limits: Limits | None = None) -> Any:
        """Decode the payload term (cached). Raises FrameError; None if the op has none.

        The payload must be exactly one complete term filling the rest of the frame.
        """
        cached = self._payload
        if cached is not _MISSING:
            return cached
        if self.payload_offset is None:
            return None
        term = _decode_term(
            self.frame, self.payload_offset, limits or self._limits, "payload"
        )
        _set_payload(self, term)
        return term

    def check_payload(self, limits: Limits | None = None) -> None:
        """Verify the payload is one complete, bounded term filling the frame.

        Cheaper than :meth:`payload` (validates without building Python objects).
        """
        if self.payload_offset is None or self._payload is not _MISSING:
            return
        frame = self.frame
        try:
            end = skip_at(frame, self.payload_offset, limits or self._limits)
        except DecodeError as e:
            raise FrameError(f"bad payload term: {e.reason}", e.offset) from e
        except Exception as e:  # a codec bug must not take the proxy down
            raise FrameError(f"bad payload term: {type(e).__name__}: {e}", self.payload_offset) from e
        if end != len(frame):
            raise FrameError(f"{len(frame) - end} trailing bytes after the payload", end)

    def __repr__(self) -> str:
        extra = "" if self.payload_offset is None else f" +{self.spec.payload}"
        return f"<ControlMessage {self.spec.op.name} {self.control!r}{extra}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ControlMessage):
            return NotImplemented
        return bytes(self.frame) == bytes(other.frame)

    def __hash__(self) -> int:
        return hash(bytes(self.frame))


# Fast construction for parse_frame: slot descriptors beat object.__setattr__ by ~2x.
_new_message = object.__new__
_set_spec = ControlMessage.__dict__["spec"].__set__
_set_control = ControlMessage.__dict__["control"].__set__
_set_frame = ControlMessage.__dict__["frame"].__set__
_set_offset = ControlMessage.__dict__["payload_offset"].__set__
_set_limits = ControlMessage.__dict__["_limits"].__set__
_set_payload = ControlMessage.__dict__["_payload"].__set__


def _message(
    spec: OpSpec, control: tuple[Any, ...], frame: bytes | memoryview,
    offset: int | None, limits: Limits,
) -> ControlMessage:
    m = _new_message(ControlMessage)
    _set_spec(m, spec)
    _set_control(m, control)
    _set_frame(m, frame)
    _set_offset(m, offset)
    _set_limits(m, limits)
    _set_payload(m, _MISSING)
    return m


def _decode_term(data: bytes | memoryview, offset: int, limits: Limits, what: str) -> Any:
    """Decode the one term that must fill data[offset:]."""
    try:
        term, end = decode_at(data, offset, limits)
    except DecodeError as e:
        raise FrameError(f"bad {what} term: {e.reason}", e.offset) from e
    except Exception as e:  # a codec bug must not take the proxy down
        raise FrameError(f"bad {what} term: {type(e).__name__}: {e}", offset) from e
    if end != len(data):
        raise FrameError(f"{len(data) - end} trailing bytes after the {what}", end)
    return term


def parse_frame(
    frame: bytes | memoryview, limits: Limits = DEFAULT_LIMITS
) -> ControlMessage:
    """Parse a pass-through data frame body (after the u32 length; not a tick).

    Checks: ``'p'`` first, a control tuple with a known tag, the arity of that tag,
    field types, and that a payload follows exactly when the op has one. The payload
    is not decoded here (see :meth:`ControlMessage.payload`).
    """
    n = len(frame)
    if n == 0:
        raise FrameError("empty frame (ticks are not control messages)", 0)
    if frame[0] != PASS_THROUGH:
        raise FrameError(f"frame starts with {frame[0]}, expected 'p' ({PASS_THROUGH})", 0)
    try:
        control, end = decode_at(frame, 1, limits)
    except DecodeError as e:
        raise FrameError(f"bad control term: {e.reason}", e.offset) from e
    except Exception as e:  # a codec bug must not take the proxy down
        raise FrameError(f"bad control term: {type(e).__name__}: {e}", 1) from e
    if type(control) is not tuple or not control:
        raise FrameError("control message is not a non-empty tuple", 1)
    tag = control[0]
    spec = OPS.get(tag) if type(tag) is int else None
    if spec is None:
        raise FrameError(f"unknown control tag {tag!r}", 1)
    if len(control) != spec.arity:
        raise FrameError(
            f"{spec.op.name} needs a {spec.arity}-tuple, got {len(control)}", 1
        )
    for i, name, ok in _TYPE_RULES[tag]:
        if not ok(control[i]):
            raise FrameError(f"{spec.op.name} field {name} has a bad type: {control[i]!r}", 1)
    if end == n:
        if spec.payload is not None:
            raise FrameError(f"{spec.op.name} must be followed by a {spec.payload}", end)
        return _message(spec, control, frame, None, limits)
    if spec.payload is None:
        raise FrameError(f"{n - end} trailing bytes after {spec.op.name}", end)
    if frame[end] != VERSION_MAGIC:
        raise FrameError(f"payload starts with {frame[end]}, expected {VERSION_MAGIC}", end)
    return _message(spec, control, frame, end, limits)


# -- builders for synthesised frames ----------------------------------------------------


def make_control(op: Op | int, **fields: Any) -> tuple[Any, ...]:
    """Build a control tuple by field name, e.g.
    ``make_control(Op.SPAWN_REPLY, req_id=r, to=p, flags=0, result=Atom("notsup"))``.
    """
    spec = OPS[Op(op)]
    missing = [f for f in spec.fields if f not in fields]
    extra = [f for f in fields if f not in spec.index]
    if missing or extra:
        raise ValueError(f"{spec.op.name}: missing fields {missing}, unknown fields {extra}")
    return (int(spec.op),) + tuple(fields[f] for f in spec.fields)


def frame_body(control: tuple[Any, ...], payload: Any = None) -> bytes:
    """``'p'`` + encode(control) [+ encode(payload)]: a frame body without the length.

    ``payload=None`` means no payload (None is not an Erlang term). The tuple is checked
    against :data:`OPS` so the proxy never synthesises a frame a node would reject.
    """
    if type(control) is not tuple or not control or type(control[0]) is not int:
        raise ValueError("control must be a tuple starting with an op integer")
    spec = OPS.get(control[0])
    if spec is None:
        raise ValueError(f"unknown control tag {control[0]!r}")
    if len(control) != spec.arity:
        raise ValueError(f"{spec.op.name} needs a {spec.arity}-tuple, got {len(control)}")
    if (payload is None) != (spec.payload is None):
        raise ValueError(
            f"{spec.op.name} " + ("needs a payload" if spec.payload else "takes no payload")
        )
    body = bytes((PASS_THROUGH,)) + encode(control)
    if payload is not None:
        body += encode(payload)
    return body


def with_length(body: bytes | memoryview) -> bytes:
    """Prefix a frame body with its u32 length (``{packet,4}``)."""
    return _LEN4.pack(len(body)) + bytes(body)


def build_frame(control: tuple[Any, ...], payload: Any = None) -> bytes:
    """A wire-ready data frame: u32 length + :func:`frame_body`."""
    return with_length(frame_body(control, payload))
