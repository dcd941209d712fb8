"""Benchmarks: each prints one JSON line with its ratio to a baseline measured in the same run."""
