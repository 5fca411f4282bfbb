"""Benchmarks: `python -m bench` measures the project against a reference harness."""
