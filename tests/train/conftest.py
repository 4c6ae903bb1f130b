"""Fixtures for the training-system tests: the quickstart's tiny config on the session corpus."""

import pytest

from configs import quickstart


@pytest.fixture
def tiny_config(data_dir):
  """The quickstart's tiny variant with dropout, reading the session's corpus."""
  config = quickstart.get_config("size=tiny")
  config.data.data_dir = data_dir
  config.model.dropout_rate = 0.1
  return config
