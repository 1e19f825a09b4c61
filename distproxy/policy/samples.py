"""Build a real ControlMessage from an operator's description (``explain`` and ``test``).

The message is built exactly as a node would put it on the wire (control.py's
``frame_body``, then ``parse_frame``), so ``explain`` runs the same code path as the
proxy. Terms are written in Erlang syntax (syntax.py); ``self()`` is the sending
process, ``make_ref()`` a fresh reference, ``node()`` the sending node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distproxy.dist.control import OPS, Op, frame_body, parse_frame
from distproxy.term import Atom, ImproperList

from .mfa import MfaError, parse_mfa
from .model import KIND_NAMES, Context, Direction
from .syntax import SyntaxErrorAt, TermEnv, parse_term

__all__ = ["Sample", "SampleError", "build_message", "DEFAULT_PEER", "DEFAULT_TRUSTED",
           "DEFAULT_FLAGS", "KIND_OPS"]

DEFAULT_PEER = "ec2_node@127.0.0.1"
DEFAULT_TRUSTED = "my_desktop@127.0.0.1"
#: Flags both legs agreed in the OTP 25 probe (dist-protocol.md 3.2).
DEFAULT_FLAGS = 0xD075F5FBD

#: The op a modern (OTP 25+) node uses for each kind.
KIND_OPS: dict[str, Op] = {
    "send": Op.SEND_SENDER,
    "reg_send": Op.REG_SEND,
    "exit": Op.PAYLOAD_EXIT,
    "exit2": Op.PAYLOAD_EXIT2,
    "monitor": Op.MONITOR_P,
    "demonitor": Op.DEMONITOR_P,
    "monitor_exit": Op.PAYLOAD_MONITOR_P_EXIT,
    "spawn_request": Op.SPAWN_REQUEST,
    "spawn_reply": Op.SPAWN_REPLY,
    "alias_send": Op.ALIAS_SEND,
    "link": Op.LINK,
    "unlink": Op.UNLINK,
    "unlink_id": Op.UNLINK_ID,
    "unlink_id_ack": Op.UNLINK_ID_ACK,
    "group_leader": Op.GROUP_LEADER,
    "node_link": Op.NODE_LINK,
}
_DEFAULT_PAYLOAD = {"exit": "normal", "exit2": "kill", "monitor_exit": "normal"}


class SampleError(ValueError):
    """The description cannot be turned into a message (names the bad field)."""


@dataclass(frozen=True)
class Sample:
    """An operation as operators write it in explain flags or test cases."""

    direction: str = "from_peer"
    op: str = "send"  # a kind name (send, reg_send, ...) or an op name (SEND, PAYLOAD_EXIT)
    to: str | None = None
    payload: str | None = None
    mfa: str | None = None
    call: str | None = None
    from_node: str | None = None  # the sender pid's node (default: the sending node)
    peer: str = DEFAULT_PEER
    trusted: str = DEFAULT_TRUSTED
    flags: int = DEFAULT_FLAGS

    def context(self) -> Context:
        return Context(self.peer, self.trusted, self.flags)


def _op_for(op: str) -> Op:
    if op in KIND_OPS:
        return KIND_OPS[op]
    try:
        return Op[op.upper()]
    except KeyError:
        pass
    if op.isdigit() and int(op) in Op._value2member_map_:
        return Op(int(op))
    raise SampleError(f"unknown op {op!r} (kinds: {', '.join(KIND_NAMES)}; or an op name "
                      "such as SEND, PAYLOAD_EXIT, REG_SEND_TT)")


def _term(text: str, env: TermEnv, what: str) -> Any:
    try:
        return parse_term(text, env)
    except SyntaxErrorAt as e:
        raise SampleError(f"{what}: {e}") from None


def build_message(s: Sample) -> Any:
    """The ControlMessage a node would send for ``s`` (parsed back from its bytes)."""
    try:
        direction = Direction(s.direction)
    except ValueError:
        raise SampleError(f"unknown direction {s.direction!r} (to_peer or from_peer)") \
            from None
    op = _op_for(s.op)
    ctx = s.context()
    sending = ctx.sender_node(direction)
    receiving = ctx.receiver_node(direction)
    env = TermEnv(sender_node=s.from_node or sending, peer_node=s.peer,
                  trusted_node=s.trusted)
    me = env.call("self")
    other = env.pid(receiving)
    token = Atom("undefined_token")  # any term: seq_trace tokens are opaque to policies
    name = Atom(s.to) if s.to else None
    kind = OPS[op].kind.value
    payload_text = s.payload if s.payload is not None else _DEFAULT_PAYLOAD.get(kind, "ok")
    payload: Any = None
    name_ops = (Op.REG_SEND, Op.REG_SEND_TT, Op.MONITOR_P, Op.DEMONITOR_P)
    if s.to and op not in name_ops:
        raise SampleError(f"'to' (a registered name) does not apply to {op.name}; "
                          "use reg_send, monitor or demonitor")
    if (s.mfa or s.call) and op not in (Op.SPAWN_REQUEST, Op.SPAWN_REQUEST_TT):
        if not (s.call and op in (Op.REG_SEND, Op.REG_SEND_TT)):
            raise SampleError(f"'mfa'/'call' need op spawn_request (or call with reg_send "
                              f"to rex), not {op.name}")

    ref = env.ref(sending)
    if op in (Op.SEND, Op.SEND_TT):
        control: tuple = (int(op), Atom(""), other) + ((token,) if op == Op.SEND_TT else ())
        payload = _term(payload_text, env, "payload")
    elif op in (Op.SEND_SENDER, Op.SEND_SENDER_TT):
        control = (int(op), me, other) + ((token,) if op == Op.SEND_SENDER_TT else ())
        payload = _term(payload_text, env, "payload")
    elif op in (Op.REG_SEND, Op.REG_SEND_TT):
        if name is None:
            raise SampleError("reg_send needs 'to' (the registered name)")
        control = (int(op), me, Atom(""), name) + ((token,) if op == Op.REG_SEND_TT else ())
        if s.call and s.payload is None:
            m, f, args = _call_parts(s.call)
            payload = (Atom("$gen_call"), (me, ImproperList((Atom("alias"),), ref)),
                       (Atom("call"), m, f, args, env.pid(sending)))
        else:
            payload = _term(payload_text, env, "payload")
    elif op in (Op.ALIAS_SEND, Op.ALIAS_SEND_TT):
        control = (int(op), me, env.ref(receiving)) + \
            ((token,) if op == Op.ALIAS_SEND_TT else ())
        payload = _term(payload_text, env, "payload")
    elif op in (Op.MONITOR_P, Op.DEMONITOR_P):
        control = (int(op), me, name if name is not None else other, ref)
    elif op == Op.MONITOR_P_EXIT:
        control = (int(op), me, other, env.ref(receiving), _term(payload_text, env, "reason"))
    elif op == Op.PAYLOAD_MONITOR_P_EXIT:
        control = (int(op), me, other, env.ref(receiving))
        payload = _term(payload_text, env, "reason")
    elif op in (Op.EXIT, Op.EXIT2):
        control = (int(op), me, other, _term(payload_text, env, "reason"))
    elif op in (Op.EXIT_TT, Op.EXIT2_TT):
        control = (int(op), me, other, token, _term(payload_text, env, "reason"))
    elif op in (Op.PAYLOAD_EXIT, Op.PAYLOAD_EXIT2):
        control = (int(op), me, other)
        payload = _term(payload_text, env, "reason")
    elif op in (Op.PAYLOAD_EXIT_TT, Op.PAYLOAD_EXIT2_TT):
        control = (int(op), me, other, token)
        payload = _term(payload_text, env, "reason")
    elif op in (Op.SPAWN_REQUEST, Op.SPAWN_REQUEST_TT):
        control, payload = _spawn(s, op, env, me, ref, token)
    elif op in (Op.SPAWN_REPLY, Op.SPAWN_REPLY_TT):
        control = (int(op), env.ref(receiving), other, 2, me) + \
            ((token,) if op == Op.SPAWN_REPLY_TT else ())
    elif op in (Op.LINK, Op.UNLINK, Op.GROUP_LEADER):
        control = (int(op), me, other)
    elif op in (Op.UNLINK_ID, Op.UNLINK_ID_ACK):
        control = (int(op), 4, me, other)
    elif op == Op.NODE_LINK:
        control = (int(op),)
    else:  # pragma: no cover - every Op is handled above
        raise SampleError(f"cannot build {op.name}")
    try:
        body = frame_body(control, payload)
    except (ValueError, TypeError) as e:
        raise SampleError(f"cannot encode {op.name}: {e}") from None
    return parse_frame(body)


def _call_parts(text: str) -> tuple[Atom, Atom, list[Any]]:
    try:
        spec = parse_mfa(text)
    except MfaError as e:
        raise SampleError(f"call: {e}") from None
    if spec.arity is None or any(c in spec.module + spec.function for c in "*?["):
        raise SampleError(f"call: {text!r} must be concrete (no globs) in a sample")
    return Atom(spec.module), Atom(spec.function), [Atom(f"arg{i}") for i in range(spec.arity)]


def _spawn(s: Sample, op: Op, env: TermEnv, me: Any, ref: Any, token: Any
           ) -> tuple[tuple, Any]:
    gl = env.pid(env.sender_node)
    tt = (token,) if op == Op.SPAWN_REQUEST_TT else ()
    if s.call:
        m, f, args = _call_parts(s.call)
        if s.payload is not None:
            args_term = _term(s.payload, env, "payload")
            if type(args_term) is not list:
                raise SampleError("payload with call: the inner argument list, e.g. [\"id\"]")
            args = args_term
        mfa = (Atom("erpc"), Atom("execute_call"), 4)
        control = (int(op), ref, me, gl, mfa, [Atom("monitor")]) + tt
        return control, [env.ref(env.sender_node), m, f, args]
    if not s.mfa:
        raise SampleError("spawn_request needs 'mfa' (e.g. os:cmd/1) or 'call'")
    try:
        spec = parse_mfa(s.mfa)
    except MfaError as e:
        raise SampleError(f"mfa: {e}") from None
    if spec.arity is None:
        raise SampleError("mfa: a sample needs a concrete arity")
    if s.payload is not None:
        args = _term(s.payload, env, "payload")
        if type(args) is not list or len(args) != spec.arity:
            raise SampleError(f"payload: the argument list of {s.mfa} "
                              f"({spec.arity} elements)")
    else:
        args = [Atom(f"arg{i}") for i in range(spec.arity)]
    mfa = (Atom(spec.module), Atom(spec.function), spec.arity)
    return (int(op), ref, me, gl, mfa, []) + tt, args
