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

import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, Hashable, TypeVar

from distproxy.term import Atom, Pid
from distproxy.term.tags import MAX_REF_WORDS

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
_ALIAS_TEXT = b"alias"
_SHORT_HEAD = len(_LIST1) + 2  # list header + SMALL_ATOM header (the long forms are one more)
#: What precedes the text: the list header and the atom header, per atom encoding.
_ALIAS_HEADS = frozenset((
    _LIST1 + b"w\x05",  # SMALL_ATOM_UTF8_EXT (what OTP 25+ sends)
    _LIST1 + b"v\x00\x05",  # ATOM_UTF8_EXT
    _LIST1 + b"s\x05",  # SMALL_ATOM_EXT
    _LIST1 + b"d\x00\x05",  # ATOM_EXT
))
_NEW_PID_EXT = 88
_SMALL_ATOM_UTF8_EXT = 119
_PID_TRAILER = 12  # NEW_PID_EXT: node atom, then u32 id, u32 serial, u32 creation
#: Bound on the pids/aliases taken from one payload (a message listing a million pids
#: must not cost a million table operations).
MAX_SCAN_HITS = 256
#: Bytes of a to_peer payload searched for aliases and pids (the call tag and reply pid
#: of a gen_server call come before its request, however big).
PAYLOAD_SCAN_WINDOW = 1 << 20
#: spawn_reply flag bit: a link was set up (dist-protocol.md section 5).
SPAWN_REPLY_LINK = 1
_LINK = Atom("link")
_MONITOR = Atom("monitor")


_REF_WORDS = {n: struct.Struct(f">I{n}I") for n in range(1, MAX_REF_WORDS + 1)}  # creation, ids
_PID_WORDS = struct.Struct(">III")  # id, serial, creation
_U16 = struct.Struct(">H")
_NEWER_REFERENCE_EXT = 90

RefKey = tuple[str, int, tuple[int, ...]]
PidKey = tuple[str, int, int, int]


def ref_key(ref: Any) -> RefKey:
    """A reference as a plain tuple: hashed in C, and buildable from raw bytes."""
    return (ref.node.name, ref.creation, ref.ids)


