"""Builds the UDHR tfds dataset once per test session into a temporary dir."""

import time

import pytest

from noembed.data import tfds_udhr


@pytest.fixture(scope="session")
def udhr_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the built dataset; the build time is reported in the pytest output."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  start = time.perf_counter()
  tfds_udhr.build(data_dir)
  print(f"\nnoembed_udhr tfds build: {time.perf_counter() - start:.2f} s")
  return data_dir
