"""`distproxy demo`: README's first command, run as a newcomer would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.erlang


def processes_using(path: Path) -> list[int]:
    """Pids of processes with a file open under ``path`` (their logs, config, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(t.startswith(str(path)) for t in targets):
            found.append(int(entry.name))
    return found


def test_demo_prints_the_table_and_leaves_nothing_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "distproxy", "demo", "--workdir", str(workdir)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "every verdict matched the policy" in out
    for expected in ("baseline:no-spawn", "gateway-refused", "baseline:internal-names", "baseline:no-exit2",
                     "my_desktop -> ec2_node", "bob_colo -> my_desktop", "to_peer", "from_peer"):
        assert expected in out, expected
    assert "NO" not in [line.split()[-1] for line in out.splitlines() if line[:2].strip().isdigit()]
    assert (workdir / "var" / "decisions.jsonl").read_text().strip()
    assert processes_using(workdir) == []


def test_stats_reads_the_counters_the_demo_left(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "distproxy", "demo", "--workdir", str(workdir)],
                   capture_output=True, text=True, timeout=180, check=True)
    result = subprocess.run([sys.executable, "-m", "distproxy", "stats", "--config", str(workdir / "distproxy.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    spawn_rows = [r for r in rows if r[:3] == ["ec2_node@127.0.0.1", "from_peer", "spawn_request"]]
    assert spawn_rows and int(spawn_rows[0][5]) >= 1  # the refused rpc:call, counted as reject


def test_demo_keep_serves_metrics_that_show_its_traffic(tmp_path: Path) -> None:
    import select
    import signal
    import time
    import urllib.request

    from distproxy.testing.erlnode import free_port

    address = f"127.0.0.1:{free_port()}"
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "distproxy", "demo", "--keep", "--metrics", address,
                             "--workdir", str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()  # raw reads: select() cannot see a file object's buffer
        deadline = time.monotonic() + 120
        output = ""
        while "Press Ctrl-C" not in output:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            assert ready, f"the demo did not reach --keep:\n{output}"
            chunk = os.read(fd, 65536)
            assert chunk, f"the demo exited early:\n{output}"
            output += chunk.decode()
        assert "every verdict matched the policy" in output
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
        refused = [line for line in text.splitlines() if line.startswith("distproxy_frames_total{")
                   and 'peer="ec2_node@127.0.0.1"' in line and 'op="spawn_request"' in line
                   and 'verdict="reject"' in line]
        assert refused and float(refused[0].rsplit(" ", 1)[1]) >= 1, text[:2000]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert processes_using(workdir) == []
