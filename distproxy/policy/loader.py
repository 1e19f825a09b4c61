"""Load and validate policy YAML with ``file:line`` errors (``distproxy check``).

Every problem is reported, not just the first: :class:`PolicyLoadError` carries a list of
:class:`PolicyError`, each rendering as
``policies/x.yaml:14: rule 'ec2-gateway': unknown action 'allow' (expected accept, ...)``.
A loaded :class:`Policy` records ``revision``, the sha256 prefix of the file content, which
every decision-log line carries.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Any

from distproxy.yamlsource import Marked, SourceError, load_marked

from .baseline import ENTRY_IDS, PREFIX
from .mfa import MfaError, parse_mfa
from .model import (
    DEFAULT_RULE_ID,
    KIND_NAMES,
    BaselineConfig,
    DirectionPolicy,
    Limits,
    Mode,
    Policy,
    Rule,
    Verdict,
)
from .patterns import compile_pattern
from .state import REPLY_KINDS
from .syntax import SyntaxErrorAt

__all__ = ["PolicyError", "PolicyLoadError", "load_policy", "load_policy_text",
           "REVISION_CHARS", "revision_of"]

#: Hex characters of sha256 kept as the policy revision.
REVISION_CHARS = 12

_ID_RX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_TOP_KEYS = ("policy", "description", "mode", "baseline", "limits", "to_peer", "from_peer")
_DIR_KEYS = ("default", "rules", "log_default")
_RULE_KEYS = ("id", "description", "op", "to", "mfa", "call", "payload", "from_node",
              "to_node", "action", "log", "mode", "reply_error", "reply")
_BASELINE_KEYS = ("enabled", "mode", "allow_spawn", "allow_io_mfa", "allow_names", "pg_scopes",
                  "disable")
_LIMIT_KEYS: dict[str, Any] = {
    "max_frame_bytes": int, "max_atoms": int, "frames_per_second": int,
    "handshake_timeout_s": float, "hidden": bool, "bytes_per_second": int,
    "burst_seconds": float, "max_message_bytes": int, "max_depth": int, "max_terms": int,
    "max_peer_monitors": int, "max_peer_links": int, "allow_funs": tuple, "on_limit": Verdict}
_VERDICTS = ", ".join(v.value for v in Verdict)
_MODES = ", ".join(m.value for m in Mode)
#: Ops each matcher can apply to (a rule combining it with other ops is an error).
_TO_KINDS = ("reg_send", "monitor", "demonitor")
_MFA_KINDS = ("spawn_request",)
_CALL_KINDS = ("spawn_request", "reg_send")
_PAYLOAD_KINDS = ("send", "reg_send", "alias_send", "exit", "exit2", "monitor_exit",
                  "spawn_request")
_ATOM_RX = re.compile(r"^[a-z][A-Za-z0-9_@]*$")


class PolicyError(ValueError):
    """One problem: ``file:line: [rule 'id': ]cause``."""

    def __init__(self, path: str, line: int | None, cause: str,
                 rule_id: str | None = None, where: str | None = None) -> None:
        self.path = path
        self.line = line
        self.cause = cause
        self.rule_id = rule_id
        self.where = where
        loc = f"{path}:{line}" if line is not None else path
        prefix = f"rule {rule_id!r}: " if rule_id else (f"{where}: " if where else "")
        super().__init__(f"{loc}: {prefix}{cause}")


class PolicyLoadError(ValueError):
    """All problems found in one file."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def revision_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:REVISION_CHARS]


