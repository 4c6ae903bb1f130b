"""Fixtures for the task tests: the bundled corpus built once per session."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from noembed.data import tfds_udhr  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  path = tmp_path_factory.mktemp("tfds")
  tfds_udhr.build(str(path))
  return str(path)


def read_metrics(workdir, split: str = "train") -> dict[int, dict]:
  """step -> the last record of `split` logged for that step."""
  records = {}
  for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if record["split"] == split:
      records[record["step"]] = record
  return records
