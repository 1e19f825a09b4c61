"""Profile the proxy process under one load: ``python -m bench.profile [--mode M] [--load L]``.

Starts one :class:`~bench.modes.Setup`, attaches ``py-spy record`` (pip install py-spy)
to the proxy process while T streams the chosen load, and prints py-spy's top functions
(``--format raw`` flamegraph lines summed per function). Used to decide what to optimise.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .modes import Setup

LOADS = {
    "small": "dp_bench:stream(reg_send, dp_sink, '{peer}', 600000, {{bench, 12345}}).",
    "1k": "dp_bench:stream(reg_send, dp_sink, '{peer}', 150000, binary:copy(<<7>>, 1024)).",
    "64k": "dp_bench:stream(reg_send, dp_sink, '{peer}', 6000, binary:copy(<<7>>, 65536)).",
    "calls": "dp_bench:calls(dp_echo, '{peer}', 8000).",
}
TOP = 25
_LINE = re.compile(r":\d+\)$")  # per-function, not per-line, totals


def summarise(raw: Path) -> str:
    """Self time and inclusive time per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"{total} samples", "self%  incl%  function"]
    for f, n in own.most_common(TOP):
        lines.append(f"{100 * n / total:5.1f}  {100 * incl[f] / total:5.1f}  {f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="unequal-trust")
    parser.add_argument("--load", default="small", choices=sorted(LOADS))
    parser.add_argument("--out", type=Path, default=None, help="keep the raw py-spy output here")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        parser.error("py-spy is not installed: pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="distproxy-profile-"))
    raw = args.out or workdir / "profile.txt"
    setup = Setup(args.mode, workdir)
    spy: subprocess.Popen[bytes] | None = None
    try:
        setup.start()
        assert setup.proxy_pid is not None, "direct mode has no proxy to profile"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(setup.proxy_pid), "--format", "raw",
                                "--rate", "500", "--output", str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        setup.t.eval("ok.")
        print(setup.t.eval(LOADS[args.load].format(peer=setup.p.name), timeout=300))
    finally:
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(timeout=30)
        setup.stop()
    print(summarise(raw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
