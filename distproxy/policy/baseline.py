"""The built-in from_peer baseline: the attack surface of dist-protocol.md section 8.

Each entry has a stable id (``baseline:<name>``), the ops it looks at, a verdict and a
predicate that is True when the frame is *denied*. Entries run before the file's own
from_peer rules, so a file cannot accidentally override them; a file can only tune them
(``allow_spawn``, ``allow_names``, ``pg_scopes``), switch single entries off
(``disable``), put them in audit mode, or opt out (``baseline: false``).

Predicates read the payload only when they must, and use the raw-bytes atom test first
(an allowed shape's atoms must appear in the bytes), so most denials cost no decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from distproxy.term import Atom, Export, Fun, Pid

from .globs import compile_globs
from .inspect import GEN_CALL, GEN_CAST, NO_PAYLOAD, FrameView, spawn_mfa
from .mfa import compile_mfas
from .model import BaselineConfig, Verdict
from .patterns import Pattern, compile_pattern

__all__ = [
    "PREFIX",
    "ENTRY_IDS",
    "OTP_INTERNAL_NAMES",
    "BaselineEntry",
    "build_baseline",
    "THREATS",
]

PREFIX = "baseline:"

#: Registered names of OTP-internal processes a peer has no business messaging.
#: (rex, net_kernel, global_name_server and pg scopes have their own entries.)
OTP_INTERNAL_NAMES: tuple[str, ...] = (
    "auth", "init", "code_server", "application_controller", "erl_prim_loader",
    "kernel_sup", "*_sup", "user", "user_drv", "standard_error", "logger",
    "logger_proxy", "logger_handler_watcher", "error_logger", "erl_signal_server",
    "file_server_2", "inet_db", "global_group", "global_group_check", "kernel_refc",
    "kernel_safe_sup", "kernel_config", "erts_code_purger",
    "erts_literal_area_collector", "erts_dirty_process_signal_handler",
    "socket_registry", "os_server", "erl_epmd", "timer_server", "erl_ddll",
    "ddll_server", "disk_log_server", "dist_ac", "heart", "inet_gethost_native",
    "alarm_handler", "release_handler", "erl_boot_server", "overload", "os_mon",
    "memsup", "cpu_sup", "disksup", "dbg", "observer_backend",
)

#: Entry ids (without prefix) and the threat each one stops (docs/POLICY.md mirrors it).
THREATS: dict[str, str] = {
    "sender-node": "sender spoofing: a frame whose sender pid, or a reference or pid the "
                   "peer itself creates (monitor/demonitor ref, spawn request id, the pid a "
                   "spawn_reply reports), names another node (OTP delivers it; anything "
                   "trusting node(From) is fooled)",
    "no-spawn": "remote code execution by SPAWN_REQUEST (spawn/4, spawn of funs, "
                "erpc:call/cast, rpc:call in OTP 25+); allow_spawn lists exceptions, "
                "checked against erpc's inner MFA too",
    "rex": "legacy rpc through the rex server ({call|cast|block_call, M, F, A, GL}); only "
           "the connection-setup {Pid, features_request} passes",
    "net-kernel": "net_kernel {spawn,...} RCE, forced {connect,...} (cookie-digest leak), "
                  "{disconnect,...}, {allow,...}; only ping's {is_auth, _} call passes",
    "internal-names": "OTP-internal servers: auth (cookie theft), init (halt/restart), "
                      "code_server (load_binary), supervisors (start_child), io servers, "
                      "logger, file_server_2, ...; monitors on them get DOWN noproc",
    "io-mfa": "io requests carrying {M, F, A} (put_chars, get_until): the io server "
              "applies the MFA; allow_io_mfa (default: the io_lib calls io:format, "
              "io:fwrite, io:write and io:fread send) lists exceptions",
    "global": "global_name_server abuse: {registrar, Fun} runs Fun, register with a "
              "foreign fun, forged lost_connection partitions the cluster; only the "
              "documented connection/lock/name shapes pass, node fields must be the peer",
    "pg": "pg scope abuse: only discover/join/leave/sync shapes reach a scope",
    "no-exit2": "exit(Pid, kill) of any process, kernel processes included",
    "no-group-leader": "group-leader hijack: the victim's io goes to the peer",
    "no-node-link": "obsolete NODE_LINK (no legitimate use)",
}
ENTRY_IDS: tuple[str, ...] = tuple(THREATS)

Predicate = Callable[[FrameView], bool]

_GLOBAL = Atom("global")
_PUT_CHARS = Atom("put_chars")
_LOCK_SET = Atom("lock_set")
_GET_UNTIL = Atom("get_until")
#: Kinds whose reference the sending node creates (so it names the sender's node).
_PEER_MADE_REF = frozenset(("monitor", "demonitor", "spawn_request"))


@dataclass(frozen=True)
class BaselineEntry:
    id: str  # with the prefix
    kinds: tuple[str, ...]
    verdict: Verdict
    denies: Predicate  # True: the frame is denied by this entry
    reads_payload: bool
    names: Callable[[str | None], bool] | None = None  # static filter on the target name


def _deny_unless(shapes: tuple[Pattern, ...]) -> Callable[[FrameView], bool]:
    """A predicate denying any payload that matches none of ``shapes``."""

    def denies(view: FrameView) -> bool:
        raw, off = view.raw_payload()
        if off < 0:
            return True
        candidates = [s for s in shapes if s.may_match_bytes(raw, off)]
        if not candidates:
            return True
        p = view.payload()
        if p is NO_PAYLOAD:
            return True
        return not any(s.match(p) for s in candidates)

    return denies


def _pats(*sources: str) -> tuple[Pattern, ...]:
    return tuple(compile_pattern(s) for s in sources)


# -- global_name_server shapes (OTP 25 global.erl handle_call/cast/info) ---------------
# tag -> (arity, index of a node field that must be the sending peer, or None)
_GLOBAL_CASTS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "init_connect": ((4,), 2),
    "exchange": ((5,), 1),
    "resolved": ((7,), 1),
    "new_nodes": ((6,), 1),
    "in_sync": ((3,), 1),
    "lock_set": ((4, 5), None),  # {lock_set, LockerPid, Set, Known[, Tag]}: pid checked
}
# (lock_is_set, exchange_ops, async_del_*, whereis are only ever sent locally in OTP 25)
_GLOBAL_INFOS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "init_connect_ack": ((4,), 1),
    "lost_connection": ((5,), 1),
    "remove_connection": ((2,), 1),
    "cancel_connect": ((3,), 1),
}
# call request tag -> (arity, index of the Method fun or None)
_GLOBAL_CALLS: dict[str, tuple[int, int | None]] = {
    "set_lock": (2, None),
    "del_lock": (2, None),
    "unregister": (2, None),
    "register": (4, 3),
    "register_ext": (5, 3),
}


def _shape_ok(t: Any, table: dict[str, tuple[tuple[int, ...], int | None]],
              peer: str) -> bool:
    if type(t) is not tuple or not t or type(t[0]) is not Atom:
        return False
    spec = table.get(t[0].name)
    if spec is None:
        return False
    arities, node_at = spec
    if len(t) not in arities:
        return False
    if node_at is not None:
        node = t[node_at]
        return type(node) is Atom and node.name == peer
    return True


def _global_fun(method: Any) -> bool:
    if isinstance(method, Fun) or isinstance(method, Export):
        return method.module == _GLOBAL
    return False


def global_message_ok(p: Any, peer: str) -> bool:
    """True if ``p`` is one of global's documented inter-node shapes from ``peer``."""
    if type(p) is not tuple or not p:
        return False
    if len(p) == 2 and p[0] == GEN_CAST:
        c = p[1]
        if not _shape_ok(c, _GLOBAL_CASTS, peer):
            return False
        if c[0] == _LOCK_SET:
            return isinstance(c[1], Pid) and c[1].node.name == peer
        return True
    if len(p) == 3 and p[0] == GEN_CALL:
        req = p[2]
        if type(req) is not tuple or not req or type(req[0]) is not Atom:
            return False
        spec = _GLOBAL_CALLS.get(req[0].name)
        if spec is None or len(req) != spec[0]:
            return False
        return spec[1] is None or _global_fun(req[spec[1]])
    return _shape_ok(p, _GLOBAL_INFOS, peer)


