"""What the kernel knows about the proxy process: CPU time, bytes moved, memory.

Read from ``/proc/PID/{stat,io,status}`` around each measured run, so the numbers are
the proxy's own (not the nodes', which share the same two cores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Writing this to /proc/PID/clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
CLEAR_PEAK_RSS = "5"
_UTIME_FIELD = 13  # 0-based, counted after the ")" that closes the command name
_STIME_FIELD = 14


@dataclass(frozen=True)
class Sample:
    """One reading of the proxy's counters."""

    cpu_us: float  # utime + stime, microseconds (resolution: one clock tick)
    rchar: int  # bytes read by syscalls (socket reads included)
    wchar: int  # bytes written by syscalls

    def __sub__(self, other: "Sample") -> "Sample":
        return Sample(self.cpu_us - other.cpu_us, self.rchar - other.rchar, self.wchar - other.wchar)


def sample(pid: int) -> Sample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of the man page), so utime (14) is fields[11].
    ticks = int(fields[_UTIME_FIELD - 2]) + int(fields[_STIME_FIELD - 2])
    io: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        io[key] = int(value)
    return Sample(ticks * 1e6 / CLOCK_TICKS, io["rchar"], io["wchar"])


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS; False if the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text(CLEAR_PEAK_RSS)
    except OSError:
        return False
    return True
