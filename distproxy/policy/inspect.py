"""What a rule can ask about one frame, computed lazily once per evaluation.

:class:`FrameView` wraps a ControlMessage for the duration of one ``evaluate`` call. Cheap
facts (op, target name, spawn MFA, sending node) come from the decoded control tuple;
the payload is decoded only when a matcher asks for it, and the view remembers that it
did, which is what makes a decision payload-dependent (not cacheable).
"""

from __future__ import annotations

from typing import Any

from distproxy.term import Atom, Export, ImproperList

__all__ = ["FrameView", "inner_call", "spawn_mfa", "rex_call", "NO_PAYLOAD"]

_ERPC = Atom("erpc")
_EXECUTE_CALL = Atom("execute_call")
_EXECUTE_CAST = Atom("execute_cast")
_ERLANG = Atom("erlang")
_APPLY = Atom("apply")
#: gen_server message tags (one definition for the policy package).
GEN_CALL = Atom("$gen_call")
GEN_CAST = Atom("$gen_cast")
_CALL = Atom("call")
_BLOCK_CALL = Atom("block_call")
_CAST = Atom("cast")

#: Returned by FrameView.payload() when the payload cannot be decoded.
NO_PAYLOAD = object()

MFA = tuple[Atom, Atom, int]


class FrameView:
    """One frame as seen by matchers during a single evaluation."""

    __slots__ = ("msg", "direction", "sender_node", "receiver_node", "peer_node",
                 "consulted", "_payload", "_raw", "_call", "_tname")

    def __init__(self, msg: Any, direction: str, sender_node: str, receiver_node: str,
                 peer_node: str) -> None:
        self.msg = msg
        self.direction = direction
        self.sender_node = sender_node
        self.receiver_node = receiver_node
        self.peer_node = peer_node
        self.consulted = False
        self._payload: Any = _UNSET
        self._raw: bytes | None = None
        self._call: Any = _UNSET
        self._tname: Any = _UNSET

    def raw_payload(self) -> tuple[bytes, int]:
        """(frame bytes, payload offset) without copying a bytes frame; offset -1 if no
        payload. Reading it makes the decision payload-dependent."""
        self.consulted = True
        off = self.msg.payload_offset
        if off is None:
            return b"", -1
        raw = self._raw
        if raw is None:
            frame = self.msg.frame
            raw = frame if type(frame) is bytes else bytes(frame)
            self._raw = raw
        return raw, off

    def payload_contains(self, needle: bytes) -> bool:
        """Whether the raw payload bytes contain ``needle`` (an atom's text, say)."""
        raw, off = self.raw_payload()
        return off >= 0 and raw.find(needle, off) >= 0

    def payload(self) -> Any:
        """The decoded payload, or NO_PAYLOAD if absent or undecodable."""
        p = self._payload
        if p is _UNSET:
            self.consulted = True
            if self.msg.payload_offset is None:
                p = NO_PAYLOAD
            else:
                try:
                    p = self.msg.payload()
                except Exception:  # a bad payload never matches; parse_frame's job to flag
                    p = NO_PAYLOAD
            self._payload = p
        return p

    def target_name(self) -> str | None:
        """The registered name a reg_send/monitor/demonitor addresses, else None."""
        n = self._tname
        if n is _UNSET:
            t = self.msg.target
            n = t.name if type(t) is Atom else None
            self._tname = n
        return n

    def call(self) -> MFA | None:
        """The function T would apply because of this frame (see :func:`inner_call`)."""
        c = self._call
        if c is _UNSET:
            c = inner_call(self)
            self._call = c
        return c


_UNSET = object()


def spawn_mfa(msg: Any) -> MFA | None:
    """The literal ``{M,F,Arity}`` of a spawn_request, else None."""
    if msg.kind != "spawn_request":
        return None
    mfa = msg.control[4]
    return mfa if type(mfa) is tuple and len(mfa) == 3 else None


def _args_mfa(m: Any, f: Any, args: Any) -> MFA | None:
    if type(m) is Atom and type(f) is Atom and type(args) is list:
        return (m, f, len(args))
    return None


def inner_call(view: FrameView) -> MFA | None:
    """The effective ``{M,F,Arity}`` a frame asks the receiver to run, or None.

    * spawn_request of ``erpc:execute_call/4`` (args ``[Ref, M, F, Args]``) or
      ``erpc:execute_cast/3`` (``[M, F, Args]``): the inner call (erpc:call/cast and, in
      OTP 25+, rpc:call/cast);
    * spawn_request of ``erlang:apply/2`` with an external fun ``fun M:F/A`` and an
      argument list: that function;
    * any other spawn_request: its own MFA;
    * reg_send to ``rex`` in the legacy rpc shapes (``$gen_call`` call/block_call,
      ``$gen_cast`` cast, raw ``{From, {call, ...}}``): the MFA inside.
    """
    msg = view.msg
    kind = msg.kind
    if kind == "spawn_request":
        mfa = spawn_mfa(msg)
        if mfa is None:
            return None
        m, f, a = mfa
        if m == _ERPC and (f == _EXECUTE_CALL and a == 4 or f == _EXECUTE_CAST and a == 3):
            args = view.payload()
            if type(args) is not list or len(args) != a:
                return None
            return _args_mfa(*args[-3:])
        if m == _ERLANG and f == _APPLY and a == 2:
            args = view.payload()
            if type(args) is list and len(args) == 2 and isinstance(args[0], Export):
                fun = args[0]
                if type(args[1]) is list:
                    return (fun.module, fun.function, len(args[1]))
            return mfa
        return mfa
    if kind == "reg_send" and view.target_name() == "rex":
        return rex_call(view.payload())
    return None


def rex_call(p: Any) -> MFA | None:
    """The MFA of a legacy rex request, or None."""
    if type(p) is not tuple:
        return None
    req: Any = None
    if len(p) == 3 and p[0] == GEN_CALL:
        req = p[2]
        if type(req) is tuple and len(req) == 5 and req[0] in (_CALL, _BLOCK_CALL):
            return _args_mfa(req[1], req[2], req[3])
        return None
    if len(p) == 2 and p[0] == GEN_CAST:
        req = p[1]
        if type(req) is tuple and len(req) == 5 and req[0] == _CAST:
            return _args_mfa(req[1], req[2], req[3])
        return None
    if len(p) == 2:
        req = p[1]
        if type(req) is tuple and len(req) in (4, 5) and req[0] in (_CALL, _BLOCK_CALL, _CAST):
            return _args_mfa(req[1], req[2], req[3])
    return None


def is_alias_tag(tag: Any) -> bool:
    """``[alias | Ref]``, the gen:call reply tag since OTP 24."""
    return (isinstance(tag, ImproperList) and len(tag.items) == 1
            and tag.items[0] == Atom("alias"))
