"""Benchmarks: each prints a table and writes JSON; none asserts a time."""
