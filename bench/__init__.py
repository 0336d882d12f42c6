"""Benchmarks against the real local platform; each prints a ratio measured in the same run."""
