"""Handshake flood control (unit level) and its config keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from distproxy.config import ConfigError, load_config
from distproxy.proxy.admission import Admission

KEY = ("my_desktop@127.0.0.1", "10.0.0.9")


def test_pending_cap_and_release() -> None:
    a = Admission(max_pending=2, rate=1000.0, burst=1000)
    assert a.admit(KEY, 0.0) is None and a.admit(KEY, 0.0) is None
    assert a.admit(KEY, 0.0) == "pending"
    assert a.admit(("other", "10.0.0.9"), 0.0) is None  # per listener and address
    a.release(KEY)
    assert a.admit(KEY, 0.0) is None
    assert a.refused["pending"] == 1


def test_rate_is_a_token_bucket() -> None:
    a = Admission(max_pending=10_000, rate=10.0, burst=5)
    results = [a.admit(KEY, 0.0) for _ in range(7)]
    assert results == [None] * 5 + ["rate", "rate"]
    assert a.admit(KEY, 0.1) is None  # one token back after 0.1 s at 10/s
    assert a.admit(KEY, 0.1) == "rate"


CONFIG = """
trusted: {name: my_desktop@127.0.0.1, cookie: tcookie}
front_epmd: {serve: 127.0.0.1:4369}
back_epmd: {serve: 127.0.0.1:4371}
peers:
  - {name: ec2_node@127.0.0.1, cookie: ecookie, policy: p.yaml}
"""


def test_config_keys_defaults_and_errors(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("to_peer: {default: accept}\nfrom_peer: {default: drop}\n")
    path = tmp_path / "distproxy.yaml"
    config = load_config(path, CONFIG)
    assert (config.max_pending_handshakes, config.handshake_rate, config.handshake_burst) == (64, 50.0, 100)
    config = load_config(path, CONFIG + "max_pending_handshakes: 8\nhandshake_rate: 5\nhandshake_burst: 10\n")
    assert (config.max_pending_handshakes, config.handshake_rate, config.handshake_burst) == (8, 5.0, 10)
    with pytest.raises(ConfigError, match=r"distproxy.yaml:7: handshake_rate"):
        load_config(path, CONFIG + "handshake_rate: -1\n")
    with pytest.raises(ConfigError, match=r"max_pending_handshakes"):
        load_config(path, CONFIG + "max_pending_handshakes: 0\n")
