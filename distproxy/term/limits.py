"""Decode limits: one named, frozen object so every bound a hostile peer can hit is visible.

Every length field in the input is checked against the bytes that remain *before* anything
is allocated, so the limits below only bound what an honest-looking but huge term may cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tags import MAX_ATOM_CHARS

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds enforced by the decoder; exceeding one raises DecodeError.

    - ``max_input_bytes``: a single term may not span more bytes (128 MiB: dist payloads
      can be large, but the proxy buffers whole frames anyway).
    - ``max_depth``: nesting of tuples/lists/maps/funs. The decoder is iterative, so this
      bounds only a list of frames; 1024 leaves room for honest deep data (nested records,
      tuple-encoded trees) while a 100,000-deep bomb fails at once.
    - ``max_terms``: total number of terms (each list element, tuple element, map key and
      value counts). 8 Mi keeps Python memory for one message in the low hundreds of MiB.
    - ``max_atom_chars``: 255 characters, as OTP.
    - ``max_bignum_bytes``: 1024 digit bytes (8192 bits): RSA-8192 fits, and the value
      still prints (Python refuses str() of ints beyond 4300 decimal digits).
    - ``max_binary_bytes``: one binary / bitstring payload.
    """

    max_input_bytes: int = 128 * MiB
    max_depth: int = 1024
    max_terms: int = 8 * MiB
    max_atom_chars: int = MAX_ATOM_CHARS
    max_bignum_bytes: int = 1024
    max_binary_bytes: int = 128 * MiB

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Limits.{name} must be a non-negative int, got {value!r}")
        if self.max_atom_chars > MAX_ATOM_CHARS:
            raise ValueError(f"Limits.max_atom_chars cannot exceed OTP's {MAX_ATOM_CHARS}")


DEFAULT_LIMITS = Limits()
