"""Shell-style globs (``*``, ``?``, ``[abc]``) for names, nodes and MFA parts.

Compiled once: a glob without metacharacters becomes a plain equality test, anything else
a compiled, anchored, case-sensitive regex (node and atom names are case-sensitive).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Callable

__all__ = ["GLOB_CHARS", "is_glob", "compile_glob", "compile_globs"]

GLOB_CHARS = frozenset("*?[")

StrMatcher = Callable[[str], bool]


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def compile_glob(text: str) -> StrMatcher:
    """A predicate on ``str`` for one glob."""
    if text == "*":
        return lambda s: True
    if not is_glob(text):
        return text.__eq__  # type: ignore[return-value]
    rx = re.compile(fnmatch.translate(text), re.DOTALL)
    match = rx.match
    return lambda s: match(s) is not None


def compile_globs(texts: list[str] | tuple[str, ...]) -> StrMatcher:
    """A predicate true when any glob matches; exact names use one set lookup."""
    exact = frozenset(t for t in texts if not is_glob(t))
    globs = tuple(compile_glob(t) for t in texts if is_glob(t))
    if not globs:
        return exact.__contains__  # type: ignore[return-value]
    if not exact:
        if len(globs) == 1:
            return globs[0]
        return lambda s: any(g(s) for g in globs)
    return lambda s: s in exact or any(g(s) for g in globs)