def _suggest(word: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Ctx:
    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[PolicyError] = []

    def err(self, line: int | None, cause: str, rule_id: str | None = None,
            where: str | None = None) -> None:
        self.errors.append(PolicyError(self.path, line, cause, rule_id, where))

    # typed getters -----------------------------------------------------------------------

    def mapping(self, m: Marked, where: str) -> dict[str, Marked] | None:
        if not isinstance(m.value, dict):
            self.err(m.line, f"expected a mapping, got {_type_name(m.value)}", where=where)
            return None
        return m.value

    def unknown_keys(self, d: dict[str, Marked], allowed: tuple[str, ...] | list[str],
                     what: str, rule_id: str | None = None, where: str | None = None) -> None:
        for k, v in d.items():
            if k not in allowed:
                self.err(v.line, f"unknown key {k!r} in {what} (expected one of "
                         f"{', '.join(allowed)}){_suggest(k, list(allowed))}", rule_id, where)

    def strings(self, m: Marked, what: str, rule_id: str | None = None,
                where: str | None = None) -> tuple[str, ...] | None:
        v = m.value
        items = v if isinstance(v, list) else [m]
        out: list[str] = []
        for it in items:
            iv = it.value if isinstance(it, Marked) else it
            if not isinstance(iv, str) or not iv:
                self.err(it.line, f"{what}: expected a non-empty string or a list of them, "
                         f"got {_type_name(iv)}", rule_id, where)
                return None
            out.append(iv)
        if not out:
            self.err(m.line, f"{what}: empty list", rule_id, where)
            return None
        return tuple(out)

    def boolean(self, m: Marked, what: str, rule_id: str | None = None,
                where: str | None = None) -> bool | None:
        if type(m.value) is not bool:
            self.err(m.line, f"{what}: expected true or false, got {m.value!r}", rule_id, where)
            return None
        return m.value

    def mode(self, m: Marked, rule_id: str | None = None, where: str | None = None
             ) -> Mode | None:
        try:
            return Mode(m.value)
        except ValueError:
            self.err(m.line, f"unknown mode {m.value!r} (expected {_MODES})", rule_id, where)
            return None

    def mfas(self, m: Marked, what: str, rule_id: str | None = None,
             where: str | None = None) -> tuple[Any, ...] | None:
        texts = self.strings(m, what, rule_id, where)
        if texts is None:
            return None
        out = []
        for t in texts:
            try:
                out.append(parse_mfa(t))
            except MfaError as e:
                self.err(m.line, f"{what}: {e}", rule_id, where)
                return None
        return tuple(out)


def _type_name(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "nothing (null)"
    return f"{type(v).__name__} {v!r}"


def _parse_rule(cx: _Ctx, m: Marked, index: int, direction: str, file_ids: dict[str, int]
                ) -> Rule | None:
    d = cx.mapping(m, f"{direction}.rules[{index}]")
    if d is None:
        return None
    rid_m = d.get("id")
    rid: str | None = None
    if rid_m is None:
        cx.err(m.line, "rule without 'id' (every rule needs a unique, stable id)",
               where=f"{direction}.rules[{index}]")
    elif not isinstance(rid_m.value, str) or not _ID_RX.match(rid_m.value):
        hint = (" (YAML reads yes/no/on/off/true/false as booleans: quote the id)"
                if type(rid_m.value) is bool else
                " (letters, digits, _ . : @ -, starting with a letter or digit)")
        cx.err(rid_m.line, f"bad rule id {rid_m.value!r}{hint}",
               where=f"{direction}.rules[{index}]")
    else:
        rid = rid_m.value
        if rid.startswith(PREFIX) or rid == DEFAULT_RULE_ID:
            cx.err(rid_m.line, f"rule id {rid!r} is reserved (baseline:* and default)", rid)
        elif rid in file_ids:
            cx.err(rid_m.line, f"duplicate rule id (first used on line {file_ids[rid]})", rid)
        else:
            file_ids[rid] = rid_m.line
    label = rid or f"{direction}.rules[{index}]"
    rule_id = rid
    where = None if rid else label
    n_before = len(cx.errors)
    cx.unknown_keys(d, _RULE_KEYS, "a rule", rule_id, where)

    action: Verdict | None = None
    am = d.get("action")
    if am is None:
        cx.err(m.line, f"missing 'action' (expected {_VERDICTS})", rule_id, where)
    else:
        try:
            action = Verdict(am.value)
        except ValueError:
            cx.err(am.line, f"unknown action {am.value!r} (expected {_VERDICTS})"
                   f"{_suggest(str(am.value), [v.value for v in Verdict])}", rule_id, where)

    ops: tuple[str, ...] = ()
    bad_ops = False
    if "op" in d:
        got = cx.strings(d["op"], "op", rule_id, where)
        bad_ops = False
        if got is not None:
            for op in got:
                if op not in KIND_NAMES:
                    bad_ops = True
                    cx.err(d["op"].line, f"unknown op {op!r} (expected one of "
                           f"{', '.join(KIND_NAMES)}){_suggest(op, KIND_NAMES)}", rule_id, where)
            ops = got

    def applies(key: str, kinds: tuple[str, ...]) -> None:
        if "op" in d and (bad_ops or not ops):
            return  # the op error is enough
        if key in d and ops and not any(o in kinds for o in ops):
            cx.err(d[key].line, f"'{key}' applies to op {', '.join(kinds)} only, but the "
                   f"rule's op is {', '.join(ops)}", rule_id, where)

    applies("to", _TO_KINDS)
    applies("mfa", _MFA_KINDS)
    applies("call", _CALL_KINDS)
    applies("payload", _PAYLOAD_KINDS)
    applies("reply", tuple(REPLY_KINDS))

    kw: dict[str, Any] = {}
    for key in ("to", "from_node", "to_node"):
        if key in d:
            got = cx.strings(d[key], key, rule_id, where)
            if got is not None:
                kw[key] = got
    for key in ("mfa", "call"):
        if key in d:
            got = cx.mfas(d[key], key, rule_id, where)
            if got is not None:
                kw[key] = got
    if "payload" in d:
        pats = cx.strings(d["payload"], "payload", rule_id, where)
        if pats is not None:
            for p in pats:
                try:
                    compile_pattern(p)
                except SyntaxErrorAt as e:
                    cx.err(d["payload"].line, f"payload {p!r}: {e}", rule_id, where)
            kw["payload"] = pats
    if "log" in d:
        b = cx.boolean(d["log"], "log", rule_id, where)
        if b is not None:
            kw["log"] = b
    if "reply" in d:
        b = cx.boolean(d["reply"], "reply", rule_id, where)
        if b is not None:
            kw["reply"] = b
    if "mode" in d:
        mo = cx.mode(d["mode"], rule_id, where)
        if mo is not None:
            kw["mode"] = mo
    if "description" in d:
        if not isinstance(d["description"].value, str):
            cx.err(d["description"].line, "description: expected a string", rule_id, where)
        else:
            kw["description"] = d["description"].value
    if "reply_error" in d:
        re_m = d["reply_error"]
        if not isinstance(re_m.value, str) or not _ATOM_RX.match(re_m.value):
            cx.err(re_m.line, f"reply_error: expected a plain atom such as notsup, got "
                   f"{re_m.value!r}", rule_id, where)
        elif action is not None and action is not Verdict.REJECT:
            cx.err(re_m.line, "reply_error only makes sense with action: reject", rule_id, where)
        elif ops and not bad_ops and "spawn_request" not in ops:
            cx.err(re_m.line, "reply_error applies to spawn_request only", rule_id, where)
        else:
            kw["reply_error"] = re_m.value
    if len(cx.errors) != n_before or rid is None or action is None:
        return None
    return Rule(id=rid, line=m.line, action=action, ops=ops, **kw)


def _parse_direction(cx: _Ctx, top: dict[str, Marked], name: str, root: Marked,
                     file_ids: dict[str, int]) -> DirectionPolicy | None:
    m = top.get(name)
    if m is None:
        cx.err(root.line, f"missing '{name}' section (each direction needs an explicit "
               f"'default': {_VERDICTS})", where=name)
        return None
    d = cx.mapping(m, name)
    if d is None:
        return None
    cx.unknown_keys(d, _DIR_KEYS, name, where=name)
    default: Verdict | None = None
    dm = d.get("default")
    if dm is None:
        cx.err(m.line, f"missing 'default' (required: {_VERDICTS})", where=name)
    else:
        try:
            default = Verdict(dm.value)
        except ValueError:
            cx.err(dm.line, f"unknown default {dm.value!r} (expected {_VERDICTS})", where=name)
    log_default = False
    if "log_default" in d:
        log_default = bool(cx.boolean(d["log_default"], "log_default", where=name))
    rules: list[Rule] = []
    rm = d.get("rules")
    if rm is not None and rm.value is not None:
        if not isinstance(rm.value, list):
            cx.err(rm.line, "rules: expected a list", where=name)
        else:
            for i, item in enumerate(rm.value):
                r = _parse_rule(cx, item, i, name, file_ids)
                if r is not None:
                    rules.append(r)
    if default is None or dm is None:
        return None
    return DirectionPolicy(default, dm.line, tuple(rules), log_default)


def _parse_baseline(cx: _Ctx, m: Marked | None) -> BaselineConfig:
    if m is None:
        return BaselineConfig()
    if type(m.value) is bool:
        return BaselineConfig(enabled=m.value)
    d = cx.mapping(m, "baseline")
    if d is None:
        return BaselineConfig()
    cx.unknown_keys(d, _BASELINE_KEYS, "baseline", where="baseline")
    kw: dict[str, Any] = {}
    if "enabled" in d:
        b = cx.boolean(d["enabled"], "enabled", where="baseline")
        if b is not None:
            kw["enabled"] = b
    if "mode" in d:
        mo = cx.mode(d["mode"], where="baseline")
        if mo is not None:
            kw["mode"] = mo
    for key in ("allow_spawn", "allow_io_mfa"):
        if key in d and d[key].value == []:
            kw[key] = ()
        elif key in d:
            got = cx.mfas(d[key], key, where="baseline")
            if got is not None:
                kw[key] = got
    for key in ("allow_names", "pg_scopes"):
        if key in d:
            if d[key].value == []:
                kw[key] = ()
                continue
            got = cx.strings(d[key], key, where="baseline")
            if got is not None:
                kw[key] = got
    if "disable" in d:
        got = cx.strings(d["disable"], "disable", where="baseline")
        if got is not None:
            for e in got:
                if e.removeprefix(PREFIX) not in ENTRY_IDS:
                    cx.err(d["disable"].line, f"unknown baseline entry {e!r} (entries: "
                           f"{', '.join(PREFIX + i for i in ENTRY_IDS)})", where="baseline")
            kw["disable"] = got
    return BaselineConfig(**kw)


def _parse_limits(cx: _Ctx, m: Marked | None) -> Limits:
    if m is None:
        return Limits()
    d = cx.mapping(m, "limits")
    if d is None:
        return Limits()
    cx.unknown_keys(d, tuple(_LIMIT_KEYS), "limits", where="limits")
    kw: dict[str, Any] = {}
    for key, typ in _LIMIT_KEYS.items():
        if key not in d:
            continue
        v = d[key].value
        if typ is tuple:
            if v == []:
                kw[key] = ()
                continue
            got = cx.strings(d[key], key, where="limits")
            if got is not None:
                kw[key] = got
            continue
        if typ is Verdict:
            try:
                kw[key] = Verdict(v)
            except ValueError:
                cx.err(d[key].line, f"{key}: unknown verdict {v!r} (expected {_VERDICTS})",
                       where="limits")
            continue
        if typ is bool:
            if type(v) is not bool:
                cx.err(d[key].line, f"{key}: expected true or false", where="limits")
                continue
        elif typ is float:
            if type(v) not in (int, float) or v <= 0:
                cx.err(d[key].line, f"{key}: expected a positive number", where="limits")
                continue
            v = float(v)
        elif type(v) is not int or v <= 0:
            cx.err(d[key].line, f"{key}: expected a positive integer", where="limits")
            continue
        kw[key] = v
    return Limits(**kw)


def load_policy_text(text: str, path: str | Path = "<policy>",
                     content: bytes | None = None) -> Policy:
    """Parse and validate policy ``text``; raises PolicyLoadError listing every problem."""
    spath = str(path)
    try:
        root = load_marked(spath, text)
    except SourceError as e:
        raise PolicyLoadError([PolicyError(spath, e.line, e.cause, where=e.where or None)]) \
            from None
    cx = _Ctx(spath)
    top = cx.mapping(root, "policy file")
    if top is None:
        raise PolicyLoadError(cx.errors)
    cx.unknown_keys(top, _TOP_KEYS, "the policy file", where="policy file")
    name = Path(spath).stem
    if "policy" in top:
        if not isinstance(top["policy"].value, str) or not top["policy"].value:
            cx.err(top["policy"].line, "policy: expected a name", where="policy")
        else:
            name = top["policy"].value
    description = ""
    if "description" in top and isinstance(top["description"].value, str):
        description = top["description"].value
    mode = Mode.ENFORCE
    if "mode" in top:
        mode = cx.mode(top["mode"], where="mode") or Mode.ENFORCE
    baseline = _parse_baseline(cx, top.get("baseline"))
    limits = _parse_limits(cx, top.get("limits"))
    ids: dict[str, int] = {}
    to_peer = _parse_direction(cx, top, "to_peer", root, ids)
    from_peer = _parse_direction(cx, top, "from_peer", root, ids)
    if cx.errors or to_peer is None or from_peer is None:
        raise PolicyLoadError(cx.errors)
    raw = content if content is not None else text.encode("utf-8")
    return Policy(name=name, path=spath, revision=revision_of(raw), mode=mode,
                  baseline=baseline, to_peer=to_peer, from_peer=from_peer, limits=limits,
                  description=description)


def load_policy(path: str | Path) -> Policy:
    """Read and load one policy file."""
    spath = str(path)
    try:
        content = Path(path).read_bytes()
    except OSError as e:
        raise PolicyLoadError([PolicyError(spath, None, f"cannot read: {e.strerror or e}")]) \
            from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyLoadError([PolicyError(spath, None, f"not UTF-8 text ({e.reason})")]) \
            from None
    return load_policy_text(text, spath, content)
