"""Start real ``erl`` nodes and drive them from Python.

Used by the integration tests, the benchmark and ``distproxy demo``. Each node runs
``dp_agent`` (see ``erlang_fixtures/dp_agent.erl``), which reads Erlang expressions from a
private pipe (file descriptors 3 and 4 in the child) and answers with ``term_to_binary``
of the result, decoded here with distproxy's own codec. The node's stdout and stderr go to
a log file so a failing test can show what the node said.

Nothing here sleeps to synchronise: every wait is a bounded read of an answer.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distproxy.term import Atom, decode

AGENT_READ_FD = 3
AGENT_WRITE_FD = 4
PACKET_HEADER = struct.Struct(">I")
REQUEST_HEADER = struct.Struct(">II")
DEFAULT_EVAL_TIMEOUT = 30.0
NODE_START_TIMEOUT = 30.0
FIXTURE_MODULES = ("dp_agent", "dp_test_server", "distproxy_epmd", "dp_bench")


class ErlangNotFound(RuntimeError):
    """``erl`` is not installed: the message says how to install it."""


class NodeError(RuntimeError):
    """The node could not be started, died, or did not answer in time."""


class EvalError(RuntimeError):
    """The expression raised inside the node; ``text`` is the node's formatted error."""

    def __init__(self, expr: str, cls: Any, reason: Any, text: str) -> None:
        super().__init__(f"{expr!r} raised {text}")
        self.expr = expr
        self.cls = cls
        self.reason = reason
        self.text = text


def find_erl() -> str:
    erl = shutil.which("erl")
    if erl is None:
        raise ErlangNotFound(
            "erl is not on PATH: install Erlang/OTP 25 or newer "
            "(Debian: apt-get install erlang-nox); scripts/test does this when run as root"
        )
    return erl


