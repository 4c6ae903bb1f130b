"""Test set-up: 8 forced CPU devices for sharding tests, offline model hubs."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """The bundled corpus's tfds dataset, built once per test session into a temporary dir."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from noembed.data import tfds_udhr  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  path = str(tmp_path_factory.mktemp("tfds"))
  tfds_udhr.build(path)
  return path
