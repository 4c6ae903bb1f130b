"""Whole models assembled from noembed.nn by config."""
