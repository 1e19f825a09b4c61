"""Validate one term and find where it ends, without building it.

The proxy uses this to find where a dist frame's payload starts and to bound payloads
cheaply. It applies the decoder's checks and limits (same helpers, same counts) with one
exception: map-key uniqueness is not checked, since that needs the keys built.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from . import tags as T
from . import decoder as _decoder
from .decoder import (_as_buffer, term_bounds, _read_atom, _read_pid, _read_rare,
                      _read_ref, _read_small_int, _truncated)
from .errors import DecodeError
from .fast import FAST_MAX_DEPTH, _Bail, fast_skip
from .limits import DEFAULT_LIMITS, Limits

_u32 = struct.Struct(">I").unpack_from
_f64 = struct.Struct(">d").unpack_from

_LEAF_FIXED = {T.SMALL_INTEGER_EXT: 2, T.INTEGER_EXT: 5}


def skip_at(data: bytes | memoryview, offset: int = 0, limits: Limits = DEFAULT_LIMITS,
            versioned: bool = True) -> int:
    """Return the end offset of the (validated) term at ``offset``; raise DecodeError."""
    buf, isbytes = _as_buffer(data)
    pos, end = term_bounds(buf, offset, limits, versioned)
    if limits.max_depth >= FAST_MAX_DEPTH and limits.max_atom_chars == T.MAX_ATOM_CHARS:
        stop = _try_fast_skip(buf, pos, end, isbytes, limits)
        if stop is not None:
            return stop
    try:
        return _skip(buf, pos, end, limits, isbytes)
    except DecodeError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, KeyError,
            RecursionError, MemoryError) as exc:
        if not _decoder.SAFETY_NET:
            raise
        raise DecodeError(offset, f"malformed input ({type(exc).__name__})") from None


def _fast_skip_attempt(chunk: bytes, pos: int, max_binary: int) -> int | None:
    try:
        stop = fast_skip(chunk, pos, max_binary)
    except (_Bail, IndexError, struct.error):
        return None
    return stop if stop <= len(chunk) else None


def _try_fast_skip(buf: Any, pos: int, end: int, isbytes: bool, limits: Limits) -> int | None:
    """The fast skipper, with the windows and checks decoder._try_fast uses."""
    max_binary = limits.max_binary_bytes
    if isbytes:
        if end != len(buf):
            return None
        stop = _fast_skip_attempt(buf, pos, max_binary)
        return stop if stop is not None and stop - pos <= limits.max_terms else None
    remaining = end - pos
    first = remaining if remaining <= _decoder.FAST_FIRST_WINDOW else _decoder.FAST_FIRST_WINDOW
    stop = _fast_skip_attempt(buf[pos:pos + first].tobytes(), 0, max_binary)
    if stop is None and remaining > first:
        size = remaining if remaining <= _decoder.FAST_COPY_MAX else _decoder.FAST_COPY_MAX
        stop = _fast_skip_attempt(buf[pos:pos + size].tobytes(), 0, max_binary)
    if stop is None or stop > limits.max_terms:
        return None
    return stop + pos


def _skip(data: Any, pos: int, end: int, limits: Limits, isbytes: bool) -> int:
    # Frames are [remaining, kind, fun_start, fun_size]; kind 0 = tuple/map, 1 = list
    # (its last "element" is the tail), 2 = fun free variables.
    stack: list[list] = []
    max_depth = limits.max_depth
    max_chars = limits.max_atom_chars
    terms = limits.max_terms
    while True:
        if pos >= end:
            raise _truncated(pos, "expected a term")
        tag = data[pos]
        at_tail = bool(stack) and stack[-1][1] == 1 and stack[-1][0] == 1
        if at_tail and tag in (T.NIL_EXT, T.LIST_EXT, T.STRING_EXT):
            # A list tail that is a list continues the same list (as in the decoder).
            if tag == T.NIL_EXT:
                pos += 1
            elif tag == T.STRING_EXT:
                if pos + 3 > end:
                    raise _truncated(pos, "STRING_EXT length")
                n = (data[pos + 1] << 8) | data[pos + 2]
                if n > end - pos - 3:
                    raise DecodeError(pos, f"STRING_EXT claims {n} bytes, only {end - pos - 3} bytes left")
                terms -= n
                if terms < 0:
                    raise DecodeError(pos, f"more than {limits.max_terms} terms")
                pos += 3 + n
            else:
                if pos + 5 > end:
                    raise _truncated(pos, "LIST_EXT length")
                n = _u32(data, pos + 1)[0]
                pos += 5
                if n == 0:
                    continue
                if n > end - pos:
                    raise DecodeError(pos - 5, f"LIST_EXT claims {n} elements, only {end - pos} bytes left")
                stack[-1][0] = n + 1
                continue
        else:
            terms -= 1
            opened = None
            if tag == T.SMALL_TUPLE_EXT or tag == T.LARGE_TUPLE_EXT or tag == T.MAP_EXT:
                if tag == T.SMALL_TUPLE_EXT:
                    if pos + 2 > end:
                        raise _truncated(pos, "SMALL_TUPLE_EXT arity")
                    n = data[pos + 1]
                    pos += 2
                    room = end - pos
                else:
                    if pos + 5 > end:
                        raise _truncated(pos, f"{T.NAMES[tag]} arity")
                    n = _u32(data, pos + 1)[0]
                    pos += 5
                    room = end - pos
                    if tag == T.MAP_EXT:
                        room //= 2
                if n > room:
                    raise DecodeError(pos - (2 if tag == T.SMALL_TUPLE_EXT else 5),
                                      f"{T.NAMES[tag]} claims {n} elements, only {end - pos} bytes left")
                if n:
                    opened = [2 * n if tag == T.MAP_EXT else n, 0, 0, 0]
            elif tag == T.LIST_EXT:
                if pos + 5 > end:
                    raise _truncated(pos, "LIST_EXT length")
                n = _u32(data, pos + 1)[0]
                pos += 5
                if n == 0:
                    terms += 1
                    continue
                if n > end - pos:
                    raise DecodeError(pos - 5, f"LIST_EXT claims {n} elements, only {end - pos} bytes left")
                opened = [n + 1, 1, 0, 0]
            elif tag == T.NIL_EXT:
                pos += 1
            elif tag == T.SMALL_ATOM_UTF8_EXT:
                pos = _read_atom(data, pos, end, isbytes, max_chars)[1]
            elif tag in _LEAF_FIXED:
                pos += _LEAF_FIXED[tag]
                if pos > end:
                    raise _truncated(pos - _LEAF_FIXED[tag], T.NAMES[tag])
            elif tag == T.NEW_PID_EXT:
                pos = _read_pid(data, pos, end, isbytes, max_chars)[1]
            elif tag == T.NEWER_REFERENCE_EXT:
                pos = _read_ref(tag, data, pos, end, isbytes, max_chars)[1]
            elif tag == T.BINARY_EXT:
                if pos + 5 > end:
                    raise _truncated(pos, "BINARY_EXT length")
                n = _u32(data, pos + 1)[0]
                if n > end - pos - 5:
                    raise DecodeError(pos, f"BINARY_EXT claims {n} bytes, only {end - pos - 5} bytes left")
                if n > limits.max_binary_bytes:
                    raise DecodeError(pos, f"BINARY_EXT of {n} bytes exceeds the limit of {limits.max_binary_bytes}")
                pos += 5 + n
            elif tag == T.STRING_EXT:
                if pos + 3 > end:
                    raise _truncated(pos, "STRING_EXT length")
                n = (data[pos + 1] << 8) | data[pos + 2]
                if n > end - pos - 3:
                    raise DecodeError(pos, f"STRING_EXT claims {n} bytes, only {end - pos - 3} bytes left")
                terms -= n
                pos += 3 + n
            elif tag == T.NEW_FLOAT_EXT:
                if pos + 9 > end:
                    raise _truncated(pos, "NEW_FLOAT_EXT needs 8 bytes")
                if not math.isfinite(_f64(data, pos + 1)[0]):
                    raise DecodeError(pos, "NEW_FLOAT_EXT is NaN or infinite (OTP refuses these)")
                pos += 9
            elif tag == T.NEW_FUN_EXT:
                start = pos
                if pos + 30 > end:
                    raise _truncated(pos, "NEW_FUN_EXT header")
                fsize = _u32(data, pos + 1)[0]
                if fsize > end - pos - 1:
                    raise DecodeError(pos, f"NEW_FUN_EXT claims {fsize} bytes, only {end - pos - 1} bytes left")
                num_free = _u32(data, pos + 26)[0]
                p = _read_atom(data, pos + 30, end, isbytes, max_chars)[1]
                p = _read_small_int(data, p, end, "NEW_FUN_EXT OldIndex")[1]
                p = _read_small_int(data, p, end, "NEW_FUN_EXT OldUniq")[1]
                pos = _read_pid(data, p, end, isbytes, max_chars)[1]
                if num_free:
                    if num_free > end - pos:
                        raise DecodeError(start, f"NEW_FUN_EXT claims {num_free} free variables, only {end - pos} bytes left")
                    opened = [num_free, 2, start, fsize]
                elif pos - start - 1 != fsize:
                    raise DecodeError(start, f"NEW_FUN_EXT Size says {fsize} bytes, the fun takes {pos - start - 1}")
            else:
                pos = _read_rare(tag, data, pos, end, isbytes, limits)[1]
            if terms < 0:
                raise DecodeError(pos, f"more than {limits.max_terms} terms")
            if opened is not None:
                if len(stack) >= max_depth:
                    raise DecodeError(pos, f"nesting deeper than the limit of {max_depth}")
                stack.append(opened)
                continue
        # a term (or a folded list tail) is complete: close finished frames
        while True:
            if not stack:
                return pos
            frame = stack[-1]
            frame[0] -= 1
            if frame[0]:
                break
            stack.pop()
            if frame[1] == 2 and pos - frame[2] - 1 != frame[3]:
                raise DecodeError(frame[2], f"NEW_FUN_EXT Size says {frame[3]} bytes, the fun takes {pos - frame[2] - 1}")
