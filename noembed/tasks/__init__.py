"""Objectives, losses, metrics and batch builders."""
