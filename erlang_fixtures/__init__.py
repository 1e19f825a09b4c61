"""Erlang sources shipped with distproxy (installed as ``distproxy.erlang_fixtures``).

- ``dp_agent.erl``: a control agent that tests, the benchmark and the demo start inside
  real ``erl`` nodes to drive them from Python over a private pipe.
- ``dp_test_server.erl``: a small gen_server used as a registered target in tests.
- ``distproxy_epmd.erl``: an ``-epmd_module`` for the trusted node, so that every node name
  it dials is resolved by distproxy (and so dialled through it) without application changes.
"""
