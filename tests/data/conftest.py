"""Fixtures for the data tests: the session's built corpus (see tests/conftest.py)."""

import pytest


@pytest.fixture(scope="session")
def udhr_data_dir(data_dir) -> str:
  return data_dir
