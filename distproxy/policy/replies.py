"""Synthesised replies for a ``reject`` verdict: polite, immediate failures.

Pure functions. :func:`reject_frames` returns frame *bodies* (``'p'`` + 131-encoded
control [+ payload], no u32 length, the same form ``parse_frame`` takes); send each with
``distproxy.dist.control.with_length(body)`` back on the leg the rejected frame came from.

What each op gets (the RFC prototype's behaviour, extended to gen_server calls):

============================  =========================================================
rejected op                   reply sent back to the sender
============================  =========================================================
link ``{1, From, To}``        exit ``noproc`` from To to From: PAYLOAD_EXIT ``{24, To,
                              From}`` + ``noproc`` (EXIT ``{3, To, From, noproc}``
                              without DFLAG_EXIT_PAYLOAD)
monitor ``{19, From, P, Ref}`` DOWN ``noproc``: PAYLOAD_MONITOR_P_EXIT ``{28, P, From,
                              Ref}`` + ``noproc`` (MONITOR_P_EXIT ``{21, P, From, Ref,
                              noproc}``); P is the pid or name as in the request
spawn_request                 SPAWN_REPLY ``{31, ReqId, From, 0, Error}``, Error
                              ``notsup`` unless the rule sets ``reply_error``:
                              erpc:call raises ``{erpc, notsup}``, rpc:call returns
                              ``{badrpc, notsup}``, spawn/4 returns a dead pid
send / reg_send carrying a    DOWN ``noproc`` for the call's monitor: FromProc is the
``{'$gen_call', {Pid, Tag},   target (pid or name), Ref is ``Tag``'s reference (``[alias
_}``                          | Ref]`` or a plain ref), so gen_server:call exits
                              ``noproc`` at once instead of waiting for its timeout
anything else                 nothing (reject behaves as drop)
============================  =========================================================
"""

from __future__ import annotations

from typing import Any

from distproxy.dist.control import Op, frame_body
from distproxy.dist.flags import DFlag
from distproxy.term import Atom, Pid, Reference

from .inspect import GEN_CALL, is_alias_tag

__all__ = ["reject_frames", "DEFAULT_SPAWN_ERROR", "REJECT_REASON", "EXIT_PAYLOAD"]

#: Exit/DOWN reason of every synthesised failure: "no such process".
REJECT_REASON = Atom("noproc")
#: SPAWN_REPLY error atom when the rule does not choose one.
DEFAULT_SPAWN_ERROR = "notsup"
EXIT_PAYLOAD = int(DFlag.EXIT_PAYLOAD)


def _down(proc: Any, to: Pid, ref: Reference, payload_exits: bool) -> bytes:
    if payload_exits:
        return frame_body((int(Op.PAYLOAD_MONITOR_P_EXIT), proc, to, ref), REJECT_REASON)
    return frame_body((int(Op.MONITOR_P_EXIT), proc, to, ref, REJECT_REASON))


def _gen_call_monitor(message: Any) -> tuple[Pid, Reference] | None:
    """(caller, monitor ref) of a ``$gen_call`` payload from the frame's sender."""
    try:
        p = message.payload()
    except Exception:
        return None
    if type(p) is not tuple or len(p) != 3 or p[0] != GEN_CALL:
        return None
    frm = p[1]
    if type(frm) is not tuple or len(frm) != 2 or type(frm[0]) is not Pid:
        return None
    caller, tag = frm
    sender = message.sender
    if isinstance(sender, Pid) and caller.node != sender.node:
        return None  # only ever answer the node that asked
    if is_alias_tag(tag):
        ref = tag.tail
    else:
        ref = tag
    return (caller, ref) if type(ref) is Reference else None


def reject_frames(message: Any, negotiated_flags: int,
                  spawn_error: str | None = None) -> list[bytes]:
    """Frame bodies to send back to the sender of a rejected ``message``.

    ``negotiated_flags`` picks PAYLOAD_* versus old-style exits (DFLAG_EXIT_PAYLOAD,
    0x400000); ``spawn_error`` is the SPAWN_REPLY error atom (``Decision.reply_error``).
    """
    payload_exits = bool(negotiated_flags & EXIT_PAYLOAD)
    kind = message.kind
    c = message.control
    if kind == "link":
        frm, to = c[1], c[2]
        if payload_exits:
            return [frame_body((int(Op.PAYLOAD_EXIT), to, frm), REJECT_REASON)]
        return [frame_body((int(Op.EXIT), to, frm, REJECT_REASON))]
    if kind == "monitor":
        return [_down(c[2], c[1], c[3], payload_exits)]
    if kind == "spawn_request":
        req_id, frm = c[1], c[2]
        error = Atom(spawn_error or DEFAULT_SPAWN_ERROR)
        return [frame_body((int(Op.SPAWN_REPLY), req_id, frm, 0, error))]
    if kind in ("send", "reg_send"):
        target = message.target
        if not isinstance(target, (Pid, Atom)):
            return []
        mon = _gen_call_monitor(message)
        if mon is None:
            return []
        return [_down(target, mon[0], mon[1], payload_exits)]
    return []
