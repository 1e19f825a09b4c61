"""Hypothesis strategies producing every term type the codec maps, nested."""

from __future__ import annotations

from hypothesis import strategies as st

from distproxy.term import (Atom, BitBinary, Export, Fun, ImproperList, MapKey, Pid, Port,
                            Reference)

u32 = st.integers(0, 2**32 - 1)

atoms = st.one_of(
    st.sampled_from(["", "ok", "true", "undefined", "net_kernel", "ünï", "日本", "a b"]),
    st.text(max_size=12),
    st.integers(250, 255).map(lambda n: "\U0001F600" * n),
    st.integers(250, 255).map(lambda n: "x" * n),
).map(Atom)

nodes = st.sampled_from(["ec2_node@127.0.0.1", "bob_colo@10.0.0.2", "n@h", "ünï@host"]).map(Atom)

pids = st.builds(Pid, nodes, u32, u32, u32)
ports = st.builds(Port, nodes, st.one_of(st.integers(0, 2**28 - 1), st.integers(0, 2**64 - 1)), u32)
refs = st.builds(Reference, nodes, u32, st.lists(u32, min_size=1, max_size=5).map(tuple))
# OTP's own refs are 3 words, and 5 with pid refs; keep the differential to those
otp_refs = st.builds(Reference, nodes, u32,
                     st.one_of(st.lists(u32, min_size=3, max_size=3),
                               st.lists(u32, min_size=5, max_size=5)).map(tuple))
exports = st.builds(Export, atoms, atoms, st.integers(0, 255))
ints = st.one_of(st.integers(0, 255), st.integers(-2**31, 2**31 - 1),
                 st.integers(-2**64, 2**64), st.integers(-2**2100, 2**2100))
floats = st.floats(allow_nan=False, allow_infinity=False)
bitbins = st.builds(BitBinary, st.binary(min_size=1, max_size=6), st.integers(1, 7))
strings = st.lists(st.integers(0, 255), min_size=1, max_size=20)


def leaves(ref_strategy: st.SearchStrategy = refs) -> st.SearchStrategy:
    return st.one_of(atoms, ints, floats, st.binary(max_size=30), bitbins, pids, ports,
                     ref_strategy, exports, st.just([]), st.just(()), st.just({}), strings)


def _funs(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(Fun, atoms, st.integers(0, 255), st.binary(min_size=16, max_size=16),
                     u32, st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1),
                     pids, st.lists(children, max_size=3).map(tuple))


def _improper(children: st.SearchStrategy, leaf: st.SearchStrategy) -> st.SearchStrategy:
    tails = leaf.filter(lambda t: not isinstance(t, list))
    return st.builds(ImproperList, st.lists(children, min_size=1, max_size=4).map(tuple), tails)


def _map_keys(children: st.SearchStrategy) -> st.SearchStrategy:
    def wrap(key: object) -> object:
        try:
            hash(key)
        except TypeError:
            return MapKey(key)
        return key
    return children.map(wrap)


def terms(ref_strategy: st.SearchStrategy = refs, with_funs: bool = True,
          max_leaves: int = 25) -> st.SearchStrategy:
    leaf = leaves(ref_strategy)

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        options = [
            st.lists(children, max_size=5).map(tuple),
            st.lists(children, max_size=5),
            _improper(children, leaf),
            st.dictionaries(_map_keys(children), children, max_size=5),
        ]
        if with_funs:
            options.append(_funs(children))
        return st.one_of(*options)

    return st.recursive(leaf, extend, max_leaves=max_leaves)
