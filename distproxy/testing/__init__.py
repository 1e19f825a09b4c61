"""Real-BEAM harness: start erl nodes and drive them from Python (tests, bench, demo)."""
