"""Benchmarks and measuring tools, not part of the runtime.

`python -m bench` (the side-by-side report), `python -m bench.serve` (Lambda figures), ...
"""
