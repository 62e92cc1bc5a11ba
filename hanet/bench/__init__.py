"""Benchmarks: `python -m hanet.bench ops` (kernel micro-benchmarks) and `model`."""
