"""``"module:function/arity"`` specs (globs allowed, ``*`` arity) and their matchers."""

from __future__ import annotations

import re
from typing import Any, Callable

from .globs import compile_glob
from .model import MfaSpec

__all__ = ["MfaError", "parse_mfa", "compile_mfa", "compile_mfas", "format_mfa"]

_MFA_RX = re.compile(r"^([^:/\s]+):([^:/\s]+)/(\*|\d{1,3})$")

MfaMatcher = Callable[[Any], bool]


class MfaError(ValueError):
    pass


def parse_mfa(text: object) -> MfaSpec:
    """Parse ``"os:cmd/1"``, ``"my_app:*/*"``; raises MfaError with the expected shape."""
    if not isinstance(text, str):
        raise MfaError(f"expected \"module:function/arity\", got {text!r}")
    m = _MFA_RX.match(text.strip())
    if m is None:
        raise MfaError(f"bad MFA {text!r} (expected \"module:function/arity\", globs and "
                       "* allowed, e.g. \"my_app:*/*\")")
    mod, fun, ar = m.groups()
    arity = None if ar == "*" else int(ar)
    if arity is not None and arity > 255:
        raise MfaError(f"bad MFA {text!r}: arity {arity} > 255")
    return MfaSpec(text.strip(), mod, fun, arity)


def compile_mfa(spec: MfaSpec) -> MfaMatcher:
    """A predicate on an ``(Atom, Atom, int)`` triple."""
    mod = compile_glob(spec.module)
    fun = compile_glob(spec.function)
    arity = spec.arity

    def match(mfa: Any) -> bool:
        if mfa is None:
            return False
        m, f, a = mfa
        return (arity is None or a == arity) and mod(m.name) and fun(f.name)

    return match


def compile_mfas(specs: tuple[MfaSpec, ...] | list[MfaSpec]) -> MfaMatcher:
    ms = tuple(compile_mfa(s) for s in specs)
    if len(ms) == 1:
        return ms[0]
    return lambda mfa: any(m(mfa) for m in ms)


def format_mfa(mfa: Any) -> str:
    if mfa is None:
        return "-"
    m, f, a = mfa
    return f"{m.name}:{f.name}/{a}"
