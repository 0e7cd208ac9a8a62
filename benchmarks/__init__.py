"""Benchmarks of convtools (make bench)."""