def fixture_dir() -> Path:
    """The Erlang sources: installed as ``distproxy.erlang_fixtures``, or a clone's
    top-level ``erlang_fixtures/`` when running from a checkout without installing."""
    try:
        return Path(str(importlib.resources.files("distproxy.erlang_fixtures")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "erlang_fixtures"


def fixture_sources() -> list[Path]:
    root = fixture_dir()
    return [root / f"{name}.erl" for name in FIXTURE_MODULES]


def compiled_fixtures() -> Path:
    """Compile the Erlang fixtures once per source revision into a cache directory."""
    sources = fixture_sources()
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.read_bytes())
    erlc = shutil.which("erlc")
    if erlc is None:
        raise ErlangNotFound("erlc is not on PATH: install erlang-nox (Debian) or Erlang/OTP")
    base = Path(os.environ.get("DISTPROXY_CACHE", Path(tempfile.gettempdir()) / "distproxy-beam"))
    out = base / digest.hexdigest()[:16]
    if all((out / f"{src.stem}.beam").exists() for src in sources):
        return out
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent))
    result = subprocess.run(
        [erlc, "-o", str(staging), *map(str, sources)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise NodeError(f"erlc failed: {result.stdout}{result.stderr}")
    for beam in staging.iterdir():
        os.replace(beam, out / beam.name)
    staging.rmdir()
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def otp_release() -> int:
    erl = find_erl()
    out = subprocess.run(
        [erl, "-noshell", "-eval", 'io:format("~s", [erlang:system_info(otp_release)]), halt().'],
        capture_output=True, text=True, timeout=60,
    )
    return int(out.stdout.strip())


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


@dataclass
class ErlNode:
    """One real BEAM node with the control agent loaded.

    ``name`` is the full node name (``a@127.0.0.1``) or None for a node without
    distribution. ``epmd_port`` sets ``ERL_EPMD_PORT`` for registration and lookups.
    """

    name: str | None
    cookie: str = "dp_cookie"
    epmd_port: int | None = None
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    loopback_only: bool = True
    command_prefix: Sequence[str] = ()  # e.g. ("ip", "netns", "exec", NS): run erl through it

    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    log_path: Path | None = field(default=None, init=False)
    _to_node: int = field(default=-1, init=False, repr=False)
    _from_node: int = field(default=-1, init=False, repr=False)
    _next_id: int = field(default=1, init=False, repr=False)
    _results: dict[int, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def short_name(self) -> str:
        assert self.name is not None
        return self.name.split("@", 1)[0]

    @property
    def atom(self) -> Atom:
        assert self.name is not None
        return Atom(self.name)

    def command(self, beam_dir: Path) -> list[str]:
        cmd = [*self.command_prefix, find_erl(), "-noshell", "-pa", str(beam_dir)]
        if self.name is not None:
            cmd += ["-name", self.name, "-setcookie", self.cookie, "-start_epmd", "false"]
            if self.loopback_only:
                cmd += ["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]
        cmd += list(self.extra_args)
        cmd += ["-s", "dp_agent", "start"]
        return cmd

    def start(self, timeout: float = NODE_START_TIMEOUT) -> "ErlNode":
        beam_dir = compiled_fixtures()
        log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="distproxy-node-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{(self.name or 'nodist').replace('@', '_at_')}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERL_")}
        env.update(self.env)
        if self.epmd_port is not None:
            env["ERL_EPMD_PORT"] = str(self.epmd_port)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()

        def wire_agent_fds() -> None:
            # Move both ends out of the way before placing them at 3 and 4, so that
            # neither dup2 clobbers the other.
            high_r = os.dup(req_r)
            high_w = os.dup(rep_w)
            os.dup2(high_r, AGENT_READ_FD)
            os.dup2(high_w, AGENT_WRITE_FD)
            os.setsid()

        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command(beam_dir), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, preexec_fn=wire_agent_fds,
                # 3 and 4 are made by dup2 in the child before the close-fds step runs;
                # listing them keeps them open across exec.
                pass_fds=(AGENT_READ_FD, AGENT_WRITE_FD), close_fds=True,
            )
        finally:
            log.close()
            os.close(req_r)
            os.close(rep_w)
        self._to_node = req_w
        self._from_node = rep_r
        try:
            self.eval("ok.", timeout=timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _send(self, expr: str, data: bytes) -> int:
        if self.process is None or self.process.poll() is not None:
            raise NodeError(f"node {self.name} is not running; log: {self.log_tail()}")
        request_id = self._next_id
        self._next_id += 1
        body = expr.encode()
        packet = REQUEST_HEADER.pack(request_id, len(body)) + body + data
        os.write(self._to_node, PACKET_HEADER.pack(len(packet)) + packet)
        return request_id

    def eval(self, expr: str, data: bytes = b"", timeout: float = DEFAULT_EVAL_TIMEOUT) -> Any:
        """Evaluate Erlang ``expr`` (ending in ``.``) on the node; ``Bin`` is bound to ``data``."""
        return self.result(self.submit(expr, data), timeout, expr)

    def submit(self, expr: str, data: bytes = b"") -> int:
        """Start evaluating ``expr`` without waiting; pass the id to :meth:`result`."""
        return self._send(expr, data)

    def result(self, request_id: int, timeout: float = DEFAULT_EVAL_TIMEOUT, expr: str = "") -> Any:
        """Wait (bounded) for the answer to a :meth:`submit`; raises EvalError if it raised."""
        deadline = time.monotonic() + timeout
        while request_id not in self._results:
            try:
                (size,) = PACKET_HEADER.unpack(_read_exact(self._from_node, PACKET_HEADER.size, deadline))
                got_id, result = decode(_read_exact(self._from_node, size, deadline))
            except TimeoutError:
                raise NodeError(f"{self.name}: no answer to {expr or request_id!r} within {timeout}s") from None
            except EOFError:
                raise NodeError(f"{self.name} died during {expr or request_id!r}; log: {self.log_tail()}") from None
            self._results[got_id] = result
        result = self._results.pop(request_id)
        if result[0] == Atom("ok"):
            return result[1]
        _, cls, reason, text = result
        raise EvalError(expr, cls, reason, text.decode(errors="replace"))

    def call(self, module: str, function: str, *args_source: str, timeout: float = DEFAULT_EVAL_TIMEOUT) -> Any:
        """``module:function(Args...)`` with the arguments given as Erlang source text."""
        return self.eval(f"{module}:{function}({', '.join(args_source)}).", timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Halt the node (closing its agent pipe ends it; then SIGKILL if it lingers)."""
        for fd in (self._to_node, self._from_node):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_node = self._from_node = -1
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=timeout)

    def __enter__(self) -> "ErlNode":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_nodes(nodes: Iterable[ErlNode]) -> list[ErlNode]:
    started: list[ErlNode] = []
    try:
        for node in nodes:
            started.append(node.start())
    except Exception:
        for node in started:
            node.stop()
        raise
    return started
