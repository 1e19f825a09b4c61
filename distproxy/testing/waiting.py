"""Bounded waits for what another process writes (distproxy's log and decision log).

The proxy runs as a separate process, so its log files are the only way to see a
decision it made; these helpers poll them with a deadline, never an open-ended sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .cluster import SeedCluster

POLL_INTERVAL = 0.05  # seconds between looks at another process's file
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """The first truthy value of ``predicate()``, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def log_line(cluster: "SeedCluster", text: str, since: int = 0) -> str | None:
    """The first line of distproxy's log (after character offset ``since``) containing ``text``."""
    assert cluster.proxy is not None
    for line in cluster.proxy.log_text()[since:].splitlines():
        if text in line:
            return line
    return None


def wait_for_log(cluster: "SeedCluster", text: str, timeout: float = 10.0, since: int = 0) -> str:
    """Wait (bounded) for a distproxy log line containing ``text``; returns the line."""
    try:
        return wait_until(lambda: log_line(cluster, text, since), timeout, f"a log line with {text!r}")
    except AssertionError:
        assert cluster.proxy is not None
        raise AssertionError(f"no log line with {text!r}:\n{cluster.proxy.log_text()[-4000:]}") from None


def decisions_for(cluster: "SeedCluster", peer: str, rule_id: str) -> list[dict[str, Any]]:
    """Decision-log records of ``peer`` made by ``rule_id``."""
    return [d for d in cluster.decisions() if d["peer"] == peer and d["rule_id"] == rule_id]
