"""``distproxy run``: load the config, start the service, run the reactor, stop cleanly."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.python import log as twisted_log

from distproxy.config import ConfigError, ProxyConfig, load_config

log = logging.getLogger("distproxy")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True)


def setup_logging(level: str = "info", json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Twisted's own messages (unhandled errors in callbacks) go to the same place.
    twisted_log.PythonLoggingObserver(loggerName="twisted").start()


class _StopOnEof(Protocol):
    """Standard input of a supervised proxy: when the supervisor goes away, so do we."""

    def __init__(self, stop: Any) -> None:
        self.stop = stop

    def connectionLost(self, reason: Any = None) -> None:
        log.info("standard input closed: shutting down")
        self.stop()


def run(config: ProxyConfig, ready_line: bool = False, stop_on_stdin_eof: bool = False) -> int:
    """Run the proxy until SIGTERM/SIGINT (or the end of stdin). Returns the exit status."""
    from twisted.internet import reactor

    from distproxy.policy import PolicyLoadError, PolicyStore

    from .service import ProxyService

    try:
        store = PolicyStore({peer.name: peer.policy for peer in config.peers})
    except PolicyLoadError as exc:
        print(f"distproxy: {exc}", file=sys.stderr)
        return 2
    service = ProxyService(config, reactor, store)
    status = {"code": 0}

    def started() -> None:
        try:
            ready = service.start()
        except Exception as exc:  # a port in use, an address that does not exist, ...
            log.error("cannot start: %s", exc)
            status["code"] = 1
            reactor.stop()
            return
        if ready_line:
            sys.stdout.write(json.dumps(ready, sort_keys=True) + "\n")
            sys.stdout.flush()
        if stop_on_stdin_eof:
            from twisted.internet import stdio

            stdio.StandardIO(_StopOnEof(_stop), stdout=os.open(os.devnull, os.O_WRONLY))

    def shutdown(signum: int, frame: Any) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        reactor.callFromThread(_stop)

    def _stop() -> None:
        if status.get("stopping"):
            return
        status["stopping"] = 1
        d = service.stop()
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    def reload(signum: int, frame: Any) -> None:
        reactor.callFromThread(service.reload)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGHUP, reload)
    reactor.callWhenRunning(started)
    reactor.run(installSignalHandlers=False)
    return status["code"]


def main_run(config_path: str, ready_line: bool, log_level: str, json_logs: bool,
             stop_on_stdin_eof: bool = False) -> int:
    setup_logging(log_level, json_logs)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"distproxy: {exc}", file=sys.stderr)
        return 2
    return run(config, ready_line, stop_on_stdin_eof)
