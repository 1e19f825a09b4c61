"""Install a minimal ETF stand-in if the real ``distproxy.term`` codec is not there yet."""

import distproxy.term as _term

if not hasattr(_term, "decode_at"):  # pragma: no cover - only before the codec lands
    from . import _etf_shim

    for _name in (
        "DecodeError", "EncodeError", "Limits", "DEFAULT_LIMITS", "Atom", "Pid",
        "Reference", "encode", "decode", "decode_at", "skip_at",
    ):
        setattr(_term, _name, getattr(_etf_shim, _name))