def pid_key(pid: Any) -> PidKey:
    return (pid.node.name, pid.id, pid.serial, pid.creation)


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
        try:
            items.move_to_end(key)
        except KeyError:
            items[key] = value
            if len(items) > self.limit:
                items.popitem(last=False)
                self.evictions[self.name] += 1
            return
        items[key] = value

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
        # Keys are ref_key/pid_key tuples (C-hashed; buildable from raw bytes).
        self.aliases: BoundedTable[RefKey] = BoundedTable("aliases", lim.max_aliases, ev)
        self.monitors: BoundedTable[RefKey] = BoundedTable("monitors", lim.max_monitors, ev)
        self.spawns: BoundedTable[RefKey] = BoundedTable("spawns", lim.max_spawns, ev)
        self.links: BoundedTable[tuple[PidKey, PidKey]] = BoundedTable("links", lim.max_links, ev)
        self.unlinks: BoundedTable[tuple[int, PidKey, PidKey]] = BoundedTable("unlinks", lim.max_unlinks, ev)
        self.exposed: BoundedTable[PidKey] = BoundedTable("exposed_pids", lim.max_exposed_pids, ev)
        self.peer_monitors: BoundedTable[RefKey] = BoundedTable(
            "peer_monitors", lim.max_peer_monitors, ev)
        self.peer_links: BoundedTable[tuple[PidKey, PidKey]] = BoundedTable(
            "peer_links", lim.max_peer_links, ev)
        self._trusted_atom = Atom(self.trusted_node)
        encoded = self.trusted_node.encode("utf-8")
        self._node_atom = (bytes((_SMALL_ATOM_UTF8_EXT, len(encoded))) + encoded
                           if len(encoded) < 256 else b"")
        self._pid_prefix = bytes((_NEW_PID_EXT,)) + self._node_atom if self._node_atom else b""

    # -- to_peer: T asks -----------------------------------------------------------------
    def record_to_peer(self, message: Any) -> None:
        """Remember what a forwarded to_peer frame makes the peer entitled to answer."""
        kind = message.kind
        c = message.control
        if kind == "monitor":  # {19, TPid, PeerProc, Ref}
            self.monitors.add(ref_key(c[3]), pid_key(c[1]))
        elif kind == "demonitor":
            key = ref_key(c[3])
            self.monitors.pop(key)
            self.aliases.pop(key)  # gen:call's monitor ref is its alias too
        elif kind == "spawn_request":  # {29, ReqId, From, GL, MFA, Opts[, Token]}
            opts = c[5]
            frm = pid_key(c[2])
            self.spawns.add(ref_key(c[1]), (frm, _LINK in opts))
            if _MONITOR in opts:
                self.monitors.add(ref_key(c[1]), frm)  # the DOWN carries the request id
            self._expose(c[3])
        elif kind == "link":  # {1, TPid, PeerPid}
            self.links.add((pid_key(c[1]), pid_key(c[2])))
        elif kind == "unlink":
            self._unlink(c[1], c[2])
        elif kind == "unlink_id":  # {35, Id, TPid, PeerPid}
            self.unlinks.add((c[1], pid_key(c[2]), pid_key(c[3])))
        elif kind == "unlink_id_ack":  # T acks the peer's unlink: the link is gone
            self._unlink(c[3], c[2])
        elif kind == "exit":  # T's linked process died: the link is gone
            self._unlink(c[1], c[2])
        elif kind == "monitor_exit":  # DOWN to a peer monitor: it is gone
            self.peer_monitors.pop(ref_key(c[3]))
        sender = message.sender
        if type(sender) is Pid:
            self._expose(sender)
        if message.payload_offset is not None:
            self._scan_payload(message)

    def _unlink(self, trusted_pid: Any, peer_pid: Any) -> None:
        key = (pid_key(trusted_pid), pid_key(peer_pid))
        self.links.pop(key)
        self.peer_links.pop(key)

    def _expose(self, pid: Any) -> None:
        if type(pid) is Pid and pid.node == self._trusted_atom:
            self.exposed.add(pid_key(pid))

    def _scan_payload(self, message: Any) -> None:
        frame = message.frame
        offset = message.payload_offset
        if len(frame) - offset <= PAYLOAD_SCAN_WINDOW and type(frame) is bytes:
            raw, start = frame, offset
        else:  # a window: the aliases and pids of a big message sit before its bulk
            raw, start = bytes(frame[offset:offset + PAYLOAD_SCAN_WINDOW]), 0
        self._scan_aliases(raw, start)
        prefix = self._pid_prefix
        if not prefix:
            return
        pos = raw.find(prefix, start)
        hits = 0
        node = self.trusted_node
        size = len(raw)
        while pos >= 0 and hits < MAX_SCAN_HITS:
            hits += 1
            at = pos + len(prefix)
            if at + _PID_WORDS.size <= size:
                pid, serial, creation = _PID_WORDS.unpack_from(raw, at)
                self.exposed.add((node, pid, serial, creation))
            pos = raw.find(prefix, at)

    def _scan_aliases(self, raw: bytes, start: int) -> None:
        """Aliases of T's node in ``[alias | Ref]`` lists, read straight from the bytes
        (NEWER_REFERENCE_EXT: u16 words, the node atom, u32 creation, the words)."""
        node_atom = self._node_atom
        if not node_atom:
            return
        node = self.trusted_node
        size = len(raw)
        pos = raw.find(_ALIAS_TEXT, start)
        hits = 0
        while pos >= 0 and hits < MAX_SCAN_HITS:
            hits += 1
            tail = pos + len(_ALIAS_TEXT)
            head = pos - _SHORT_HEAD
            if head >= start and (raw[head:pos] in _ALIAS_HEADS or raw[head - 1:pos] in _ALIAS_HEADS):
                if (tail + 3 <= size and raw[tail] == _NEWER_REFERENCE_EXT
                        and raw.startswith(node_atom, tail + 3)):
                    words = _REF_WORDS.get(_U16.unpack_from(raw, tail + 1)[0])
                    at = tail + 3 + len(node_atom)
                    if words is not None and at + words.size <= size:
                        creation, *ids = words.unpack_from(raw, at)
                        self.aliases.add((node, creation, tuple(ids)))
            pos = raw.find(_ALIAS_TEXT, tail)

    # -- from_peer: the peer answers -----------------------------------------------------
    def is_reply(self, message: Any) -> bool:
        """Whether a from_peer frame answers something T asked for (see REPLY_KINDS)."""
        kind = message.kind
        c = message.control
        if kind == "alias_send":  # {33, From, Alias}
            return ref_key(c[2]) in self.aliases
        if kind == "monitor_exit":  # {28, PeerProc, TPid, Ref}
            return self.monitors.get(ref_key(c[3])) == pid_key(c[2])
        if kind == "exit":  # {24, PeerPid, TPid}
            return (pid_key(c[2]), pid_key(c[1])) in self.links
        if kind in ("unlink", "unlink_id"):
            frm, to = (c[1], c[2]) if kind == "unlink" else (c[2], c[3])
            return (pid_key(to), pid_key(frm)) in self.links
        if kind == "unlink_id_ack":  # {36, Id, PeerPid, TPid}
            return (c[1], pid_key(c[3]), pid_key(c[2])) in self.unlinks
        if kind == "spawn_reply":  # {31, ReqId, TPid, Flags, Result}
            pending = self.spawns.get(ref_key(c[1]))
            return pending is not None and pending[0] == pid_key(c[2])
        if kind == "send":
            return pid_key(message.target) in self.exposed
        if kind == "demonitor":
            return ref_key(c[3]) in self.peer_monitors
        return False

    def record_from_peer(self, message: Any) -> None:
        """Retire (or create) state for a from_peer frame that is being forwarded."""
        kind = message.kind
        c = message.control
        if kind == "alias_send":
            self.aliases.pop(ref_key(c[2]))
        elif kind == "monitor_exit":
            key = ref_key(c[3])
            if self.monitors.get(key) == pid_key(c[2]):
                self.monitors.pop(key)
                self.aliases.pop(key)
        elif kind == "spawn_reply":  # {31, ReqId, TPid, Flags, Result}
            key = ref_key(c[1])
            pending = self.spawns.pop(key)
            result = c[4]
            if type(result) is not Pid:
                self.monitors.pop(key)  # the spawn failed: no monitor, no DOWN
            elif pending is not None and c[3] & SPAWN_REPLY_LINK:
                self.links.add((pid_key(c[2]), pid_key(result)))
        elif kind == "exit":
            self._unlink(c[2], c[1])
        elif kind == "unlink_id_ack":
            if self.unlinks.pop((c[1], pid_key(c[3]), pid_key(c[2]))) is not None:
                self._unlink(c[3], c[2])
        elif kind == "unlink":
            self._unlink(c[2], c[1])
        elif kind == "link":  # a peer link the policy accepted: exits on it are legitimate
            key = (pid_key(c[2]), pid_key(c[1]))
            self.links.add(key)
            self.peer_links.add(key)
        elif kind == "monitor":  # {19, PeerPid, TProc, Ref}
            self.peer_monitors.add(ref_key(c[3]), True)
        elif kind == "demonitor":
            self.peer_monitors.pop(ref_key(c[3]))

    # -- introspection -------------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        return {t.name: len(t) for t in (self.aliases, self.monitors, self.spawns, self.links,
                                         self.unlinks, self.exposed, self.peer_monitors,
                                         self.peer_links)}
