"""Benchmarks: speed and memory with recorded results (not timed tests)."""
