"""Fixtures for the training-system tests: the bundled corpus built once, a tiny config."""

import json
from pathlib import Path

import pytest

from configs import quickstart


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from noembed.data import tfds_udhr  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  path = tmp_path_factory.mktemp("tfds")
  tfds_udhr.build(str(path))
  return str(path)


@pytest.fixture
def tiny_config(data_dir):
  """The quickstart's tiny variant with dropout, reading the session's corpus."""
  config = quickstart.get_config("size=tiny")
  config.data.data_dir = data_dir
  config.model.dropout_rate = 0.1
  return config


def read_metrics(workdir, split: str = "train") -> dict[int, dict]:
  """step -> the last record of `split` logged for that step."""
  records = {}
  for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if record["split"] == split:
      records[record["step"]] = record
  return records
