"""check / explain / test: outputs and exit codes, through a tiny argparse front end."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from distproxy.policy.cli import add_subcommands, build_parser, main

from .conftest import POLICIES


def run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="distproxy")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, out, err)
    return status, out.getvalue(), err.getvalue()


def test_check_ok() -> None:
    status, out, err = run("check", str(POLICIES / "unequal-trust.yaml"),
                           str(POLICIES / "allow-all.yaml"))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"ok {POLICIES / 'unequal-trust.yaml'} (revision ")
    assert lines[0].endswith(" rules)")
    assert lines[1].endswith("(revision 0b4bf9b3874a, 0 rules)") or "0 rules" in lines[1]


def test_check_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("to_peer: {default: accept}\nfrom_peer:\n  default: drop\n  rules:\n"
                   "    - id: ec2-gateway\n      op: reg_send\n      action: allow\n")
    status, out, err = run("check", str(bad), str(POLICIES / "audit.yaml"))
    assert status == 1
    assert f"{bad}:7: rule 'ec2-gateway': unknown action 'allow' (expected accept, drop, " \
        "reject, disconnect)" in err
    assert f"invalid {bad} (1 error)" in err
    assert out.startswith("ok ")


def test_explain_rex_rpc() -> None:
    status, out, _ = run(
        "explain", str(POLICIES / "unequal-trust.yaml"), "--direction", "from_peer",
        "--op", "reg_send", "--to", "rex",
        "--payload", "{'$gen_call', {self, tag}, {call, os, cmd, [\"id\"], user}}")
    assert status == 0
    assert "verdict:  reject (enforce)  rule: baseline:rex" in out
    assert "legacy rpc through the rex server" in out
    assert "REG_SEND (reg_send) {6, <ec2_node@127.0.0.1." in out
    assert "payload:  consulted" in out
    assert "  * baseline:rex" in out


def test_explain_spawn_reply_frames_and_peer() -> None:
    status, out, _ = run("explain", str(POLICIES / "unequal-trust.yaml"), "--peer",
                         "bob_colo@10.0.0.7", "--op", "spawn_request", "--call", "os:cmd/1")
    assert status == 0
    assert "rule: baseline:no-spawn" in out
    assert "replies:  SPAWN_REPLY (spawn_reply) {31, #Ref<bob_colo@10.0.0.7." in out
    assert ", 0, notsup}" in out


def test_explain_gateway_by_peer() -> None:
    base = ["explain", str(POLICIES / "unequal-trust.yaml"), "--op", "monitor", "--to",
            "node_b_gateway"]
    assert "rule: ec2-gateway" in run(*base)[1]
    out = run(*base, "--peer", "bob_colo@h")[1]
    assert "rule: gateway-refused" in out
    assert "replies:  PAYLOAD_MONITOR_P_EXIT (monitor_exit) {28, node_b_gateway," in out
    out = run(*base, "--peer", "bob_colo@h", "--flags", "0")[1]
    assert "replies:  MONITOR_P_EXIT (monitor_exit) {21, node_b_gateway," in out


def test_explain_to_peer_and_mfa() -> None:
    status, out, _ = run("explain", str(POLICIES / "unequal-trust.yaml"), "--direction",
                         "to_peer", "--op", "spawn_request", "--mfa", "my_app:status/0")
    assert status == 0 and "verdict:  accept (enforce)  rule: default" in out


def test_explain_errors() -> None:
    status, _, err = run("explain", str(POLICIES / "unequal-trust.yaml"), "--op",
                         "reg_send", "--to", "x", "--payload", "{a,")
    assert status == 2 and "payload: column 4:" in err
    status, _, err = run("explain", str(POLICIES / "unequal-trust.yaml"), "--op", "bogus")
    assert status == 2 and "unknown op 'bogus'" in err
    status, _, err = run("explain", str(POLICIES / "unequal-trust.yaml"), "--op", "reg_send")
    assert status == 2 and "needs 'to'" in err


@pytest.mark.parametrize("name", ["unequal-trust", "gateway-only", "allow-all", "audit"])
def test_example_case_files_pass(name: str) -> None:
    status, out, err = run("test", str(POLICIES / f"{name}.yaml"),
                           str(POLICIES / "tests" / f"{name}.yaml"))
    assert status == 0, out + err
    assert "FAIL" not in out


def test_case_folder_selects_by_policy() -> None:
    status, out, _ = run("test", str(POLICIES / "gateway-only.yaml"),
                         str(POLICIES / "tests"))
    assert status == 0
    assert "gateway-only.yaml:" in out and "unequal-trust.yaml:" not in out
    assert "  PASS message to the gateway" in out


def test_failing_case_and_exit_status(tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text("cases:\n  - name: wrong on purpose\n    op: exit2\n    expect: accept\n"
                     "  - name: right\n    op: exit2\n    expect: drop\n"
                     "    rule: baseline:no-exit2\n")
    status, out, _ = run("test", str(POLICIES / "unequal-trust.yaml"), str(cases))
    assert status == 1
    assert "  PASS right" in out
    quiet = run("test", "-q", str(POLICIES / "unequal-trust.yaml"), str(cases))[1]
    assert "PASS right" not in quiet and "FAIL wrong on purpose" in quiet
    assert f"  FAIL wrong on purpose ({cases}:2): expected accept, got drop " \
        "(baseline:no-exit2, enforce)" in out
    assert "PASS: 1/2" in out and "FAIL: 1/2" in out


def test_bad_case_file(tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text("cases:\n  - name: typo\n    opp: exit2\n    expect: drop\n")
    status, _, err = run("test", str(POLICIES / "unequal-trust.yaml"), str(cases))
    assert status == 2 and f"{cases}:3: case 'typo': unknown key 'opp'" in err
    cases.write_text("cases:\n  - name: x\n    op: exit2\n    expect: maybe\n")
    assert "unknown expect 'maybe'" in run("test", str(POLICIES / "allow-all.yaml"),
                                           str(cases))[2]


def test_defaults_in_case_files(tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text("defaults: {peer: bob_colo@h}\ncases:\n"
                     "  - {name: bob, op: monitor, to: node_b_gateway, expect: reject}\n")
    assert run("test", str(POLICIES / "unequal-trust.yaml"), str(cases))[0] == 0


def test_help_texts_teach(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("check", "explain", "test"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text and f"distproxy {cmd}" in text


def test_main_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(POLICIES / "gateway-only.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok ")
