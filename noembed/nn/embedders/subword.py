"""The subword baseline's input layer: an ordinary vocabulary embedding table.

This is the table the other methods do without. Paper: Kudo & Richardson 2018 (sentencepiece),
used as T5 does (Raffel et al. 2020): ids from noembed.text.subword looked up in an
[vocab_size, d_model] table, pad included as row 0.
"""

import flax.linen as nn
import jax.numpy as jnp

from noembed.nn.embedders.base import Embedded


class SubwordEmbedder(nn.Module):
  """ids [B, L] int32 -> Embedded(x [B, L, d_model], mask [B, L])."""

  vocab_size: int = 8000
  d_model: int = 256
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    del deterministic
    embed = nn.Embed(
        self.vocab_size, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        name="embedding")
    x_BxLxD = embed(inputs["ids"])
    return Embedded(x=x_BxLxD, mask=inputs["mask"].astype(bool))
