"""The `distproxy run` configuration: every error names file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distproxy.config import ConfigError, load_config

GOOD = """\
trusted:
  name: my_desktop@10.0.0.1
  cookie: trusted-secret
listen: 127.0.0.1:0
front_epmd: {serve: 127.0.0.1:14369}
back_epmd: {serve: 127.0.0.1:14370}
peers:
  - name: ec2_node@10.0.0.5
    cookie: ec2-secret
    policy: policy.yaml
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text("placeholder\n")
    return tmp_path


def load(workdir: Path, text: str) -> object:
    path = workdir / "distproxy.yaml"
    path.write_text(text)
    return load_config(path)


def error(workdir: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(workdir, text)
    return str(info.value)


def test_a_good_config_loads_with_defaults(workdir: Path) -> None:
    config = load(workdir, GOOD)
    assert config.trusted.cookie == b"trusted-secret"  # type: ignore[attr-defined]
    peer = config.peers[0]  # type: ignore[attr-defined]
    assert peer.location.address == "10.0.0.5" and peer.location.epmd.port == 4369
    assert peer.policy == (workdir / "policy.yaml").resolve()
    # The trusted node registers in the back EPMD, whatever its host name says.
    assert config.trusted.location.epmd.port == 14370  # type: ignore[attr-defined]
    assert config.trusted.location.address == "127.0.0.1"  # type: ignore[attr-defined]
    assert config.handshake_timeout == 7.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("mutation, line, key, cause", [
    (("cookie: ec2-secret", "cookie: trusted-secret"), 9, "peers[0].cookie", "must not share"),
    (("name: ec2_node@10.0.0.5", "name: ec2_node"), 8, "peers[0].name", "not a full node name"),
    (("policy: policy.yaml", "policy: missing.yaml"), 10, "peers[0].policy", "no such file"),
    (("listen: 127.0.0.1:0", "listen: 127.0.0.1:99999"), 4, "listen", "out of range"),
    (("listen: 127.0.0.1:0", "listn: 127.0.0.1:0"), 4, "listn", "unknown key"),
    (("  cookie: trusted-secret\n", "  cookie: trusted-secret\n  cookie_file: x\n"), 3, "trusted.cookie", "exactly one"),
    (("back_epmd: {serve: 127.0.0.1:14370}", "back_epmd: {serve: 127.0.0.1:14369}"), 6, "back_epmd", "different"),
])
def test_errors_name_file_line_key_and_cause(workdir: Path, mutation: tuple[str, str], line: int, key: str,
                                             cause: str) -> None:
    text = GOOD.replace(*mutation)
    assert text != GOOD
    message = error(workdir, text)
    assert message.startswith(f"{workdir / 'distproxy.yaml'}:{line}: {key}: "), message
    assert cause in message


def test_invalid_yaml_and_missing_file(workdir: Path) -> None:
    assert ":2: invalid YAML" in error(workdir, "trusted: {\n  : :\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(workdir / "nope.yaml")


def test_cookie_file_readable_by_others_is_refused(workdir: Path) -> None:
    cookie = workdir / "t.cookie"
    cookie.write_text("trusted-secret\n")
    cookie.chmod(0o644)
    message = error(workdir, GOOD.replace("  cookie: trusted-secret", "  cookie_file: t.cookie"))
    assert "trusted.cookie_file" in message and "chmod 600" in message
    cookie.chmod(0o600)
    config = load(workdir, GOOD.replace("  cookie: trusted-secret", "  cookie_file: t.cookie"))
    assert config.trusted.cookie == b"trusted-secret"  # type: ignore[attr-defined]


def test_run_refuses_to_start_on_a_bad_config(workdir: Path) -> None:
    path = workdir / "distproxy.yaml"
    path.write_text(GOOD.replace("listen: 127.0.0.1:0", "listen: nowhere"))
    result = subprocess.run([sys.executable, "-m", "distproxy", "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{path}:4: listen: expected HOST:PORT" in result.stderr


def test_run_help_explains_every_key() -> None:
    result = subprocess.run([sys.executable, "-m", "distproxy", "run", "--help"], capture_output=True, text=True,
                            timeout=60)
    for key in ("trusted.name", "front_epmd.serve", "back_epmd.register_in", "peers[].policy", "peers[].hidden"):
        assert key in result.stdout


def test_the_shipped_example_config_is_valid(tmp_path: Path) -> None:
    """examples/distproxy.yaml, with the cookie files an operator would create."""
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "examples" / "cookies").mkdir(parents=True)
    (tmp_path / "policies").mkdir()
    (tmp_path / "examples" / "distproxy.yaml").write_text((repo / "examples" / "distproxy.yaml").read_text())
    (tmp_path / "policies" / "unequal-trust.yaml").write_text((repo / "policies" / "unequal-trust.yaml").read_text())
    for name in ("my_desktop", "ec2_node", "bob_colo"):
        cookie = tmp_path / "examples" / "cookies" / f"{name}.cookie"
        cookie.write_text(f"{name}-secret\n")
        cookie.chmod(0o600)
    config = load_config(tmp_path / "examples" / "distproxy.yaml")
    assert [p.name for p in config.peers] == ["ec2_node@ec2.example.net", "bob_colo@colo.example.org"]
    assert config.peers[0].location.epmd is not None and config.peers[0].location.epmd.host == "ec2.example.net"
    assert config.trusted.location.epmd is not None and config.trusted.location.epmd.port == 4371
