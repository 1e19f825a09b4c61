"""Fixtures for the term codec tests: one long-lived real BEAM per session.

The BEAM runs tests/term/etf_agent.erl, which talks {packet,4} over file descriptors 3
(requests) and 4 (replies), keeping stdout/stderr free for the io system. Every read is
bounded by a timeout; the process is killed at session end. If ``erl``/``erlc`` are missing,
tests that need them fail with a clear message (CI installs erlang-nox), never skip.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from distproxy.term import decoder

HERE = Path(__file__).resolve().parent
AGENT_SRC = HERE / "etf_agent.erl"
READ_TIMEOUT = 30.0


@pytest.fixture(autouse=True, scope="session")
def _no_safety_net() -> Iterator[None]:
    """Let codec bugs surface as themselves instead of as a generic DecodeError."""
    saved = decoder.SAFETY_NET
    decoder.SAFETY_NET = False
    yield
    decoder.SAFETY_NET = saved


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class ErlAgent:
    """Client side of etf_agent: send a request frame, read one reply frame."""

    def __init__(self) -> None:
        erl, erlc = shutil.which("erl"), shutil.which("erlc")
        if not erl or not erlc:
            pytest.fail("erl/erlc not found on PATH: the differential term tests need a real "
                        "BEAM (install erlang-nox)", pytrace=False)
        self._dir = tempfile.TemporaryDirectory(prefix="etf_agent_")
        subprocess.run([erlc, "-o", self._dir.name, str(AGENT_SRC)], check=True, timeout=120)
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        # Move the child's ends above 9 so dup2 onto 3 and 4 cannot clobber them.
        req_r, rep_w = (_high_fd(req_r), _high_fd(rep_w))
        self._log = open(Path(self._dir.name) / "erl.log", "wb")
        def map_fds() -> None:  # in the child, before exec: our pipe ends become fds 3, 4
            os.dup2(req_r, 3)
            os.dup2(rep_w, 4)

        self.proc = subprocess.Popen(
            [erl, "-noshell", "-noinput", "-pa", self._dir.name, "-s", "etf_agent", "main"],
            preexec_fn=map_fds, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT)
        os.close(req_r)
        os.close(rep_w)
        reply = self.request(b"R" + bytes([131, 97, 1]))  # liveness check
        assert reply == b"\x00\x83a\x01", reply

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            ready, _, _ = select.select([self._rep_r], [], [], READ_TIMEOUT)
            if not ready:
                raise TimeoutError(f"erl agent did not answer within {READ_TIMEOUT}s; "
                                   f"log: {self.log_text()}")
            chunk = os.read(self._rep_r, min(n, 1 << 20))
            if not chunk:
                raise EOFError(f"erl agent exited; log: {self.log_text()}")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def log_text(self) -> str:
        self._log.flush()
        return (Path(self._dir.name) / "erl.log").read_text(errors="replace")[-2000:]

    def request(self, payload: bytes) -> bytes:
        data = struct.pack(">I", len(payload)) + payload
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [self._req_w], [], READ_TIMEOUT)
            if not ready:
                raise TimeoutError("erl agent does not accept requests")
            view = view[os.write(self._req_w, view):]
        (length,) = struct.unpack(">I", self._read_exact(4))
        return self._read_exact(length)

    def roundtrip(self, data: bytes) -> bytes | None:
        """term_to_binary(binary_to_term(data)) on the node, or None if it refuses."""
        reply = self.request(b"R" + data)
        return reply[1:] if reply[0] == 0 else None

    def _frames(self, reply: bytes) -> list[bytes]:
        out, pos = [], 0
        while pos < len(reply):
            (length,) = struct.unpack_from(">I", reply, pos)
            out.append(reply[pos + 4:pos + 4 + length])
            pos += 4 + length
        return out

    def generate(self, n: int, seed: int) -> list[bytes]:
        """``n`` random node-minted terms (term_to_binary bytes)."""
        return self._frames(self.request(b"G" + struct.pack(">II", n, seed)))

    def control_corpus(self, n: int, seed: int) -> list[bytes]:
        """``n`` realistic (control, payload) pairs, flattened, as term_to_binary bytes."""
        return self._frames(self.request(b"C" + struct.pack(">II", n, seed)))

    def close(self) -> None:
        try:
            os.close(self._req_w)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        os.close(self._rep_r)
        self._log.close()
        self._dir.cleanup()


@pytest.fixture(scope="session")
def erl_agent() -> Iterator[ErlAgent]:
    agent = ErlAgent()
    try:
        yield agent
    finally:
        agent.close()
