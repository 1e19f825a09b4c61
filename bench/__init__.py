"""Benchmarks (run as modules: python -m bench.codec_bench)."""
