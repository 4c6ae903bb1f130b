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


def train_on_data_model_mesh(config, data_dir: str, workdir, num_steps: int = 20):
  """Trains `config` for num_steps on a (data=4, model=2) mesh; (validation at 0, at the end)."""
  from noembed import train  # pylint: disable=g-import-not-at-top
  config.data.data_dir = data_dir
  config.mesh.update(data=4, fsdp=1, model=2)
  config.num_train_steps = num_steps
  config.log_every_steps = 5
  config.eval_every_steps = num_steps
  config.checkpoint_every_steps = num_steps
  assert train.run(config, workdir).step == num_steps
  validation = read_metrics(workdir, "validation")
  return validation[0], validation[num_steps]
