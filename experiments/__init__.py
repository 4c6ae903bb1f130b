"""Experiments: sweeps runner, reports, benchmarks and paper reproductions."""
