"""``distproxy demo``: the seed scenario with real BEAM nodes, on loopback.

``my_desktop`` (trusted) rents ``ec2_node`` and ``bob_colo``. Through distproxy, with
``policies/unequal-trust.yaml``, the desktop commands both peers, and the peers try to
command the desktop back. Each attempt is shown with its direction, the verdict and rule
from distproxy's decision log, and what happened on the node; the demo exits 0 only when
every verdict matched the policy. distproxy serves both EPMDs itself: no system epmd.
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distproxy.term import Atom
from distproxy.textable import format_columns

T = "'my_desktop@127.0.0.1'"
EC2 = "'ec2_node@127.0.0.1'"
BOB = "'bob_colo@127.0.0.1'"
CALL_MS = 5000
DECISION_WAIT = 5.0  # seconds to wait for a refusal to reach the decision log
PWNED = "/tmp/distproxy-demo-pwned"
KEEP_POLL_SECONDS = 0.5  # how often --keep checks that distproxy is still running


def policy_path(name: str) -> Path:
    """An example policy: installed with the package, or from a clone's policies/."""
    try:
        root = Path(str(importlib.resources.files("distproxy.example_policies")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[1] / "policies"
    return root / name


@dataclass(frozen=True)
class Step:
    """One thing a node tries, and what the policy says must come of it."""

    actor: str  # "my_desktop", "ec2_node", "bob_colo"
    target: str
    tried: str
    expr: str
    expect_verdict: str  # accept, drop, reject
    expect_rule: str | None  # rule id expected in the decision log (None: accepted, not logged)
    happened: Callable[[Any], tuple[bool, str]]  # result -> (as the policy says?, what happened)


def _returned(expected: Any, text: str) -> Callable[[Any], tuple[bool, str]]:
    def check(result: Any) -> tuple[bool, str]:
        return result == expected, text if result == expected else f"unexpected result {result!r}"
    return check


def _refused_call(result: Any) -> tuple[bool, str]:
    ok = isinstance(result, tuple) and result[:1] == (Atom("EXIT"),) and result[1][0] == Atom("noproc")
    return ok, "call failed at once with noproc" if ok else f"unexpected result {result!r}"


def steps() -> list[Step]:
    return [
        Step("my_desktop", "ec2_node", "rpc:call(ec2_node, erlang, node, [])",
             f"rpc:call({EC2}, erlang, node, []).", "accept", None,
             _returned(Atom("ec2_node@127.0.0.1"), "answered 'ec2_node@127.0.0.1'")),
        Step("my_desktop", "bob_colo", "erpc:call(bob_colo, lists, seq, [1,3])",
             f"erpc:call({BOB}, lists, seq, [1, 3]).", "accept", None, _returned([1, 2, 3], "answered [1,2,3]")),
        Step("my_desktop", "ec2_node", "spawn_link(ec2_node, erlang, exit, [done])",
             f"process_flag(trap_exit, true), P = spawn_link({EC2}, erlang, exit, [done]),"
             " receive {'EXIT', P, R} -> R after 10000 -> timeout end.", "accept", None,
             _returned(Atom("done"), "the link's exit 'done' came back")),
        Step("my_desktop", "bob_colo", "gen_server:call({svc, bob_colo}, {echo, hi})",
             f"gen_server:call({{svc, {BOB}}}, {{echo, hi}}).", "accept", None,
             _returned((Atom("echo"), Atom("hi")), "the server replied {echo, hi}")),
        Step("ec2_node", "my_desktop", "gen_server:call({node_b_gateway, my_desktop}, {order, 1})",
             f"gen_server:call({{node_b_gateway, {T}}}, {{order, 1}}).", "accept", None,
             _returned((Atom("ok"), (Atom("order"), 1)), "the gateway answered (ec2_node may use it)")),
        Step("bob_colo", "my_desktop", "gen_server:call({node_b_gateway, my_desktop}, {order, 2})",
             f"catch gen_server:call({{node_b_gateway, {T}}}, {{order, 2}}, {CALL_MS}).", "reject",
             "gateway-refused", _refused_call),
        Step("ec2_node", "my_desktop", 'rpc:call(my_desktop, os, cmd, ["touch ..."])',
             f'rpc:call({T}, os, cmd, ["touch {PWNED}"], {CALL_MS}).', "reject", "baseline:no-spawn",
             _returned((Atom("badrpc"), Atom("notsup")), "rpc returned {badrpc, notsup}; nothing ran")),
        Step("bob_colo", "my_desktop", "spawn(my_desktop, erlang, halt, [])",
             f"P = spawn({T}, erlang, halt, []), node(P).", "reject", "baseline:no-spawn",
             _returned(Atom("bob_colo@127.0.0.1"), "spawn refused; the desktop kept running")),
        Step("ec2_node", "my_desktop", "gen_server:call({auth, my_desktop}, get_our_cookie)",
             f"catch gen_server:call({{auth, {T}}}, get_our_cookie, {CALL_MS}).", "reject",
             "baseline:internal-names", _refused_call),
        Step("bob_colo", "my_desktop", "gen_server:call({net_kernel, my_desktop}, {spawn, os, cmd, ...})",
             f'catch gen_server:call({{net_kernel, {T}}}, {{spawn, os, cmd, ["id"], user}}, {CALL_MS}).',
             "reject", "baseline:net-kernel", _refused_call),
        Step("ec2_node", "my_desktop", "exit(<desktop's init pid>, kill)",
             "exit(binary_to_term(Bin), kill), ok.", "drop", "baseline:no-exit2",
             _returned(Atom("ok"), "the kill signal was dropped")),
    ]


def _progress(message: str) -> None:
    print(f"  ... {message}", file=sys.stderr, flush=True)


def _wait_for_decision(cluster: Any, peer: str, rule: str, already: int) -> dict[str, Any] | None:
    """The newest record by ``rule`` for ``peer`` after the first ``already`` lines, if it comes."""
    from distproxy.testing.waiting import wait_until

    def newer() -> list[dict[str, Any]]:
        return [d for d in cluster.decisions()[already:] if d["peer"] == peer and d["rule_id"] == rule]

    try:
        return wait_until(newer, DECISION_WAIT, f"{rule} for {peer}")[-1]
    except AssertionError:
        return None


def _table(rows: list[list[str]], header: list[str]) -> str:
    return "\n".join(format_columns([header, *rows], underline=True))


def run_demo(workdir: Path, keep: bool, metrics: str | None = None) -> int:
    from distproxy.term import encode
    from distproxy.testing.cluster import PeerSpec, SeedCluster

    policy = policy_path("unequal-trust.yaml")
    extra = {"metrics": metrics} if metrics else {}
    cluster = SeedCluster(workdir, [PeerSpec("ec2_node", policy), PeerSpec("bob_colo", policy)],
                          config_extra=extra)
    print(f"distproxy demo: the seed scenario, policy {policy.name}, work files in {workdir}")
    _progress("starting distproxy (serving both EPMDs), my_desktop, ec2_node and bob_colo")
    Path(PWNED).unlink(missing_ok=True)
    cluster.start()
    try:
        assert cluster.trusted is not None
        nodes = {"my_desktop": cluster.trusted, **cluster.peer_nodes}
        cluster.trusted.eval("{ok, _} = dp_test_server:start(node_b_gateway), ok.")
        for peer in cluster.peer_nodes.values():
            peer.eval("{ok, _} = dp_test_server:start(svc), ok.")
        init_pid = encode(cluster.trusted.eval("whereis(init)."))
        cookie_before = cluster.trusted.eval("erlang:get_cookie().")
        rows: list[list[str]] = []
        all_ok = True
        for number, step in enumerate(steps(), 1):
            _progress(f"{step.actor}: {step.tried}")
            before = len(cluster.decisions())
            result = nodes[step.actor].eval(step.expr, data=init_pid, timeout=30)
            as_expected, happened = step.happened(result)
            direction = "to_peer" if step.actor == "my_desktop" else "from_peer"
            if step.expect_rule is None:
                verdict, rule = "accept", "(allowed)"
            else:
                record = _wait_for_decision(cluster, f"{step.actor}@127.0.0.1", step.expect_rule, before)
                verdict = record["verdict"] if record else "?"
                rule = record["rule_id"] if record else "(not in the log)"
                as_expected = as_expected and record is not None and verdict == step.expect_verdict
            all_ok = all_ok and as_expected
            rows.append([str(number), f"{step.actor} -> {step.target}", direction, step.tried, verdict, rule,
                         happened, "yes" if as_expected else "NO"])
        desktop_ok = (cluster.trusted.eval("ok.") == Atom("ok") and not Path(PWNED).exists()
                      and cluster.trusted.eval("erlang:get_cookie().") == cookie_before)
        all_ok = all_ok and desktop_ok
        print()
        print(_table(rows, ["#", "who", "direction", "tried", "verdict", "rule", "what happened", "as policy says"]))
        print()
        print(f"my_desktop afterwards: {'running, no file created, cookie unchanged' if desktop_ok else 'AFFECTED'}")
        print(f"decision log: {cluster.decision_log}")
        print(f"distproxy log: {cluster.workdir / 'distproxy.log'}")
        if metrics:
            print(f"metrics: http://{metrics}/metrics")
        print("result:", "every verdict matched the policy" if all_ok else "SOME VERDICTS DID NOT MATCH")
        if keep:
            _keep_running(cluster)
        return 0 if all_ok else 1
    finally:
        cluster.stop()


def _keep_running(cluster: Any) -> None:
    """Wait for Ctrl-C (or SIGTERM) with the nodes up; the caller then stops them."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    # Handlers first: a signal sent as soon as the prompt appears must be ours.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    back, front = cluster.back_epmd_port, cluster.front_epmd_port
    print()
    print("The nodes keep running. In another terminal:")
    print(f"  attach to the desktop:   ERL_EPMD_PORT={back} erl -name you@127.0.0.1 "
          f"-setcookie {cluster.trusted_cookie} -remsh my_desktop@127.0.0.1")
    print(f"  act as ec2_node:         ERL_EPMD_PORT={front} erl -name you@127.0.0.1 "
          f"-setcookie {cluster.peer_cookie('ec2_node')} -remsh ec2_node@127.0.0.1")
    print(f"  watch the decisions:     tail -f {cluster.decision_log}")
    print("Press Ctrl-C to stop everything.", flush=True)
    while not stop.is_set() and cluster.proxy.alive():
        stop.wait(KEEP_POLL_SECONDS)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = subparsers.add_parser(
        "demo", help="run the seed scenario with real nodes on loopback",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--keep", action="store_true",
                      help="leave the nodes running afterwards and print how to attach a remote shell")
    demo.add_argument("--workdir", type=Path, default=None,
                      help="where config, cookies, logs and the decision log go (default: a new temp dir)")
    demo.add_argument("--metrics", metavar="HOST:PORT", default=None,
                      help="also serve distproxy's Prometheus metrics there (with --keep, scrape them afterwards)")

    def handler(args: argparse.Namespace) -> int:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="distproxy-demo-"))
        if shutil.which("erl") is None:
            print("distproxy demo needs Erlang/OTP: apt-get install erlang-nox", file=sys.stderr)
            return 2
        return run_demo(workdir, args.keep, args.metrics)

    demo.set_defaults(handler=handler)
