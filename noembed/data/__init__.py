"""tfds builders for bundled corpora and grain pipelines."""
