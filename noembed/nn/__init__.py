"""Flax linen modules: pure functions of (params, inputs)."""
