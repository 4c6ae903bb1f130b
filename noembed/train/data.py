"""Train and eval iterators for a config and task: tfds source -> grain pipeline -> batches."""

import jax
import tensorflow_datasets as tfds

from noembed.data import pipeline, tfds_udhr


def make_iterator(config, task, split: str, *, train: bool):
  """This process's iterator over `split`: shuffled and repeated when `train`, one pass if not.

  Each element is the task's batch (process-local numpy arrays of batch_size / process_count
  examples); eval batches carry `example_valid` for the padding of the last batch.
  """
  data_dir = config.data.data_dir or None
  tfds.disable_progress_bar()
  tfds_udhr.build(data_dir)
  source = tfds_udhr.data_source(split, data_dir)
  return pipeline.make_iterator(
      source, batch_fn=task.batch_fn, batch_size=config.batch_size // jax.process_count(),
      seed=config.seed, shuffle=train, repeat=train, process_index=jax.process_index(),
      process_count=jax.process_count(), pack_bytes=task.data.pack_bytes,
      num_workers=config.data.num_workers)
