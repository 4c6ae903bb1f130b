"""The quickstart trains end to end; classification and gradient accumulation run the same loop."""

import math

import pytest

from configs import langid
from noembed import train
from tests.run_metrics import read_metrics


def test_quickstart_tiny_validation_bits_per_byte_goes_down(tiny_config, tmp_path):
  config = tiny_config
  config.num_train_steps = 40
  config.eval_every_steps = 40
  config.checkpoint_every_steps = 40
  config.log_every_steps = 10
  config.optimizer.warmup_steps = 5
  result = train.run(config, tmp_path)
  assert result.step == 40 and result.stopped_by == "done"
  validation = read_metrics(tmp_path, "validation")
  assert sorted(validation) == [0, 40]
  start, end = validation[0]["bits_per_byte"], validation[40]["bits_per_byte"]
  assert math.isfinite(start) and end < start - 1.0, (start, end)
  train_records = read_metrics(tmp_path)
  assert sorted(train_records) == [10, 20, 30, 40]
  for record in train_records.values():
    for key in ("loss", "bits_per_byte", "examples_per_second", "bytes_per_second",
                "grad_norm", "learning_rate"):
      assert math.isfinite(record[key]) and record[key] >= 0, key
  assert list((tmp_path / "tensorboard").iterdir())
  assert (tmp_path / "config.json").exists()


def _classification_config(data_dir, grad_accum_steps):
  config = langid.get_config("size=tiny")
  config.data.data_dir = data_dir
  config.model.dropout_rate = 0.0
  config.num_train_steps = 3
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 100
  config.grad_accum_steps = grad_accum_steps
  return config


def test_gradient_accumulation_matches_the_full_batch(data_dir, tmp_path):
  losses = {}
  for accum in (1, 2):
    train.run(_classification_config(data_dir, accum), tmp_path / str(accum))
    records = read_metrics(tmp_path / str(accum))
    losses[accum] = [records[step]["loss"] for step in (1, 2, 3)]
    assert "accuracy" in records[3]
  # Per-example means over equal halves average to the full-batch mean: same updates.
  assert losses[2] == pytest.approx(losses[1], abs=1e-5)
  assert losses[1][0] != losses[1][2]


@pytest.mark.slow
def test_full_quickstart_learns(data_dir, tmp_path):
  """The README's quickstart config as it is (~3 minutes on 2 cores)."""
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config()
  config.data.data_dir = data_dir
  result = train.run(config, tmp_path)
  assert result.step == config.num_train_steps
  validation = read_metrics(tmp_path, "validation")
  assert validation[config.num_train_steps]["bits_per_byte"] < validation[0]["bits_per_byte"] - 3
