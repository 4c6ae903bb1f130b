"""--dry_run: build the model from shapes only and print its parameter table."""

import math

import jax
import numpy as np

from noembed import models, tasks
from noembed.train import optimizer as optimizer_lib
from noembed.train import state as state_lib
from noembed.tasks.common import HOST_PREFIX


def count_parameters(params) -> dict[str, int]:
  """Parameters per top-level module of a params tree."""
  return {name: sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(subtree))
          for name, subtree in params.items()}


def parameter_table(config) -> str:
  """One row per top-level module with its share; the input layer is the `embedder` row."""
  task = tasks.build(config)
  model = models.build(config, task.head)
  tx, _ = optimizer_lib.make(config.optimizer, config.num_train_steps)
  batch = task.batch_fn([{"text": "", "language": "", "script": ""}])
  batch["example_valid"] = np.ones((1,), bool)
  batch = {key: value for key, value in batch.items() if not key.startswith(HOST_PREFIX)}
  abstract = state_lib.abstract_state(model, tx, batch, jax.random.PRNGKey(0))
  counts = count_parameters(abstract.params)
  total = sum(counts.values())
  labels = {name: f"{name} (input layer)" if name == "embedder" else name for name in counts}
  width = max(len(label) for label in labels.values()) + 2
  lines = [f"model {config.model.name} / embedder {config.embedder.name} / task "
           f"{config.task.name}", f"{'module':<{width}}{'parameters':>14}{'share':>9}"]
  for name, count in counts.items():
    lines.append(f"{labels[name]:<{width}}{count:>14,}{100 * count / total:>8.2f}%")
  lines.append(f"input layer share: {100 * counts.get('embedder', 0) / total:.2f}%")
  lines.append(f"total parameters: {total}")
  return "\n".join(lines)
