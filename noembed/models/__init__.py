"""Whole models assembled from noembed.nn by config.model.name.

A model takes the inputs dict of the config-selected input method, embeds it with that
method's embedder (so config.embedder.name changes without touching the model) and ends in the
head the task asks for (`heads.HeadSpec`).
"""

import ml_collections

from noembed.models import encoder, encoder_decoder
from noembed.models.heads import HeadSpec

_FAMILIES = {
    "encoder": encoder,
    "encoder_decoder": encoder_decoder,
}


def default_section(name: str) -> ml_collections.ConfigDict:
  if name not in _FAMILIES:
    raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_FAMILIES))}")
  return _FAMILIES[name].default_config()


def build(config: ml_collections.ConfigDict, head: HeadSpec):
  """The linen Module for config.model with the task's head."""
  return _FAMILIES[config.model.name].build(config, head)


__all__ = ["HeadSpec", "build", "default_section"]
