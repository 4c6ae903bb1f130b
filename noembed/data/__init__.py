"""tfds builders for bundled corpora and grain pipelines."""

import ml_collections

DATASETS = ("udhr",)


def default_section(name: str) -> ml_collections.ConfigDict:
  """config.data: the bundled UDHR corpus is the one dataset so far."""
  if name not in DATASETS:
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
  return ml_collections.ConfigDict({
      "name": name,
      "data_dir": "",       # "" = env NOEMBED_DATA_DIR or ~/.cache/noembed/tfds
      "num_workers": 0,     # grain worker processes for the batch builder
  })