def _io_mfa(t: tuple) -> tuple[Any, Any, int] | None:
    """The ``{M, F, length(A)}`` an io request tuple makes the io server apply, if any."""
    n = len(t)
    head = t[0]
    if head == _PUT_CHARS:
        if n == 5:  # {put_chars, Encoding, M, F, A}
            m, f, a = t[2], t[3], t[4]
        elif n == 4:  # {put_chars, M, F, A} (latin1 era)
            m, f, a = t[1], t[2], t[3]
        else:
            return None
    elif head == _GET_UNTIL:
        if n == 6:  # {get_until, Encoding, Prompt, M, F, A}
            m, f, a = t[3], t[4], t[5]
        elif n == 5:  # {get_until, Prompt, M, F, A}
            m, f, a = t[2], t[3], t[4]
        else:
            return None
    else:
        return None
    if type(m) is not Atom or type(f) is not Atom:
        return None
    return (m, f, len(a) if type(a) is list else -1)


def _has_io_mfa(t: Any, allowed: Callable[[Any], bool], depth: int = 0) -> bool:
    """An io request applying a non-allowed ``M, F, A`` anywhere in ``t``."""
    if depth > 64:
        return True  # deeper than any io request; the codec bounds depth anyway
    tt = type(t)
    if tt is tuple:
        if t:
            mfa = _io_mfa(t)
            if mfa is not None and not allowed(mfa):
                return True
        return any(_has_io_mfa(x, allowed, depth + 1) for x in t)
    if tt is list:
        return any(_has_io_mfa(x, allowed, depth + 1) for x in t)
    if tt is dict:
        return any(_has_io_mfa(v, allowed, depth + 1) for v in t.values())
    items = getattr(t, "items", None)  # ImproperList
    if isinstance(items, tuple):
        return any(_has_io_mfa(x, allowed, depth + 1) for x in items) or \
            _has_io_mfa(getattr(t, "tail", None), allowed, depth + 1)
    return False


