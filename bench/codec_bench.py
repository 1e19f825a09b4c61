"""Side-by-side benchmark of distproxy.term against erlang_py on dist-shaped traffic.

Run: ``python -m bench.codec_bench`` (``--quick`` for a fast smoke run). For each control
tuple and payload it reports decode and encode time per message (best of several timeit
repeats), MB/s, and erlang_py's time divided by ours. erlang_py encodes its own decoded
objects, so both encoders write the same term.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from typing import Any, Callable

from distproxy.term import Atom, ImproperList, Pid, Reference, decode, encode, skip_at

try:
    import erlang as erlang_py
except ImportError:  # pragma: no cover - the bench extra installs it
    erlang_py = None

NODE = Atom("ec2_node@127.0.0.1")
TRUSTED = Atom("trusted@127.0.0.1")
PID = Pid(NODE, 4711, 0, 1701234567)
PID2 = Pid(TRUSTED, 88, 0, 1701230001)
REF = Reference(NODE, 1701234567, (181349, 2871263232, 3125738117))
ALIAS = Reference(TRUSTED, 1701230001, (92837, 1138753536, 1827364511))


def messages() -> list[tuple[str, Any]]:
    """Realistic control tuples (dist-protocol.md section 5) and typical payloads."""
    return [
        ("REG_SEND {6,P,'',Name}", (6, PID, Atom(""), Atom("net_kernel"))),
        ("SEND_SENDER {22,P,P}", (22, PID, PID2)),
        ("ALIAS_SEND {33,P,Ref}", (33, PID, ALIAS)),
        ("MONITOR_P {19,P,Name,Ref}", (19, PID, Atom("rex"), REF)),
        ("SPAWN_REQUEST {29,...}", (29, REF, PID, PID2,
                                    (Atom("erpc"), Atom("execute_call"), 4), [Atom("monitor")])),
        ("gen_call payload", (Atom("$gen_call"), (PID, ImproperList((Atom("alias"),), ALIAS)),
                              (Atom("get_status"), Atom("worker_17")))),
        ("1 KiB binary payload", bytes(range(256)) * 4),
        ("100 small tuples", [(i, Atom("item"), i * 3) for i in range(100)]),
        ("map payload", {Atom("name"): b"worker", Atom("count"): 42, Atom("pid"): PID,
                         Atom("tags"): [Atom("a"), Atom("b")], Atom("ratio"): 0.75,
                         Atom("ref"): REF}),
    ]


def best_time(fn: Callable[[], Any], repeat: int, budget: float) -> float:
    """CPU seconds per call: best of ``repeat`` timeit runs of about ``budget`` seconds.

    process_time rather than wall time, so other processes on a shared machine distort
    the figures less."""
    timer = timeit.Timer(fn, timer=time.process_time)
    number, elapsed = 1, 0.0
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= budget / 5:
            break
        number *= 4
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number


def run(repeat: int, budget: float) -> list[dict[str, Any]]:
    rows = []
    for name, term in messages():
        data = encode(term)
        assert decode(data) == term
        row: dict[str, Any] = {"name": name, "bytes": len(data)}
        decode(data)  # warm the atom/pid caches as steady traffic would
        row["dec"] = best_time(lambda: decode(data), repeat, budget)
        row["enc"] = best_time(lambda: encode(term), repeat, budget)
        row["skip"] = best_time(lambda: skip_at(data, 0), repeat, budget)
        if erlang_py is not None:
            theirs = erlang_py.binary_to_term(data)
            row["their_enc_exact"] = erlang_py.term_to_binary(theirs) == data
            row["their_dec"] = best_time(lambda: erlang_py.binary_to_term(data), repeat, budget)
            row["their_enc"] = best_time(lambda: erlang_py.term_to_binary(theirs), repeat, budget)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'message':28} {'bytes':>6} | {'dec us':>8} {'MB/s':>7} {'erl_py':>8} {'x':>5} | "
            f"{'enc us':>8} {'MB/s':>7} {'erl_py':>8} {'x':>5} | {'skip us':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mb = r["bytes"] / 1e6
        their_dec = r.get("their_dec")
        their_enc = r.get("their_enc")
        lines.append(
            f"{r['name']:28} {r['bytes']:>6} | {r['dec'] * 1e6:8.2f} {mb / r['dec']:7.1f} "
            f"{(their_dec or 0) * 1e6:8.2f} {(their_dec or 0) / r['dec']:5.1f} | "
            f"{r['enc'] * 1e6:8.2f} {mb / r['enc']:7.1f} "
            f"{(their_enc or 0) * 1e6:8.2f} {(their_enc or 0) / r['enc']:5.1f} | "
            f"{r['skip'] * 1e6:8.2f}")
    lines.append("us = microseconds per message, best of repeats; x = erlang_py time / "
                 "distproxy.term time; skip = skip_at (validate and find the end, no build)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec_bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timeit repeats (best is kept)")
    parser.add_argument("--budget", type=float, default=0.08,
                        help="seconds per timeit repeat")
    parser.add_argument("--quick", action="store_true", help="tiny budget, for smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.budget = 2, 0.005
    if erlang_py is None:
        print("erlang_py not installed: showing distproxy.term only", file=sys.stderr)
    print(format_table(run(args.repeat, args.budget)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
