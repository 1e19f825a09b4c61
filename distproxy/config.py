"""The ``distproxy run`` configuration file.

One YAML file names the trusted node, the EPMDs distproxy serves or registers in, where
the listeners are, and every peer with its own cookie and policy file. Every error names
the file, the line and the key, and the proxy does not start on a bad file.

The key reference below (``KEYS``) is the single source for ``distproxy run --help``.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from distproxy.yamlsource import Marked, SourceError, load_marked

DEFAULT_HANDSHAKE_TIMEOUT = 7.0  # seconds per step, like OTP's net_setuptime
MAX_HANDSHAKE_TIMEOUT = 120.0  # OTP caps net_setuptime at 120 s
DEFAULT_MAX_FRAME_BYTES = 128 * 1024 * 1024
MIN_FRAME_BYTES = 64 * 1024
MAX_FRAME_BYTES_LIMIT = 2**32 - 1
DEFAULT_EPMD_PORT = 4369
LOOPBACK = "127.0.0.1"
MAX_COOKIE_BYTES = 255  # cookies are atoms
# Handshake flood limits, per listener and source address (a refused connection is
# closed at once, before it costs the trusted node anything).
DEFAULT_MAX_PENDING_HANDSHAKES = 64
DEFAULT_HANDSHAKE_RATE = 50.0  # new connections per second
DEFAULT_HANDSHAKE_BURST = 100
MAX_HANDSHAKE_SETTING = 1_000_000

# (key path, meaning) — printed by `distproxy run --help`.
KEYS: tuple[tuple[str, str], ...] = (
    ("trusted.name", "full node name of the protected node, e.g. my_desktop@10.0.0.1 (required)"),
    ("trusted.cookie | trusted.cookie_file", "its cookie, inline or in a file (relative to the config); exactly one"),
    ("trusted.address", "host distproxy dials to reach it (default 127.0.0.1: the trusted node listens on loopback)"),
    ("trusted.port", "its fixed distribution port (default: ask trusted.epmd)"),
    ("trusted.epmd", "HOST:PORT of the EPMD it registers in (default: back_epmd.serve)"),
    ("listen", "HOST:PORT where peers reach distproxy posing as the trusted node (default 0.0.0.0:0, any port)"),
    ("front_epmd.serve", "HOST:PORT of an EPMD distproxy serves for the peers (names the trusted node only)"),
    ("front_epmd.register_in", "HOST:PORT of an existing EPMD to register the trusted node's name in instead"),
    ("back_epmd.serve", "HOST:PORT of an EPMD distproxy serves for the trusted node: it registers there and finds the peers (as distproxy) there"),
    ("back_epmd.register_in", "HOST:PORT of an existing EPMD (the trusted node's) to register the peers' names in instead"),
    ("back_address", "address of the per-peer listeners the trusted node dials (default 127.0.0.1)"),
    ("handshake_timeout", f"seconds allowed per handshake step (default {DEFAULT_HANDSHAKE_TIMEOUT:g}, like net_setuptime)"),
    ("max_frame_bytes", f"largest distribution frame accepted (default {DEFAULT_MAX_FRAME_BYTES}); larger closes the connection"),
    ("max_pending_handshakes", f"connections per listener and source address still in their handshake "
                               f"(default {DEFAULT_MAX_PENDING_HANDSHAKES}); more are closed at once"),
    ("handshake_rate", f"new connections per second per listener and source address (default "
                       f"{DEFAULT_HANDSHAKE_RATE:g}; token bucket); more are closed at once"),
    ("handshake_burst", f"connections accepted at once before handshake_rate applies (default {DEFAULT_HANDSHAKE_BURST})"),
    ("decision_log", "JSON-lines decision log (default: var/decisions.jsonl next to the config)"),
    ("stats_file", "counters snapshot read by `distproxy stats` (default: var/stats.json next to the config)"),
    ("peers[].name", "full node name of an untrusted peer (required, unique)"),
    ("peers[].cookie | peers[].cookie_file", "the cookie of that peer's leg only; never the trusted node's"),
    ("peers[].policy", "policy file for this peer (required; see `distproxy check --help`)"),
    ("peers[].address", "host distproxy dials to reach the peer (default: the host part of its name)"),
    ("peers[].port", "the peer's fixed distribution port (default: ask peers[].epmd)"),
    ("peers[].epmd", "HOST:PORT of the peer's EPMD (default: ADDRESS:4369; for a peer on this host's "
                     "loopback, the front EPMD, where such peers register)"),
    ("peers[].listen_port", "port of the listener the trusted node dials for this peer (default 0, any)"),
    ("peers[].hidden", "true: clear DFLAG_PUBLISHED on this pair, so the connection is hidden (no global/rex sync)"),
    ("tls.cert", "PEM certificate (chain) distproxy presents to TLS nodes: as the trusted node to peers dialling it, as the client when dialling them"),
    ("tls.key", "PEM private key of tls.cert (unencrypted; chmod 600)"),
    ("peers[].tls.ca", "PEM CA bundle that must have signed this peer's certificate; the peer then connects and is dialled over TLS only"),
    ("peers[].tls.pin_sha256", "SHA-256 fingerprint (hex, colons allowed) of the peer's certificate, or a list; with ca, both must hold"),
    ("peers[].tls.names", "with ca: names accepted as the certificate's CN or a DNS/IP SAN (default: the peer's node name); a name binds one peer only"),
    ("trusted.tls.ca | .pin_sha256 | .names", "the same for the trusted node: distproxy then dials it over TLS and the back listeners accept TLS only"),
    ("metrics", "HOST:PORT of a Prometheus /metrics endpoint (default: none, off)"),
)


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EpmdSpec:
    """Either an EPMD distproxy serves itself, or an existing one it registers in."""

    serve: HostPort | None
    register_in: HostPort | None


@dataclass(frozen=True)
class NodeLocation:
    """How distproxy reaches a real node: a fixed port, or a lookup in an EPMD."""

    address: str
    port: int | None
    epmd: HostPort | None


@dataclass(frozen=True)
class TlsTrust:
    """How a node's TLS certificate is verified and bound to that node's name.

    With ``ca``, the chain must verify against that bundle *and* the certificate must
    carry one of ``names``; with ``pins``, its SHA-256 must be one of them; with both,
    both hold. The binding is what stops one peer's certificate opening another's leg.
    """

    ca: Path | None
    pins: frozenset[str]  # lower-case hex, no colons
    names: tuple[str, ...]


@dataclass(frozen=True)
class TlsOwn:
    """distproxy's own certificate and key towards TLS nodes."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TrustedConfig:
    name: str
    cookie: bytes
    location: NodeLocation
    tls: TlsTrust | None = None

    @property
    def alive(self) -> str:
        return self.name.split("@", 1)[0]