def build_baseline(cfg: BaselineConfig) -> list[BaselineEntry]:
    """The enabled entries, in evaluation order, tuned by ``cfg``."""
    if not cfg.enabled:
        return []
    disabled = {d.removeprefix(PREFIX) for d in cfg.disable}
    allow_names = compile_globs(cfg.allow_names) if cfg.allow_names else (lambda s: False)
    entries: list[BaselineEntry] = []

    def add(name: str, kinds: tuple[str, ...], verdict: Verdict, denies: Predicate,
            reads_payload: bool, names: Callable[[str | None], bool] | None = None) -> None:
        if name not in disabled:
            entries.append(BaselineEntry(PREFIX + name, kinds, verdict, denies, reads_payload,
                                         names))

    # sender-node
    def foreign_sender(view: FrameView) -> bool:
        msg = view.msg
        peer = view.peer_node
        node = getattr(msg.sender, "node", None)
        if node is not None and node.name != peer:
            return True
        kind = msg.kind
        if kind in _PEER_MADE_REF:  # the peer made this ref: it must carry the peer's node
            return msg.ref.node.name != peer
        if kind == "spawn_reply":  # the spawned process lives on the peer
            result = msg.control[4]
            return type(result) is Pid and result.node.name != peer
        return False

    add("sender-node", ("link", "exit", "exit2", "reg_send", "send", "monitor", "demonitor",
                        "monitor_exit", "spawn_request", "spawn_reply", "alias_send", "unlink",
                        "unlink_id", "unlink_id_ack", "group_leader"),
        Verdict.DROP, foreign_sender, False)

    # no-spawn
    allowed = compile_mfas(cfg.allow_spawn) if cfg.allow_spawn else None
    erpc_mfas = {("erpc", "execute_call", 4), ("erpc", "execute_cast", 3)}

    def spawn_denied(view: FrameView) -> bool:
        if allowed is None:
            return True
        mfa = spawn_mfa(view.msg)
        if mfa is None:
            return True
        if (mfa[0].name, mfa[1].name, mfa[2]) in erpc_mfas:
            inner = view.call()
            return inner is None or not allowed(inner)
        return not allowed(mfa)

    add("no-spawn", ("spawn_request",), Verdict.REJECT, spawn_denied, bool(cfg.allow_spawn))

    # rex
    rex_shapes = _pats("{pid(), features_request}")
    rex_denies = _deny_unless(rex_shapes)

    def rex(view: FrameView) -> bool:
        if view.target_name() != "rex":
            return False
        if view.msg.kind == "monitor":
            return True
        return rex_denies(view)

    add("rex", ("reg_send", "monitor"), Verdict.REJECT, rex, True, "rex".__eq__)

    # net-kernel
    nk_denies = _deny_unless(_pats("{'$gen_call', _, {is_auth, _}}"))

    def net_kernel(view: FrameView) -> bool:
        return view.target_name() == "net_kernel" and nk_denies(view)

    add("net-kernel", ("reg_send",), Verdict.REJECT, net_kernel, True, "net_kernel".__eq__)

    # internal-names
    internal = compile_globs(OTP_INTERNAL_NAMES)

    def internal_name(view: FrameView) -> bool:
        name = view.target_name()
        return name is not None and internal(name) and not allow_names(name)

    add("internal-names", ("reg_send", "monitor"), Verdict.REJECT, internal_name, False,
        lambda n: n is not None and internal(n) and not allow_names(n))

    # io-mfa
    io_allowed = compile_mfas(cfg.allow_io_mfa) if cfg.allow_io_mfa else (lambda mfa: False)

    def io_mfa(view: FrameView) -> bool:
        if not (view.payload_contains(b"put_chars") or view.payload_contains(b"get_until")):
            return False
        p = view.payload()
        return p is not NO_PAYLOAD and _has_io_mfa(p, io_allowed)

    add("io-mfa", ("send", "reg_send", "alias_send"), Verdict.DROP, io_mfa, True)

    # global
    def global_denied(view: FrameView) -> bool:
        if view.target_name() != "global_name_server":
            return False
        p = view.payload()
        return p is NO_PAYLOAD or not global_message_ok(p, view.peer_node)

    add("global", ("reg_send",), Verdict.REJECT, global_denied, True,
        "global_name_server".__eq__)

    # pg
    scopes = compile_globs(cfg.pg_scopes) if cfg.pg_scopes else None
    pg_denies = _deny_unless(_pats(
        "{discover, pid()}", "{discover, pid(), _}", "{join, pid(), _, _}",
        "{leave, pid(), _, _}", "{'$gen_cast', {sync, pid(), _}}"))

    def pg(view: FrameView) -> bool:
        name = view.target_name()
        return name is not None and scopes is not None and scopes(name) and pg_denies(view)

    add("pg", ("reg_send",), Verdict.DROP, pg, True,
        lambda n: n is not None and scopes is not None and scopes(n))

    always: Predicate = lambda view: True  # noqa: E731
    add("no-exit2", ("exit2",), Verdict.DROP, always, False)
    add("no-group-leader", ("group_leader",), Verdict.DROP, always, False)
    add("no-node-link", ("node_link",), Verdict.DROP, always, False)
    return entries
