"""Decision log bounds, counters and snapshots, PolicyStore reload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distproxy.policy.counters import Counters, format_stats, read_snapshot
from distproxy.policy.decisionlog import DecisionLog, LogLimits, decision_record
from distproxy.policy.loader import PolicyLoadError
from distproxy.policy.model import Decision, Mode, Verdict
from distproxy.policy.samples import Sample, build_message
from distproxy.policy.store import PolicyStore

from .conftest import POLICIES

DROP = Decision(Verdict.DROP, "baseline:no-exit2", Mode.ENFORCE)
AUDIT = Decision(Verdict.REJECT, "baseline:no-spawn", Mode.AUDIT)
ACCEPT = Decision(Verdict.ACCEPT, "ok", Mode.ENFORCE)
ACCEPT_LOG = Decision(Verdict.ACCEPT, "ok", Mode.ENFORCE, log=True)
MSG = build_message(Sample(op="reg_send", to="rex", payload="x"))


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_record_fields() -> None:
    rec = decision_record(DROP, now=1_700_000_000.25, peer="ec2_node@h",
                          direction="from_peer", message=MSG, policy="p", revision="abc")
    assert rec == {
        "time": "2023-11-14T22:13:20.250Z", "peer": "ec2_node@h", "direction": "from_peer",
        "op": "reg_send", "tag": 6, "target": "rex", "rule_id": "baseline:no-exit2",
        "verdict": "drop", "mode": "enforce", "action": "drop", "policy": "p",
        "revision": "abc", "sender": rec["sender"]}
    assert rec["sender"].startswith("<ec2_node@127.0.0.1.")


def test_what_gets_logged(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.log")
    kw = dict(peer="p", direction="from_peer", message=MSG)
    assert log.log(DROP, now=1.0, **kw)
    assert log.log(AUDIT, now=1.0, **kw)  # audit would-be verdicts are logged
    assert not log.log(ACCEPT, now=1.0, **kw)
    assert log.log(ACCEPT_LOG, now=1.0, **kw)
    log.close()
    got = lines(tmp_path / "d.log")
    assert [(r["verdict"], r["mode"], r["action"]) for r in got] == [
        ("drop", "enforce", "drop"), ("reject", "audit", "accept"),
        ("accept", "enforce", "accept")]


def test_rate_cap_and_summary(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.log", LogLimits(rate=10, burst=5, summary_interval=60))
    kw = dict(peer="p", direction="from_peer", message=MSG)
    written = sum(log.log(DROP, now=100.0, **kw) for _ in range(50))
    assert written == 5 and log.suppressed == 45
    # half a second refills 5 tokens
    assert sum(log.log(DROP, now=100.5, **kw) for _ in range(10)) == 5
    assert not log.tick(130.0)  # not due yet
    assert log.tick(160.0)
    assert log.suppressed == 0 and log.suppressed_total == 50
    assert not log.tick(230.0)  # due, but nothing suppressed: no line
    log.close()
    got = lines(tmp_path / "d.log")
    assert len(got) == 11
    assert got[-1]["type"] == "summary" and got[-1]["suppressed"] == 50


def test_size_rotation_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    log = DecisionLog(path, LogLimits(max_bytes=2000, keep=2, rate=1e9, burst=10**9))
    kw = dict(peer="p", direction="from_peer", message=MSG)
    for i in range(200):
        log.log(DROP, now=float(i), **kw)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.log", "d.log.1", "d.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert log.rotations > 2
    # the newest line is in d.log, older ones in .1
    assert lines(path)[-1]["time"].startswith("1970-01-01T00:03:19")


def test_counters_snapshot_and_stats(tmp_path: Path) -> None:
    c = Counters()
    for _ in range(3):
        c.count("ec2_node@h", "from_peer", "reg_send", ACCEPT)
    c.count("ec2_node@h", "from_peer", "spawn_request", Decision(Verdict.REJECT, "x"))
    c.count("bob@h", "from_peer", "spawn_request", AUDIT)
    assert c.get("ec2_node@h", "from_peer", "reg_send", "accept") == 3
    assert c.get("bob@h", "from_peer", "spawn_request", "audit:reject") == 1
    path = tmp_path / "stats" / "snap.json"
    c.write_snapshot(path, now=0.0)
    assert not [p for p in path.parent.iterdir() if p.name != "snap.json"]  # no temp left
    snap = read_snapshot(path)
    assert snap["version"] == 1 and snap["time"] == "1970-01-01T00:00:00.000Z"
    assert {"peer": "ec2_node@h", "direction": "from_peer", "op": "reg_send",
            "verdict": "accept", "count": 3} in snap["counters"]
    text = format_stats(snap)
    header = text.splitlines()[1].split()
    assert header == ["peer", "direction", "op", "accept", "reject", "audit:reject"]
    assert any(l.split() == ["ec2_node@h", "from_peer", "reg_send", "3", "0", "0"]
               for l in text.splitlines())
    assert "rules by decisions:" in text
    assert "no decisions counted yet" in format_stats(Counters().snapshot())


POLICY_A = "to_peer: {default: accept}\nfrom_peer: {default: drop}\n"
POLICY_B = "to_peer: {default: accept}\nfrom_peer: {default: accept}\n"


def test_store_assignment_and_reload(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(POLICY_A)
    b.write_text(POLICY_B)
    store = PolicyStore({"ec2_node@h": a, "bob_*@*": b}, default=a)
    assert store.policy_for("ec2_node@h").from_peer.default is Verdict.DROP
    assert store.policy_for("bob_colo@x").from_peer.default is Verdict.ACCEPT
    assert store.policy_for("other@x").path == str(a)
    assert store.poll() is None  # nothing changed
    engine_before = store.engine_for("ec2_node@h")

    # an invalid edit keeps the running policy
    a.write_text(POLICY_A.replace("drop", "allow"))
    os.utime(a, ns=(1, 1))
    r = store.poll()
    assert r is not None and not r.ok and not r.swapped
    assert "unknown default 'allow'" in r.errors[0] and str(a) in r.errors[0]
    assert "keeping the running policies" in r.describe()
    assert store.engine_for("ec2_node@h") is engine_before
    assert store.poll() is None  # the broken file is not retried until it changes

    # a valid edit swaps; unchanged files keep their compiled engine
    engine_b = store.engine_for("bob_colo@x")
    a.write_text(POLICY_A.replace("drop", "reject"))
    r = store.poll()
    assert r is not None and r.ok and r.swapped and r.changed == (str(a),)
    assert store.policy_for("ec2_node@h").from_peer.default is Verdict.REJECT
    assert store.engine_for("bob_colo@x") is engine_b
    assert "policies reloaded" in r.describe()
    assert store.reload().describe() == "policies unchanged"


def test_store_all_or_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(POLICY_A)
    b.write_text(POLICY_B)
    store = PolicyStore({"x@h": a, "y@h": b})
    a.write_text(POLICY_A.replace("drop", "reject"))  # valid change
    b.write_text("nonsense: [\n")  # invalid
    r = store.reload()
    assert not r.ok
    assert store.policy_for("x@h").from_peer.default is Verdict.DROP  # a not swapped alone


def test_store_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("to_peer: {default: accept}\n")
    with pytest.raises(PolicyLoadError, match="from_peer"):
        PolicyStore({"x@h": a})


def test_store_unassigned_peer_has_no_policy() -> None:
    store = PolicyStore({"ec2_node@h": POLICIES / "unequal-trust.yaml"})
    assert store.engine_for("stranger@h") is None
    assert store.paths == [str(POLICIES / "unequal-trust.yaml")]
