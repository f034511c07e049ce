"""Benchmarks and measuring tools (`python -m bench.serve`, ...); not part of the runtime."""
