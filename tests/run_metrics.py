"""Reading a training run's workdir/metrics.jsonl in tests."""

import json
from pathlib import Path


def read_metrics(workdir, split: str = "train") -> dict[int, dict]:
  """step -> the last record of `split` logged for that step."""
  records = {}
  for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if record["split"] == split:
      records[record["step"]] = record
  return records
