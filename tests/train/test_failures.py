"""A non-finite loss stops the run naming the step and keeps the last good checkpoint."""

import pytest

from noembed import train
from noembed.train import checkpoint, loop


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tiny_config, tmp_path):
  config = tiny_config
  config.num_train_steps = 50
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 1000
  config.optimizer.update(learning_rate=1e35, warmup_steps=0, grad_clip_norm=0.0,
                          schedule="constant")
  with pytest.raises(loop.NonFiniteLoss, match=r"at step \d+") as error:
    train.run(config, tmp_path)
  failed_step = int(error.value.args[0].split("at step ")[1].split(";")[0])
  steps = checkpoint.Checkpointer(tmp_path / "checkpoints", 3).steps()
  assert steps and max(steps) < failed_step
