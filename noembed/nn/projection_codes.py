"""Device-side decoding of packed projection codes (noembed.text.projection.project_packed).

Each uint32 holds 16 features, two bits each, least significant first, decoded through the
seq_flow_lite table {0: 0, 1: +1, 2: -1, 3: 0} (tf_ops/sequence_string_projection.cc).
"""

import jax
import jax.numpy as jnp

FEATURES_PER_WORD = 16


def unpack(codes: jax.Array, feature_size: int, dtype=jnp.int8) -> jax.Array:
  """codes uint32 [..., W] -> features [..., feature_size] in {-1, 0, +1}, W = feature_size / 16."""
  if feature_size % FEATURES_PER_WORD or codes.shape[-1] != feature_size // FEATURES_PER_WORD:
    raise ValueError(f"codes of shape {codes.shape} do not hold feature_size={feature_size}; "
                     f"expected a last axis of feature_size / {FEATURES_PER_WORD}")
  shifts = 2 * jnp.arange(FEATURES_PER_WORD, dtype=jnp.uint32)
  fields = ((codes.astype(jnp.uint32)[..., None] >> shifts) & 3).astype(jnp.int8)
  # (low bit) - (high bit): 0 -> 0, 1 -> +1, 2 -> -1, 3 -> 0.
  values = (fields & 1) - (fields >> 1)
  return values.reshape(*codes.shape[:-1], feature_size).astype(dtype)
