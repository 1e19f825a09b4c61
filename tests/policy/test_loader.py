"""Loader: valid files, and every error names file:line, rule id and cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from distproxy.policy.loader import PolicyLoadError, load_policy, load_policy_text
from distproxy.policy.model import Mode, Verdict

from .conftest import POLICIES

GOOD = """\
policy: demo
mode: audit
baseline:
  allow_spawn: ["my_app:status/0", "my_app:*/*"]
  allow_names: [logger]
  disable: [baseline:pg]
limits: {max_frame_bytes: 1000, hidden: true}
to_peer:
  default: accept
from_peer:
  default: drop
  rules:
    - id: a
      op: [reg_send, monitor]
      to: "gw_*"
      from_node: "ec2_node@*"
      action: accept
      log: true
      mode: enforce
    - id: b
      op: spawn_request
      mfa: "os:*/*"
      action: reject
      reply_error: badarg
"""


def errors_of(text: str, path: str = "policies/x.yaml") -> list[str]:
    with pytest.raises(PolicyLoadError) as ei:
        load_policy_text(text, path)
    return [str(e) for e in ei.value.errors]


def test_good_file_loads() -> None:
    p = load_policy_text(GOOD, "demo.yaml")
    assert p.name == "demo" and p.mode is Mode.AUDIT
    assert p.to_peer.default is Verdict.ACCEPT and p.from_peer.default is Verdict.DROP
    a, b = p.from_peer.rules
    assert a.id == "a" and a.ops == ("reg_send", "monitor") and a.to == ("gw_*",)
    assert a.line == 13 and a.mode is Mode.ENFORCE and a.log
    assert b.mfa[0].module == "os" and b.mfa[0].arity is None and b.reply_error == "badarg"
    assert p.baseline.allow_spawn[0].source == "my_app:status/0"
    assert p.baseline.disable == ("baseline:pg",)
    assert p.limits.max_frame_bytes == 1000 and p.limits.hidden is True
    assert len(p.revision) == 12
    assert p.revision != load_policy_text(GOOD + "\n# changed\n", "demo.yaml").revision


def test_revision_is_content_hash(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    assert load_policy(f).revision == hashlib.sha256(GOOD.encode()).hexdigest()[:12]


@pytest.mark.parametrize("name", ["unequal-trust", "gateway-only", "allow-all", "audit"])
def test_example_policies_load(name: str) -> None:
    p = load_policy(POLICIES / f"{name}.yaml")
    assert p.name == name


def test_unknown_action_names_file_line_rule() -> None:
    text = GOOD.replace("action: accept\n      log", "action: allow\n      log")
    assert errors_of(text) == [
        "policies/x.yaml:17: rule 'a': unknown action 'allow' (expected accept, drop, "
        "reject, disconnect)"]


@pytest.mark.parametrize("mutation, line, fragment", [
    (("op: spawn_request", "op: spawn"), 21, "rule 'b': unknown op 'spawn'"),
    (("op: spawn_request", "op: spawn_requests"), 21, "did you mean 'spawn_request'"),
    (("      log: true\n", "      logg: true\n"), 18, "rule 'a': unknown key 'logg'"),
    (("mode: enforce\n    - id: b", "mode: strict\n    - id: b"), 19, "unknown mode 'strict'"),
    (("- id: b", "- id: a"), 20, "rule 'a': duplicate rule id (first used on line 13)"),
    (("- id: b", "- id: baseline:x"), 20, "reserved"),
    (('mfa: "os:*/*"', 'mfa: "os:cmd"'), 22, "bad MFA 'os:cmd'"),
    (('to: "gw_*"', 'to: 12'), 15, "to: expected a non-empty string"),
    (("reply_error: badarg", "reply_error: Bad"), 24, "reply_error"),
    (("disable: [baseline:pg]", "disable: [baseline:nope]"), 6, "unknown baseline entry"),
    (("max_frame_bytes: 1000", "max_frame_bytes: -1"), 7, "positive integer"),
    (("  default: drop\n", "  default: allow\n"), 11, "from_peer: unknown default 'allow'"),
])
def test_errors(mutation: tuple[str, str], line: int, fragment: str) -> None:
    old, new = mutation
    assert old in GOOD
    errs = errors_of(GOOD.replace(old, new, 1))
    assert any(e.startswith(f"policies/x.yaml:{line}: ") and fragment in e for e in errs), errs


def test_bad_pattern_reports_column() -> None:
    text = GOOD.replace('      to: "gw_*"\n', '      to: "gw_*"\n      payload: "{a, "\n')
    errs = errors_of(text)
    assert errs == ["policies/x.yaml:16: rule 'a': payload '{a, ': column 5: unexpected "
                    "end of input, expected a term"]


def test_missing_default_and_direction() -> None:
    errs = errors_of("policy: x\nto_peer:\n  rules: []\n")
    assert "policies/x.yaml:3: to_peer: missing 'default' (required: accept, drop, reject, "\
        "disconnect)" in errs
    assert any(e.startswith("policies/x.yaml:1: from_peer: missing 'from_peer' section")
               for e in errs)


def test_rule_without_id_and_action() -> None:
    errs = errors_of("to_peer: {default: accept}\nfrom_peer:\n  default: drop\n  rules:\n"
                     "    - op: send\n")
    assert errs[0].startswith("policies/x.yaml:5: from_peer.rules[0]: rule without 'id'")
    assert "missing 'action'" in errs[1]


def test_matcher_op_mismatch() -> None:
    text = ("to_peer: {default: accept}\nfrom_peer:\n  default: drop\n  rules:\n"
            "    - id: r\n      op: send\n      to: rex\n      action: drop\n")
    assert errors_of(text) == ["policies/x.yaml:7: rule 'r': 'to' applies to op reg_send, "
                               "monitor, demonitor only, but the rule's op is send"]


def test_all_errors_reported_at_once() -> None:
    text = GOOD.replace("action: accept", "action: allow").replace("op: spawn_request",
                                                                   "op: spawn")
    assert len(errors_of(text)) == 2


def test_unknown_top_level_key_and_yaml_errors() -> None:
    assert errors_of("polcy: x\n" + GOOD)[0].startswith(
        "policies/x.yaml:1: policy file: unknown key 'polcy'")
    err = errors_of("to_peer: [\n")[0]
    assert err.startswith("policies/x.yaml:") and "invalid YAML" in err
    assert "duplicate key" in errors_of(GOOD + "to_peer: {default: drop}\n")[0]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_baseline_false_and_true() -> None:
    base = "to_peer: {default: accept}\nfrom_peer: {default: drop}\n"
    assert load_policy_text("baseline: false\n" + base).baseline.enabled is False
    assert load_policy_text("baseline: true\n" + base).baseline.enabled is True
    assert load_policy_text(base).baseline.enabled is True


def test_yaml_boolean_id_gets_a_hint() -> None:
    errs = errors_of(GOOD.replace("- id: b", "- id: no"))
    assert errs == ["policies/x.yaml:20: from_peer.rules[1]: bad rule id False (YAML reads "
                    "yes/no/on/off/true/false as booleans: quote the id)"]
