"""The training system: one sharded loop for every model family and task.

`run(config, workdir)` is the entry point that launch.py, tests and notebooks call.
"""


def run(config, workdir):
  """Trains `config` in `workdir` (resuming from it); see noembed.train.loop.run."""
  from noembed.train import loop  # pylint: disable=g-import-not-at-top
  return loop.run(config, workdir)
