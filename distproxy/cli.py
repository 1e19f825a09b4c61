"""distproxy: a policy-filtering proxy for Erlang distribution.

It stands in front of a real, unmodified BEAM node (the trusted node), terminates the
distribution handshake on both legs with a separate cookie per peer, and applies a
per-peer, per-direction policy to every control message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from distproxy import __version__
from distproxy.config import describe_keys

RUN_EPILOG = f"""\
configuration keys (YAML):
{describe_keys()}

example (the seed scenario; see README.md and examples/distproxy.yaml):
  trusted:   {{name: my_desktop@10.0.0.1, cookie_file: trusted.cookie}}
  listen:    0.0.0.0:4370
  front_epmd: {{serve: 0.0.0.0:4369}}
  back_epmd:  {{serve: 127.0.0.1:4371}}
  peers:
    - {{name: ec2_node@ec2.example, cookie_file: ec2.cookie, policy: policies/unequal-trust.yaml}}

signals: SIGHUP reloads every policy file atomically (a broken file keeps the old policy);
SIGTERM and SIGINT close every connection and exit.
"""


def _add_run(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = subparsers.add_parser(
        "run", help="run the proxy from a configuration file",
        description="Run distproxy: serve or register in the EPMDs, accept both dialling "
        "directions, and filter every frame with each peer's policy.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", "-c", required=True, metavar="FILE", help="the YAML configuration")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--json-logs", action="store_true", help="write logs as JSON lines on stderr")
    run.add_argument("--ready-line", action="store_true",
                     help="print one JSON line with the bound ports on stdout once listening (for scripts)")
    run.add_argument("--stop-on-stdin-eof", action="store_true",
                     help="shut down when standard input closes (for supervisors and test harnesses)")

    def handler(args: argparse.Namespace) -> int:
        from distproxy.proxy.runner import main_run

        return main_run(args.config, args.ready_line, args.log_level, args.json_logs, args.stop_on_stdin_eof)

    run.set_defaults(handler=handler)


def _add_stats(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stats = subparsers.add_parser(
        "stats", help="print the running proxy's decision counters",
        description="Print the counters (per peer, direction, op and verdict) that a running "
        "`distproxy run` writes to its stats file every few seconds and on exit.",
        epilog="example: distproxy stats --config /etc/distproxy/distproxy.yaml",
    )
    source = stats.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", metavar="FILE", help="the proxy's configuration (finds stats_file)")
    source.add_argument("--file", metavar="PATH", help="a stats snapshot file")
    stats.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")

    def handler(args: argparse.Namespace) -> int:
        import json

        from distproxy.config import ConfigError, load_config
        from distproxy.policy import format_stats, read_snapshot

        if args.file:
            path = args.file
        else:
            try:
                path = str(load_config(args.config).stats_file)
            except ConfigError as exc:
                print(f"distproxy: {exc}", file=sys.stderr)
                return 2
        try:
            snapshot = read_snapshot(path)
        except (OSError, ValueError) as exc:
            print(f"distproxy: cannot read {path}: {exc} (is `distproxy run` running with this config?)",
                  file=sys.stderr)
            return 1
        print(json.dumps(snapshot, indent=2, sort_keys=True) if args.json else format_stats(snapshot))
        return 0

    stats.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distproxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'distproxy COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"distproxy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(subparsers)
    _add_stats(subparsers)
    for add in _optional_commands():
        add(subparsers)
    return parser


def _optional_commands() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """Subcommands contributed by other modules (policy tooling, demo)."""
    from distproxy.demo import add_subcommand as add_demo
    from distproxy.policy.cli import add_subcommands as add_policy_tools

    return [add_policy_tools, add_demo]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # `handler` for the commands defined here, `func` for the policy tools' commands.
    handler = getattr(args, "handler", None) or getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    result = handler(args)
    return int(result or 0)
