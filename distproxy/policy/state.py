"""Per-connection state: what the trusted node asked for, so replies can be told apart.

Like a firewall's ESTABLISHED/RELATED tracking. One :class:`ConnectionState` is shared by
the two Enforcers of a connection pair and dropped with it:

- the to_peer side *records* (``record_to_peer``) only the ops and shapes that create
  state: monitors T sets (MONITOR_P), aliases T hands out (``[alias | Ref]`` anywhere in
  a message, e.g. ``{'$gen_call', {Pid, [alias | Ref]}, _}``), spawn requests, links,
  unlinks, and the pids of T it exposes (control fields and pids in payloads);
- the from_peer side *consults* it through the ``reply`` matcher (:meth:`is_reply`) and,
  once a frame is forwarded, *retires* what the reply completes (:meth:`record_from_peer`):
  a DOWN ends its monitor, a SPAWN_REPLY its request (and with flag 1 creates a link),
  an UNLINK_ID_ACK its unlink and link, an alias_send its alias.

Every table is bounded (:class:`StateLimits`); when one is full the oldest entry is
retired and ``evictions[table]`` counts it, so a flood degrades replies to old requests
instead of memory. Recording costs a dict operation per state-creating frame and two
``bytes.find`` calls per to_peer payload.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, Hashable, TypeVar

from distproxy.term import DEFAULT_LIMITS, Atom, DecodeError, Pid, Reference, decode_at

__all__ = ["StateLimits", "BoundedTable", "ConnectionState", "REPLY_KINDS", "DEFAULT_STATE_LIMITS"]

K = TypeVar("K", bound=Hashable)

#: Kinds for which ``reply: true`` means something (what makes each one a reply).
REPLY_KINDS: dict[str, str] = {
    "alias_send": "the alias is one T handed to this peer and has not been retired",
    "monitor_exit": "the ref is a monitor T set on this peer's process, for that T pid",
    "exit": "a link between the T pid and the peer pid exists (T linked, spawn_link, or an accepted peer link)",
    "unlink": "a link between the two pids exists",
    "unlink_id": "a link between the two pids exists",
    "unlink_id_ack": "the id is an unlink T sent for that link",
    "spawn_reply": "the request id is one of T's pending spawn requests, for that T pid",
    "send": "the target pid is one T exposed to this peer (sender of a frame or a pid in one)",
    "demonitor": "the ref is a monitor this peer holds on a T process",
}

# Byte prefixes of the improper list ``[alias | Ref]`` (LIST_EXT, one element, the atom
# ``alias`` in each atom encoding); the tail term (the Ref) follows at once.
_LIST1 = b"l\x00\x00\x00\x01"
_ALIAS_PREFIXES: tuple[bytes, ...] = (
    _LIST1 + b"w\x05alias",  # SMALL_ATOM_UTF8_EXT (what OTP 25+ sends)
    _LIST1 + b"v\x00\x05alias",  # ATOM_UTF8_EXT
    _LIST1 + b"s\x05alias",  # SMALL_ATOM_EXT
    _LIST1 + b"d\x00\x05alias",  # ATOM_EXT
)
_ALIAS_NEEDLE = b"\x05alias"
_NEW_PID_EXT = 88
_SMALL_ATOM_UTF8_EXT = 119
_PID_TRAILER = 12  # NEW_PID_EXT: node atom, then u32 id, u32 serial, u32 creation
#: Bound on the pids/aliases taken from one payload (a message listing a million pids
#: must not cost a million table operations).
MAX_SCAN_HITS = 256
#: spawn_reply flag bit: a link was set up (dist-protocol.md section 5).
SPAWN_REPLY_LINK = 1
_LINK = Atom("link")
_MONITOR = Atom("monitor")


@dataclass(frozen=True)
class StateLimits:
    """Entries per table per connection. Defaults fit 10,000+ concurrent calls."""

    max_aliases: int = 65536
    max_monitors: int = 65536  # monitors T set on the peer's processes
    max_spawns: int = 16384  # T's pending spawn requests
    max_links: int = 65536  # links between T and peer processes
    max_unlinks: int = 16384  # T's pending UNLINK_IDs
    max_exposed_pids: int = 65536  # T pids the peer has seen
    max_peer_monitors: int = 65536  # monitors the peer holds on T processes (tracked; capped by guards)
    max_peer_links: int = 65536  # links the peer created to T processes (tracked; capped by guards)


DEFAULT_STATE_LIMITS = StateLimits()


class BoundedTable(Generic[K]):
    """An insertion-ordered map with a size bound; the oldest entry goes first."""

    __slots__ = ("name", "limit", "items", "evictions")

    def __init__(self, name: str, limit: int, evictions: Counter[str]) -> None:
        self.name = name
        self.limit = limit
        self.items: OrderedDict[K, Any] = OrderedDict()
        self.evictions = evictions

    def add(self, key: K, value: Any = True) -> None:
        items = self.items
        if key in items:
            items.move_to_end(key)
            items[key] = value
            return
        items[key] = value
        if len(items) > self.limit:
            items.popitem(last=False)
            self.evictions[self.name] += 1

    def get(self, key: K) -> Any:
        return self.items.get(key)

    def pop(self, key: K) -> Any:
        return self.items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class ConnectionState:
    """What one connection's trusted side has asked for (see the module docstring)."""

    trusted_node: str
    peer_node: str
    limits: StateLimits = DEFAULT_STATE_LIMITS
    evictions: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        lim, ev = self.limits, self.evictions
        self.aliases: BoundedTable[Reference] = BoundedTable("aliases", lim.max_aliases, ev)
        self.monitors: BoundedTable[Reference] = BoundedTable("monitors", lim.max_monitors, ev)
        self.spawns: BoundedTable[Reference] = BoundedTable("spawns", lim.max_spawns, ev)
        self.links: BoundedTable[tuple[Pid, Pid]] = BoundedTable("links", lim.max_links, ev)
        self.unlinks: BoundedTable[tuple[int, Pid, Pid]] = BoundedTable("unlinks", lim.max_unlinks, ev)
        self.exposed: BoundedTable[Pid] = BoundedTable("exposed_pids", lim.max_exposed_pids, ev)
        self.peer_monitors: BoundedTable[Reference] = BoundedTable(
            "peer_monitors", lim.max_peer_monitors, ev)
        self.peer_links: BoundedTable[tuple[Pid, Pid]] = BoundedTable(
            "peer_links", lim.max_peer_links, ev)
        self._trusted_atom = Atom(self.trusted_node)
        encoded = self.trusted_node.encode("utf-8")
        self._pid_prefix = (bytes((_NEW_PID_EXT, _SMALL_ATOM_UTF8_EXT, len(encoded))) + encoded
                            if len(encoded) < 256 else b"")

    # -- to_peer: T asks -----------------------------------------------------------------
    def record_to_peer(self, message: Any) -> None:
        """Remember what a forwarded to_peer frame makes the peer entitled to answer."""
        kind = message.kind
        c = message.control
        if kind == "monitor":  # {19, TPid, PeerProc, Ref}
            self.monitors.add(c[3], c[1])
        elif kind == "demonitor":
            self.monitors.pop(c[3])
            self.aliases.pop(c[3])  # gen:call's monitor ref is its alias too
        elif kind == "spawn_request":  # {29, ReqId, From, GL, MFA, Opts[, Token]}
            opts = c[5]
            link = _LINK in opts
            self.spawns.add(c[1], (c[2], link))
            if _MONITOR in opts:
                self.monitors.add(c[1], c[2])  # the DOWN carries the request id
            self._expose(c[2])
            self._expose(c[3])
        elif kind == "link":  # {1, TPid, PeerPid}
            self.links.add((c[1], c[2]))
        elif kind == "unlink":
            self._unlink(c[1], c[2])
        elif kind == "unlink_id":  # {35, Id, TPid, PeerPid}
            self.unlinks.add((c[1], c[2], c[3]))
        elif kind == "unlink_id_ack":  # T acks the peer's unlink: the link is gone
            self._unlink(c[3], c[2])
        elif kind == "exit":  # T's linked process died: the link is gone
            self._unlink(c[1], c[2])
        elif kind == "monitor_exit":  # DOWN to a peer monitor: it is gone
            self.peer_monitors.pop(c[3])
        sender = message.sender
        if type(sender) is Pid:
            self._expose(sender)
        if message.payload_offset is not None:
            self._scan_payload(message)

    def _unlink(self, trusted_pid: Any, peer_pid: Any) -> None:
        self.links.pop((trusted_pid, peer_pid))
        self.peer_links.pop((trusted_pid, peer_pid))

    def _expose(self, pid: Any) -> None:
        if type(pid) is Pid and pid.node == self._trusted_atom:
            self.exposed.add(pid)

    def _scan_payload(self, message: Any) -> None:
        frame = message.frame
        raw = frame if type(frame) is bytes else bytes(frame)
        start = message.payload_offset
        if raw.find(_ALIAS_NEEDLE, start) >= 0:
            self._scan_aliases(raw, start)
        prefix = self._pid_prefix
        if prefix:
            pos = raw.find(prefix, start)
            hits = 0
            while pos >= 0 and hits < MAX_SCAN_HITS:
                hits += 1
                try:
                    pid, _ = decode_at(raw, pos, DEFAULT_LIMITS, versioned=False)
                except DecodeError:
                    pid = None
                if type(pid) is Pid:
                    self.exposed.add(pid)
                pos = raw.find(prefix, pos + len(prefix))

    def _scan_aliases(self, raw: bytes, start: int) -> None:
        for prefix in _ALIAS_PREFIXES:
            pos = raw.find(prefix, start)
            hits = 0
            while pos >= 0 and hits < MAX_SCAN_HITS:
                hits += 1
                tail = pos + len(prefix)
                try:
                    ref, _ = decode_at(raw, tail, DEFAULT_LIMITS, versioned=False)
                except DecodeError:
                    ref = None
                if type(ref) is Reference and ref.node == self._trusted_atom:
                    self.aliases.add(ref)
                pos = raw.find(prefix, tail)

    # -- from_peer: the peer answers -----------------------------------------------------
    def is_reply(self, message: Any) -> bool:
        """Whether a from_peer frame answers something T asked for (see REPLY_KINDS)."""
        kind = message.kind
        c = message.control
        if kind == "alias_send":  # {33, From, Alias}
            return c[2] in self.aliases
        if kind == "monitor_exit":  # {28, PeerProc, TPid, Ref}
            return self.monitors.get(c[3]) == c[2]
        if kind == "exit":  # {24, PeerPid, TPid}
            return (c[2], c[1]) in self.links
        if kind in ("unlink", "unlink_id"):
            frm, to = (c[1], c[2]) if kind == "unlink" else (c[2], c[3])
            return (to, frm) in self.links
        if kind == "unlink_id_ack":  # {36, Id, PeerPid, TPid}
            return (c[1], c[3], c[2]) in self.unlinks
        if kind == "spawn_reply":  # {31, ReqId, TPid, Flags, Result}
            pending = self.spawns.get(c[1])
            return pending is not None and pending[0] == c[2]
        if kind == "send":
            return message.target in self.exposed
        if kind == "demonitor":
            return c[3] in self.peer_monitors
        return False

    def record_from_peer(self, message: Any) -> None:
        """Retire (or create) state for a from_peer frame that is being forwarded."""
        kind = message.kind
        c = message.control
        if kind == "alias_send":
            self.aliases.pop(c[2])
        elif kind == "monitor_exit":
            if self.monitors.get(c[3]) == c[2]:
                self.monitors.pop(c[3])
                self.aliases.pop(c[3])
        elif kind == "spawn_reply":  # {31, ReqId, TPid, Flags, Result}
            pending = self.spawns.pop(c[1])
            result = c[4]
            if type(result) is not Pid:
                self.monitors.pop(c[1])  # the spawn failed: no monitor, no DOWN
            elif pending is not None and c[3] & SPAWN_REPLY_LINK:
                self.links.add((c[2], result))
        elif kind == "exit":
            self._unlink(c[2], c[1])
        elif kind == "unlink_id_ack":
            if self.unlinks.pop((c[1], c[3], c[2])) is not None:
                self._unlink(c[3], c[2])
        elif kind == "unlink":
            self._unlink(c[2], c[1])
        elif kind == "link":  # a peer link the policy accepted: exits on it are legitimate
            self.links.add((c[2], c[1]))
            self.peer_links.add((c[2], c[1]))
        elif kind == "monitor":  # {19, PeerPid, TProc, Ref}
            self.peer_monitors.add(c[3], c[2])
        elif kind == "demonitor":
            self.peer_monitors.pop(c[3])

    # -- introspection -------------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        return {t.name: len(t) for t in (self.aliases, self.monitors, self.spawns, self.links,
                                         self.unlinks, self.exposed, self.peer_monitors,
                                         self.peer_links)}
