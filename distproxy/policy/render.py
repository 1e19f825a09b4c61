"""Short, bounded Erlang-syntax renderings of terms for logs and explain output."""

from __future__ import annotations

from typing import Any

from distproxy.term import Atom, BitBinary, Export, Fun, ImproperList, Pid, Port, Reference

__all__ = ["format_term", "MAX_RENDER"]

#: Longest rendering kept in a log line.
MAX_RENDER = 200

_PLAIN_ATOM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@")


def _atom(a: Atom) -> str:
    n = a.name
    if n and n[0].islower() and n.isascii() and all(c in _PLAIN_ATOM for c in n):
        return n
    return "'" + n.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fmt(t: Any, out: list[str], budget: list[int], depth: int) -> None:
    if budget[0] <= 0:
        return
    if depth > 20:
        out.append("...")
        budget[0] -= 3
        return
    tt = type(t)
    if tt is Atom:
        s = _atom(t)
    elif tt is int:
        s = repr(t)
    elif tt is float:
        s = repr(t)
        if "e" in s and "." not in s:
            s = s.replace("e", ".0e")  # Erlang floats need a fraction: 1.0e16
    elif tt is bytes:
        if t and all(32 <= b < 127 and b not in (34, 92) for b in t):
            s = '<<"' + t.decode("ascii") + '">>'
        else:
            s = "<<" + ",".join(str(b) for b in t[:64]) + (",..." if len(t) > 64 else "") + ">>"
    elif tt is Pid:
        s = f"<{t.node.name}.{t.id}.{t.serial}>"
    elif tt is Reference:
        s = f"#Ref<{t.node.name}." + ".".join(str(i) for i in t.ids) + ">"
    elif tt is Port:
        s = f"#Port<{t.node.name}.{t.id}>"
    elif tt is Export:
        s = f"fun {_atom(t.module)}:{_atom(t.function)}/{t.arity}"
    elif isinstance(t, Fun):
        s = f"#Fun<{t.module.name}.{t.index}>"
    elif isinstance(t, BitBinary):
        s = f"<<...:{len(t.data) * 8 - 8 + t.bits}>>"
    elif tt is tuple:
        out.append("{")
        budget[0] -= 1
        for i, x in enumerate(t):
            if i:
                out.append(", ")
                budget[0] -= 2
            _fmt(x, out, budget, depth + 1)
        out.append("}")
        budget[0] -= 1
        return
    elif tt is list:
        if t and all(type(c) is int and 32 <= c < 127 for c in t):
            s = '"' + "".join(map(chr, t)) + '"'
        else:
            out.append("[")
            for i, x in enumerate(t):
                if i:
                    out.append(", ")
                    budget[0] -= 2
                _fmt(x, out, budget, depth + 1)
            out.append("]")
            budget[0] -= 2
            return
    elif isinstance(t, ImproperList):
        out.append("[")
        for i, x in enumerate(t.items):
            if i:
                out.append(", ")
            _fmt(x, out, budget, depth + 1)
        out.append("|")
        _fmt(t.tail, out, budget, depth + 1)
        out.append("]")
        budget[0] -= 3
        return
    elif tt is dict:
        out.append("#{")
        for i, (k, v) in enumerate(t.items()):
            if i:
                out.append(", ")
            _fmt(getattr(k, "term", k), out, budget, depth + 1)
            out.append(" => ")
            _fmt(v, out, budget, depth + 1)
            budget[0] -= 6
        out.append("}")
        return
    else:
        s = repr(t)
    out.append(s)
    budget[0] -= len(s)


def format_term(term: Any, max_len: int = MAX_RENDER) -> str:
    """``term`` in Erlang syntax, cut to about ``max_len`` characters."""
    out: list[str] = []
    _fmt(term, out, [max_len], 0)
    s = "".join(out)
    return s if len(s) <= max_len else s[: max_len - 3] + "..."
