"""Operator tooling: ``distproxy check``, ``distproxy explain``, ``distproxy test``.

The main CLI wires these in with :func:`add_subcommands`; each subparser sets
``func(args) -> int`` (the exit status), so the caller runs ``sys.exit(args.func(args))``.
``python -m distproxy.policy.cli ...`` runs them standalone.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from distproxy.yamlsource import Marked, SourceError, load_marked

from .evaluator import PolicyEngine
from .loader import PolicyLoadError, load_policy
from .model import KIND_NAMES, Mode, Policy, Verdict
from .render import format_term
from .replies import reject_frames
from .samples import DEFAULT_PEER, DEFAULT_TRUSTED, Sample, SampleError, build_message

__all__ = ["add_subcommands", "cmd_check", "cmd_explain", "cmd_test", "main",
           "load_cases", "Case", "CaseFileError"]

_VERDICTS = ", ".join(v.value for v in Verdict)

CHECK_EPILOG = """\
examples:
  distproxy check policies/unequal-trust.yaml
  distproxy check policies/*.yaml

Each file is loaded exactly as the proxy loads it. Errors name the file, the line, the
rule id and the cause, e.g.
  policies/x.yaml:14: rule 'ec2-gateway': unknown action 'allow' (expected accept, drop, ...)
exit status: 0 all valid, 1 any invalid.
"""

EXPLAIN_EPILOG = """\
examples:
  # would a peer's legacy rpc through rex get through?
  distproxy explain policies/unequal-trust.yaml --op reg_send --to rex \\
      --payload "{'$gen_call', {self(), make_ref()}, {call, os, cmd, [\\"id\\"], user}}"
  # erpc:call(T, os, cmd, ["id"]) from bob_colo
  distproxy explain policies/unequal-trust.yaml --peer bob_colo@10.0.0.7 \\
      --op spawn_request --call os:cmd/1
  # gen_server:call({node_b_gateway, T}, ping) from ec2_node
  distproxy explain policies/unequal-trust.yaml --op reg_send --to node_b_gateway \\
      --payload "{'$gen_call', {self(), [alias|make_ref()]}, ping}"
  # the desktop's own rpc to the peer
  distproxy explain policies/unequal-trust.yaml --direction to_peer \\
      --op spawn_request --call my_app:status/0

Terms use Erlang syntax: atoms (bare or 'quoted'), integers, floats, "strings",
<<"binaries">>, {tuples}, [lists|Tail], #{maps => ...}, fun m:f/1. In sample terms
self() is the sending process, make_ref() a fresh reference, node() the sending node,
peer_pid()/trusted_pid() a pid on either node.

ops: """ + ", ".join(KIND_NAMES) + """ (or a wire op name such as
SEND, PAYLOAD_EXIT, REG_SEND_TT to test the folded variants).
The message is built and parsed with the proxy's own frame code, then evaluated.
"""

TEST_EPILOG = """\
examples:
  distproxy test policies/unequal-trust.yaml policies/tests/unequal-trust.yaml
  distproxy test policies/gateway-only.yaml policies/tests/

A case file is YAML:

  cases:
    - name: erpc back to the desktop fails fast
      op: spawn_request          # same fields as explain: direction (default
      call: "os:cmd/1"           # from_peer), op, to, payload, mfa, call,
      expect: reject             # from_node, peer, trusted
      rule: baseline:no-spawn    # optional: the deciding rule id
      mode: enforce              # optional: enforce | audit

A folder runs every *.yaml in it whose `policy:` key (if present) names FILE's file.
exit status: 0 all pass, 1 any case fails, 2 a case file or the policy is invalid.
"""


# -- check ---------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    status = 0
    for f in args.files:
        try:
            p = load_policy(f)
        except PolicyLoadError as e:
            status = 1
            for x in e.errors:
                print(str(x), file=err)
            print(f"invalid {f} ({len(e.errors)} error{'s' if len(e.errors) != 1 else ''})",
                  file=err)
            continue
        print(f"ok {f} (revision {p.revision}, {p.rule_count} rules)", file=out)
    return status


# -- explain -------------------------------------------------------------------------------


def _sample_from_args(args: argparse.Namespace) -> Sample:
    return Sample(direction=args.direction, op=args.op, to=args.to, payload=args.payload,
                  mfa=args.mfa, call=args.call, from_node=args.from_node, peer=args.peer,
                  trusted=args.trusted, flags=args.flags)


def _describe_message(msg: Any) -> str:
    text = f"{msg.op.name} ({msg.kind}) {format_term(msg.control, 400)}"
    if msg.payload_offset is not None:
        text += " + " + format_term(msg.payload(), 400)
    return text


def explain_text(policy: Policy, sample: Sample) -> str:
    """The explain report for one sample (raises SampleError)."""
    engine = PolicyEngine(policy)
    msg = build_message(sample)
    ctx = sample.context()
    ex = engine.explain(msg, sample.direction, ctx)
    d = ex.decision
    lines = [
        f"policy:   {policy.name} ({policy.path}, revision {policy.revision})",
        f"message:  {sample.direction} {ctx.sender_node(sample.direction)} -> "
        f"{ctx.receiver_node(sample.direction)}",
        f"          {_describe_message(msg)}",
        f"verdict:  {d.verdict.value} ({d.mode.value})  rule: {d.rule_id}",
        f"action:   {d.action.value}" + ("  (audit: forwarded, logged as would-be "
                                          f"{d.verdict.value})" if d.mode is Mode.AUDIT
                                          and d.verdict is not Verdict.ACCEPT else ""),
        f"why:      {d.reason}",
    ]
    if d.action is Verdict.REJECT:
        frames = reject_frames(msg, ctx.negotiated_flags, d.reply_error)
        if frames:
            from distproxy.dist.control import parse_frame

            for body in frames:
                lines.append(f"replies:  {_describe_message(parse_frame(body))}")
        else:
            lines.append("replies:  none (reject behaves as drop for this op)")
    lines.append("payload:  " + ("consulted (decision depends on the payload)"
                                 if d.payload_dependent else
                                 "not consulted (decision cacheable per op/target)"))
    lines.append(f"matching rules, in evaluation order ({ex.tried} candidate rules for "
                 f"{msg.kind}):")
    for rid, mode, verdict, why in ex.matches:
        mark = "*" if rid == d.rule_id else " "
        lines.append(f"  {mark} {rid:<28} {verdict.value:<10} {mode.value:<7} {why}")
    return "\n".join(lines) + "\n"


def _load_or_report(path: str, err: TextIO) -> Policy | None:
    """The policy at ``path``, or None after printing its errors (FILE:LINE: ...)."""
    try:
        return load_policy(path)
    except PolicyLoadError as e:
        print(str(e), file=err)
        return None


def cmd_explain(args: argparse.Namespace, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    policy = _load_or_report(args.file, err)
    if policy is None:
        return 2
    try:
        text = explain_text(policy, _sample_from_args(args))
    except SampleError as e:
        print(f"explain: {e}", file=err)
        return 2
    out.write(text)
    return 0


# -- test ----------------------------------------------------------------------------------

_CASE_KEYS = ("name", "direction", "op", "to", "payload", "mfa", "call", "from_node", "peer",
              "trusted", "flags", "expect", "rule", "mode")


class CaseFileError(ValueError):
    pass


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    line: int
    sample: Sample
    expect: Verdict
    rule: str | None = None
    mode: Mode | None = None


def _case(path: str, m: Marked, i: int, defaults: dict[str, Any]) -> Case:
    if not isinstance(m.value, dict):
        raise CaseFileError(f"{path}:{m.line}: case {i + 1}: expected a mapping")
    d = m.value
    name = d["name"].value if "name" in d else f"case {i + 1}"
    where = f"{path}:{m.line}: case {name!r}"
    for k, v in d.items():
        if k not in _CASE_KEYS:
            raise CaseFileError(f"{path}:{v.line}: case {name!r}: unknown key {k!r} "
                                f"(expected {', '.join(_CASE_KEYS)})")
    vals = {**defaults, **{k: v.value for k, v in d.items()}}
    if "expect" not in vals:
        raise CaseFileError(f"{where}: missing 'expect' ({_VERDICTS})")
    try:
        expect = Verdict(vals["expect"])
    except ValueError:
        raise CaseFileError(f"{where}: unknown expect {vals['expect']!r} ({_VERDICTS})") \
            from None
    mode = None
    if vals.get("mode") is not None:
        try:
            mode = Mode(vals["mode"])
        except ValueError:
            raise CaseFileError(f"{where}: unknown mode {vals['mode']!r}") from None
    for k in ("op", "to", "payload", "mfa", "call", "from_node", "peer", "trusted",
              "direction"):
        if k in vals and vals[k] is not None and not isinstance(vals[k], str):
            raise CaseFileError(f"{where}: {k}: expected a string, got {vals[k]!r}")
    sample = Sample(
        direction=vals.get("direction", "from_peer"), op=vals.get("op", "send"),
        to=vals.get("to"), payload=vals.get("payload"), mfa=vals.get("mfa"),
        call=vals.get("call"), from_node=vals.get("from_node"),
        peer=vals.get("peer", DEFAULT_PEER), trusted=vals.get("trusted", DEFAULT_TRUSTED),
        **({"flags": int(vals["flags"])} if "flags" in vals else {}))
    return Case(str(name), path, m.line, sample, expect, vals.get("rule"), mode)


def load_cases(path: str | Path) -> tuple[str | None, list[Case]]:
    """(the file's ``policy:`` value or None, its cases). Raises CaseFileError."""
    spath = str(path)
    try:
        root = load_marked(spath)
    except SourceError as e:
        raise CaseFileError(str(e)) from None
    if not isinstance(root.value, dict) or "cases" not in root.value:
        raise CaseFileError(f"{spath}:{root.line}: expected a mapping with 'cases:'")
    top = root.value
    for k, v in top.items():
        if k not in ("policy", "cases", "defaults", "description"):
            raise CaseFileError(f"{spath}:{v.line}: unknown key {k!r} "
                                "(expected policy, defaults, cases, description)")
    defaults = top["defaults"].plain() if "defaults" in top else {}
    if not isinstance(defaults, dict):
        raise CaseFileError(f"{spath}:{top['defaults'].line}: defaults: expected a mapping")
    cases_m = top["cases"]
    if not isinstance(cases_m.value, list):
        raise CaseFileError(f"{spath}:{cases_m.line}: cases: expected a list")
    policy = top["policy"].value if "policy" in top else None
    return policy, [_case(spath, c, i, defaults) for i, c in enumerate(cases_m.value)]


def _case_files(target: Path, policy_path: Path) -> list[Path]:
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix in (".yaml", ".yml"))
        chosen = []
        for f in files:
            try:
                declared, _ = load_cases(f)
            except CaseFileError:
                chosen.append(f)  # report its error when running it
                continue
            if declared is None or _same_policy(f, declared, policy_path):
                chosen.append(f)
        return chosen
    return [target]


def _same_policy(case_file: Path, declared: str, policy_path: Path) -> bool:
    cand = (case_file.parent / declared)
    try:
        return cand.resolve() == policy_path.resolve() or Path(declared).name == policy_path.name
    except OSError:
        return False


def run_case(engine: PolicyEngine, case: Case) -> tuple[bool, str]:
    """(passed, detail)."""
    try:
        msg = build_message(case.sample)
    except SampleError as e:
        return False, f"cannot build the message: {e}"
    d = engine.evaluate(msg, case.sample.direction, case.sample.context())
    ok = d.verdict is case.expect
    if case.rule is not None and d.rule_id != case.rule:
        ok = False
    if case.mode is not None and d.mode is not case.mode:
        ok = False
    got = f"{d.verdict.value} ({d.rule_id}, {d.mode.value})"
    want = case.expect.value + (f" ({case.rule})" if case.rule else "") + \
        (f" [{case.mode.value}]" if case.mode else "")
    return ok, ("" if ok else f"expected {want}, got {got}")


def cmd_test(args: argparse.Namespace, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    policy = _load_or_report(args.file, err)
    if policy is None:
        return 2
    engine = PolicyEngine(policy)
    passed = failed = 0
    status = 0
    for target in args.cases:
        tpath = Path(target)
        if not tpath.exists():
            print(f"{target}: no such file or folder", file=err)
            status = 2
            continue
        for f in _case_files(tpath, Path(args.file)):
            try:
                _, cases = load_cases(f)
            except CaseFileError as e:
                print(str(e), file=err)
                status = 2
                continue
            print(f"{f}:", file=out)
            for c in cases:
                ok, detail = run_case(engine, c)
                if ok:
                    passed += 1
                    if not args.quiet:
                        print(f"  PASS {c.name}", file=out)
                else:
                    failed += 1
                    print(f"  FAIL {c.name} ({c.path}:{c.line}): {detail}", file=out)
    total = passed + failed
    print("-" * 72, file=out)
    print(f"PASS: {passed}/{total}", file=out)
    if failed:
        print(f"FAIL: {failed}/{total}", file=out)
        status = max(status, 1)
    return status


# -- wiring --------------------------------------------------------------------------------


def _add_sample_args(p: argparse.ArgumentParser, with_defaults: bool = True) -> None:
    p.add_argument("--direction", default="from_peer", choices=("from_peer", "to_peer"),
                   help="from_peer: untrusted peer -> trusted node (default); "
                   "to_peer: trusted -> peer")
    p.add_argument("--op", required=True,
                   help="kind (send, reg_send, spawn_request, monitor, ...) or wire op "
                   "name (SEND_SENDER, PAYLOAD_EXIT2, ...)")
    p.add_argument("--to", help="registered name for reg_send / monitor / demonitor")
    p.add_argument("--payload", help="the message, reason or spawn argument list, in "
                   "Erlang syntax")
    p.add_argument("--mfa", help="spawn_request function, e.g. os:cmd/1")
    p.add_argument("--call", help="the inner call of an erpc:call spawn_request (or a "
                   "legacy rex call with --op reg_send --to rex), e.g. os:cmd/1")
    p.add_argument("--from-node", dest="from_node",
                   help="node of the sending pid (default: the sending node; set it to "
                   "test sender spoofing)")
    p.add_argument("--peer", default=DEFAULT_PEER,
                   help=f"the peer's node name (default {DEFAULT_PEER})")
    p.add_argument("--trusted", default=DEFAULT_TRUSTED,
                   help=f"the trusted node's name (default {DEFAULT_TRUSTED})")
    p.add_argument("--flags", type=lambda s: int(s, 0), default=0xD075F5FBD,
                   help="negotiated distribution flags (default: OTP 25 with the atom "
                   "cache and fragments stripped, 0xD075F5FBD)")


def add_subcommands(subparsers: Any) -> None:
    """Add ``check``, ``explain`` and ``test`` to an argparse subparsers object."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "check", help="validate policy files",
        description="Validate policy files exactly as the proxy loads them.",
        epilog=CHECK_EPILOG, formatter_class=fmt)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser(
        "explain", help="show which rule decides a sample message",
        description="Build a real control message from the flags, evaluate it against "
        "FILE and print the verdict, the deciding rule (or baseline entry), why, the "
        "reply frames a reject synthesises, and every rule that matched.",
        epilog=EXPLAIN_EPILOG, formatter_class=fmt)
    p.add_argument("file", metavar="FILE")
    _add_sample_args(p)
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser(
        "test", help="run sample-message cases against a policy",
        description="Run every case in CASES (files or folders) against FILE and report "
        "pass/fail per case, like `opa test`.",
        epilog=TEST_EPILOG, formatter_class=fmt)
    p.add_argument("file", metavar="FILE")
    p.add_argument("cases", nargs="+", metavar="CASES")
    p.add_argument("-q", "--quiet", action="store_true", help="list failing cases only")
    p.set_defaults(func=cmd_test)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distproxy", description="distproxy policy tools")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
