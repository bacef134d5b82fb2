"""Benchmarks (``make bench``): not tests. Each ``bench_*.py`` module has ``main() -> dict`` of figures."""
