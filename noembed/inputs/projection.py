"""PRADO / pQRNN projection: noembed.text.projection into noembed.nn.embedders.projection.

Kaliamoorthi et al. 2019 (PRADO), 2021 (pQRNN); seq_flow_lite's sequence_string_projection.
With `packed` the pipeline ships uint32 codes (16 features each, 4x fewer bytes than int8
features), unpacked on device. The training-time distortion (and the capitalisation features
sampled with 0 < p < 1) draw from `distortion_seed`; encode's `seed` overrides it per call,
so a pipeline that wants a different distortion for every example and epoch passes e.g.
`seed=hash((config seed, epoch, batch index))`, deterministically, and evaluation leaves
distortion_probability at 0.
"""

import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.nn import projection_codes
from noembed.nn.embedders import projection as projection_embedder
from noembed.text import projection as projection_text

_FRONT_END_KEYS = ("split_on", "lowercase", "vocabulary", "add_bos", "add_eos", "max_splits",
                   "distortion_probability", "distortion_seed", "word_novelty_bits",
                   "doc_size_levels", "add_first_cap_feature", "add_all_caps_feature")


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "feature_size": 512,
      "max_tokens": 128,            # positions per example, BOS/EOS included
      "split_on": "space",          # or "codepoint"
      "lowercase": True,
      "vocabulary": "",             # allowed characters; "" allows all
      "add_bos": False,
      "add_eos": True,
      "max_splits": -1,             # the op's token limit; -1: none
      "distortion_probability": 0.0,
      "distortion_seed": 0,
      "word_novelty_bits": 0,       # 0 = off; float features, so not with `packed`
      "doc_size_levels": 0,         # 0 = off; float features, so not with `packed`
      "add_first_cap_feature": 0.0,
      "add_all_caps_feature": 0.0,
      "packed": False,
      "activation": "relu",
      "batch_norm": True,
  })


def _options(config, seed=None) -> dict:
  options = {key: config[key] for key in _FRONT_END_KEYS}
  if seed is not None:
    options["distortion_seed"] = seed
  return options


def encode(texts, config, stats=None, *, seed=None):
  """The inputs dict: {"features", "mask"}, or {"codes", "mask"} when config.packed."""
  function = projection_text.project_packed if config.packed else projection_text.project
  values, mask = function(texts, config.feature_size, config.max_tokens, stats=stats,
                          **_options(config, seed))
  return {"codes" if config.packed else "features": values, "mask": mask}


def build_embedder(config, *, d_model, dtype, param_dtype):
  return projection_embedder.ProjectionEmbedder(
      feature_size=config.feature_size, d_model=d_model, activation=config.activation,
      batch_norm=config.batch_norm, dtype=dtype, param_dtype=param_dtype)


def masked_units(config):
  """Mask whole tokens (features -> all zero) and predict each of their F ternary features."""
  if config.word_novelty_bits or config.doc_size_levels:
    raise ValueError("masked units need ternary features; got word_novelty_bits="
                     f"{config.word_novelty_bits}, doc_size_levels={config.doc_size_levels}")
  key = "codes" if config.packed else "features"

  def maskable(batch):
    mask = batch["mask"].astype(bool)
    position = jnp.arange(mask.shape[1])[None, :]
    length = jnp.sum(mask, axis=1, keepdims=True)
    if config.add_bos:
      mask &= position != 0
    if config.add_eos:
      mask &= position != length - 1
    return mask

  def corrupt(batch, masked):
    return {**batch, key: jnp.where(masked[..., None], jnp.zeros_like(batch[key]), batch[key])}

  def targets(batch):
    if config.packed:
      features = projection_codes.unpack(batch["codes"], config.feature_size, jnp.int32)
    else:
      features = batch["features"].astype(jnp.int32)
    return features + 1

  return inputs.MaskedUnits(
      key=key, maskable=maskable, corrupt=corrupt, targets=targets,
      num_heads=config.feature_size, vocab_size=3, unit_bytes=None)


inputs.register(inputs.InputMethod(
    name="projection", default_config=default_config, encode=encode,
    build_embedder=build_embedder, masked_units=masked_units))