@dataclass(frozen=True)
class PeerConfig:
    name: str
    cookie: bytes
    policy: Path
    location: NodeLocation
    listen_port: int
    hidden: bool
    tls: TlsTrust | None = None

    @property
    def alive(self) -> str:
        return self.name.split("@", 1)[0]


@dataclass(frozen=True)
class ProxyConfig:
    path: Path
    trusted: TrustedConfig
    peers: tuple[PeerConfig, ...]
    listen: HostPort
    front_epmd: EpmdSpec
    back_epmd: EpmdSpec
    back_address: str
    handshake_timeout: float
    max_frame_bytes: int
    decision_log: Path
    stats_file: Path
    tls: TlsOwn | None = None
    metrics: HostPort | None = None
    max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES
    handshake_rate: float = DEFAULT_HANDSHAKE_RATE
    handshake_burst: int = DEFAULT_HANDSHAKE_BURST

    def peer(self, name: str) -> PeerConfig | None:
        for peer in self.peers:
            if peer.name == name:
                return peer
        return None


class ConfigError(SourceError):
    """A bad ``distproxy run`` configuration."""


class _Reader:
    """Typed access to a marked mapping, raising ConfigError with file, line and key."""

    def __init__(self, path: Path, node: Marked, prefix: str) -> None:
        self.path = path
        self.node = node
        self.prefix = prefix
        if not isinstance(node.value, dict):
            raise ConfigError(path, node.line, prefix or "(top level)", "expected a mapping of keys")
        self.items: dict[str, Marked] = node.value

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, cause: str, node: Marked | None = None) -> ConfigError:
        line = (node or self.items.get(name) or self.node).line
        return ConfigError(self.path, line, self.key(name), cause)

    def check_known(self, known: set[str]) -> None:
        for name, node in self.items.items():
            if name not in known:
                hint = ", ".join(sorted(known))
                raise ConfigError(self.path, node.line, self.key(name), f"unknown key (known keys: {hint})")

    def get(self, name: str) -> Marked | None:
        return self.items.get(name)

    def string(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        node = self.items.get(name)
        if node is None:
            if required:
                raise self.fail(name, "required key is missing")
            return default
        if not isinstance(node.value, str) or not node.value:
            raise self.fail(name, f"expected a non-empty string, got {node.value!r}")
        return node.value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        node = self.items.get(name)
        if node is None:
            return default
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            raise self.fail(name, f"expected an integer, got {node.value!r}")
        if not low <= node.value <= high:
            raise self.fail(name, f"{node.value} is out of range ({low}..{high})")
        return int(node.value)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        node = self.items.get(name)
        if node is None:
            return default
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise self.fail(name, f"expected a number of seconds, got {node.value!r}")
        if not low < node.value <= high:
            raise self.fail(name, f"{node.value} is out of range (more than {low:g}, at most {high:g})")
        return float(node.value)

    def boolean(self, name: str, default: bool) -> bool:
        node = self.items.get(name)
        if node is None:
            return default
        if not isinstance(node.value, bool):
            raise self.fail(name, f"expected true or false, got {node.value!r}")
        return node.value

    def host_port(self, name: str, default: HostPort | None = None, allow_any_port: bool = False) -> HostPort | None:
        node = self.items.get(name)
        if node is None:
            return default
        return parse_host_port(node, self.path, self.key(name), allow_any_port)

    def mapping(self, name: str) -> "_Reader | None":
        node = self.items.get(name)
        return None if node is None else _Reader(self.path, node, self.key(name))

    def file_path(self, name: str, default: Path | None = None, required: bool = False) -> Path | None:
        text = self.string(name, required=required)
        if text is None:
            return default
        return (self.path.parent / text).resolve()


def parse_host_port(node: Marked, path: Path, key: str, allow_any_port: bool = False) -> HostPort:
    text = node.value
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(path, node.line, key, f"expected HOST:PORT, got {text!r}")
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not host:
        raise ConfigError(path, node.line, key, f"missing host in {text!r}")
    if not port_text.isdigit():
        raise ConfigError(path, node.line, key, f"port must be a number in {text!r}")
    port = int(port_text)
    if not (0 if allow_any_port else 1) <= port <= 65535:
        raise ConfigError(path, node.line, key, f"port {port} is out of range")
    return HostPort(host, port)


def _node_name(reader: _Reader, name: str = "name") -> str:
    value = reader.string(name, required=True)
    assert value is not None
    alive, at, host = value.partition("@")
    if not at or not alive or not host or "@" in host:
        raise reader.fail(name, f"{value!r} is not a full node name like name@host")
    if not all(c.isalnum() or c in "_-" for c in alive) or not alive.isascii():
        raise reader.fail(name, f"the name part of {value!r} may hold only letters, digits, '_' and '-'")
    if not host.isascii() or any(c.isspace() for c in host):
        raise reader.fail(name, f"the host part of {value!r} must be printable ASCII without spaces")
    if len(value) > 255:
        raise reader.fail(name, "node names are atoms: at most 255 characters")
    return value


def _cookie(reader: _Reader) -> bytes:
    inline = reader.get("cookie")
    from_file = reader.get("cookie_file")
    if (inline is None) == (from_file is None):
        raise reader.fail("cookie", "give exactly one of cookie or cookie_file")
    if inline is not None:
        text = reader.string("cookie")
        assert text is not None
        cookie = text.encode("latin-1", errors="strict") if text.isascii() else None
        if cookie is None:
            raise reader.fail("cookie", "a cookie must be ASCII")
        where = "cookie"
    else:
        path = reader.file_path("cookie_file")
        assert path is not None
        try:
            cookie = path.read_bytes().strip()
        except OSError as exc:
            raise reader.fail("cookie_file", f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # OTP refuses a ~/.erlang.cookie readable by others; so do we.
            raise reader.fail("cookie_file", f"{path} is readable by group or others (chmod 600 it)")
        where = "cookie_file"
    if not cookie:
        raise reader.fail(where, "the cookie is empty")
    if len(cookie) > MAX_COOKIE_BYTES or not all(0x21 <= b <= 0x7E for b in cookie):
        raise reader.fail(where, f"a cookie is at most {MAX_COOKIE_BYTES} printable ASCII characters without spaces")
    return cookie


def _epmd(reader: _Reader | None, key: str, path: Path, default_serve: HostPort | None) -> EpmdSpec:
    if reader is None:
        return EpmdSpec(default_serve, None)
    reader.check_known({"serve", "register_in"})
    serve = reader.host_port("serve")
    register_in = reader.host_port("register_in")
    if serve is not None and register_in is not None:
        raise reader.fail("register_in", "give serve or register_in, not both")
    if serve is None and register_in is None:
        raise ConfigError(path, reader.node.line, key, "give serve: HOST:PORT or register_in: HOST:PORT")
    return EpmdSpec(serve, register_in)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _location(reader: _Reader, name: str, default_epmd: HostPort | None, local_only: bool,
              default_address: str | None = None) -> NodeLocation:
    """Where a node is found. ``default_epmd`` applies to every address, or with
    ``local_only`` only to loopback addresses (a remote peer registers on its own host)."""
    address = reader.string("address", default=default_address or name.split("@", 1)[1])
    assert address is not None
    port = reader.integer("port", None, 1, 65535)
    if local_only and not _is_loopback(address):
        default_epmd = None
    epmd = reader.host_port("epmd", default_epmd)
    if port is None and epmd is None:
        epmd = HostPort(address, DEFAULT_EPMD_PORT)
    return NodeLocation(address, port, epmd)


TOP_KEYS = {"trusted", "listen", "front_epmd", "back_epmd", "back_address", "handshake_timeout",
            "max_frame_bytes", "decision_log", "stats_file", "peers", "tls", "metrics",
            "max_pending_handshakes", "handshake_rate", "handshake_burst"}
TRUSTED_KEYS = {"name", "cookie", "cookie_file", "address", "port", "epmd", "tls"}
PEER_KEYS = {"name", "cookie", "cookie_file", "policy", "address", "port", "epmd", "listen_port", "hidden", "tls"}
TLS_OWN_KEYS = {"cert", "key"}
TLS_TRUST_KEYS = {"ca", "pin_sha256", "names"}
SHA256_HEX_DIGITS = 64


def _pem_file(reader: _Reader, name: str, marker: bytes, required: bool = False) -> Path | None:
    """A readable PEM file containing ``marker`` (a cheap check that it is the right kind)."""
    path = reader.file_path(name, required=required)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise reader.fail(name, f"cannot read {path}: {exc.strerror or exc}") from None
    if marker not in data:
        raise reader.fail(name, f"{path} holds no PEM {marker.decode().strip('-').strip()} block")
    return path


def _tls_own(reader: _Reader | None) -> TlsOwn | None:
    if reader is None:
        return None
    reader.check_known(TLS_OWN_KEYS)
    cert = _pem_file(reader, "cert", b"-----BEGIN CERTIFICATE-----", required=True)
    key = _pem_file(reader, "key", b"PRIVATE KEY-----", required=True)
    assert cert is not None and key is not None
    from distproxy.proxy import tls  # pyOpenSSL is imported only when TLS is configured

    try:
        tls.check_key_pair(cert, key)
    except ValueError as exc:
        raise reader.fail("key", str(exc)) from None
    return TlsOwn(cert, key)


def _pins(reader: _Reader) -> frozenset[str]:
    node = reader.get("pin_sha256")
    if node is None:
        return frozenset()
    items: list[Marked] = node.value if isinstance(node.value, list) else [node]
    pins: set[str] = set()
    for item in items:
        digits = item.value.replace(":", "").lower() if isinstance(item.value, str) else ""
        if len(digits) != SHA256_HEX_DIGITS or any(c not in "0123456789abcdef" for c in digits):
            raise reader.fail("pin_sha256", f"expected a SHA-256 fingerprint of {SHA256_HEX_DIGITS} hex digits, "
                              f"got {item.value!r}", item)
        pins.add(digits)
    if not pins:
        raise reader.fail("pin_sha256", "an empty list pins nothing")
    return frozenset(pins)


def _tls_trust(reader: _Reader | None, node_name: str) -> TlsTrust | None:
    if reader is None:
        return None
    reader.check_known(TLS_TRUST_KEYS)
    ca = _pem_file(reader, "ca", b"-----BEGIN CERTIFICATE-----")
    pins = _pins(reader)
    if ca is None and not pins:
        raise ConfigError(reader.path, reader.node.line, reader.prefix, "give ca: FILE, pin_sha256: FINGERPRINT, or both")
    names_node = reader.get("names")
    names: tuple[str, ...] = (node_name,)
    if names_node is not None:
        values = names_node.value if isinstance(names_node.value, list) else None
        if not values or not all(isinstance(v.value, str) and v.value for v in values):
            raise reader.fail("names", "expected a list of names (node names, host names or IP addresses)")
        names = tuple(v.value for v in values)
    return TlsTrust(ca, pins, names)


def _check_tls_bindings(root: _Reader, own: TlsOwn | None, trusted: TrustedConfig,
                        peers: list[PeerConfig]) -> None:
    """TLS nodes need distproxy's own certificate, and no certificate name or pin may
    stand for two peers: otherwise one peer's certificate would open another's leg."""
    peers_node = root.get("peers")
    assert peers_node is not None
    owners: dict[str, str] = {}
    for index, peer in enumerate(peers):
        if peer.tls is None:
            continue
        reader = _Reader(root.path, peers_node.value[index], f"peers[{index}]")
        if own is None:
            raise reader.fail("tls", "a TLS peer needs distproxy's own certificate: set the top-level tls.cert and tls.key")
        claims = [f"pin {p[:16]}..." for p in peer.tls.pins]
        if peer.tls.ca is not None:
            claims += [f"name {n!r}" for n in peer.tls.names]
        for claim in claims:
            if claim in owners:
                raise reader.fail("tls", f"{claim} already identifies {owners[claim]}: a certificate must bind to one peer")
            owners[claim] = peer.name
    if trusted.tls is not None and own is None:
        raise root.fail("trusted", "trusted.tls needs distproxy's own certificate: set the top-level tls.cert and tls.key")


def load_config(path: Path | str, text: str | None = None) -> ProxyConfig:
    """Read and validate a configuration file; raises ConfigError naming file, line and key."""
    path = Path(path).resolve() if text is None else Path(path)
    try:
        root = _Reader(path, load_marked(path, text), "")
    except ConfigError:
        raise
    except SourceError as exc:
        raise ConfigError(exc.path, exc.line, exc.where, exc.cause) from None
    root.check_known(TOP_KEYS)

    front_epmd = _epmd(root.mapping("front_epmd"), "front_epmd", path, None)
    back_epmd = _epmd(root.mapping("back_epmd"), "back_epmd", path, None)
    if front_epmd.serve is None and front_epmd.register_in is None:
        raise root.fail("front_epmd", "required: where peers look the trusted node up (serve or register_in)")
    if back_epmd.serve is None and back_epmd.register_in is None:
        raise root.fail("back_epmd", "required: where the trusted node looks peers up (serve or register_in)")
    if front_epmd.serve is not None and front_epmd.serve == back_epmd.serve:
        raise root.fail("back_epmd", "the front and back EPMDs must be different addresses")

    trusted_reader = root.mapping("trusted")
    if trusted_reader is None:
        raise root.fail("trusted", "required key is missing")
    trusted_reader.check_known(TRUSTED_KEYS)
    trusted_name = _node_name(trusted_reader)
    trusted = TrustedConfig(
        name=trusted_name,
        cookie=_cookie(trusted_reader),
        tls=_tls_trust(trusted_reader.mapping("tls"), trusted_name),
        location=_location(trusted_reader, trusted_name, back_epmd.serve or back_epmd.register_in,
                           local_only=False, default_address=LOOPBACK),
    )

    tls_own = _tls_own(root.mapping("tls"))
    peers_node = root.get("peers")
    if peers_node is None or not isinstance(peers_node.value, list) or not peers_node.value:
        raise root.fail("peers", "required: a list of at least one peer")
    peers: list[PeerConfig] = []
    seen: dict[str, int] = {trusted.alive: trusted_reader.node.line}
    for index, item in enumerate(peers_node.value):
        reader = _Reader(path, item, f"peers[{index}]")
        reader.check_known(PEER_KEYS)
        name = _node_name(reader)
        alive = name.split("@", 1)[0]
        if alive in seen:
            raise reader.fail("name", f"the name {alive!r} is already used on line {seen[alive]}")
        seen[alive] = item.line
        cookie = _cookie(reader)
        if cookie == trusted.cookie:
            raise reader.fail("cookie", "a peer must not share the trusted node's cookie: that is what distproxy splits")
        policy = reader.file_path("policy", required=True)
        assert policy is not None
        if not policy.is_file():
            raise reader.fail("policy", f"no such file: {policy}")
        peers.append(PeerConfig(
            name=name,
            cookie=cookie,
            policy=policy,
            location=_location(reader, name, front_epmd.serve or front_epmd.register_in, local_only=True),
            listen_port=reader.integer("listen_port", 0, 0, 65535) or 0,
            hidden=reader.boolean("hidden", False),
            tls=_tls_trust(reader.mapping("tls"), name),
        ))
    _check_tls_bindings(root, tls_own, trusted, peers)

    listen = root.host_port("listen", HostPort("0.0.0.0", 0), allow_any_port=True)
    assert listen is not None
    var = path.parent / "var"
    return ProxyConfig(
        path=path,
        trusted=trusted,
        peers=tuple(peers),
        listen=listen,
        front_epmd=front_epmd,
        back_epmd=back_epmd,
        back_address=root.string("back_address", "127.0.0.1") or "127.0.0.1",
        handshake_timeout=root.number("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT, 0, MAX_HANDSHAKE_TIMEOUT),
        max_frame_bytes=root.integer("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES, MIN_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT)
        or DEFAULT_MAX_FRAME_BYTES,
        decision_log=root.file_path("decision_log", var / "decisions.jsonl") or var / "decisions.jsonl",
        stats_file=root.file_path("stats_file", var / "stats.json") or var / "stats.json",
        tls=tls_own,
        metrics=root.host_port("metrics", allow_any_port=True),
        max_pending_handshakes=root.integer("max_pending_handshakes", DEFAULT_MAX_PENDING_HANDSHAKES, 1,
                                            MAX_HANDSHAKE_SETTING) or DEFAULT_MAX_PENDING_HANDSHAKES,
        handshake_rate=root.number("handshake_rate", DEFAULT_HANDSHAKE_RATE, 0, MAX_HANDSHAKE_SETTING),
        handshake_burst=root.integer("handshake_burst", DEFAULT_HANDSHAKE_BURST, 1, MAX_HANDSHAKE_SETTING)
        or DEFAULT_HANDSHAKE_BURST,
    )


def describe_keys() -> str:
    width = max(len(key) for key, _ in KEYS)
    return "\n".join(f"  {key.ljust(width)}  {meaning}" for key, meaning in KEYS)

