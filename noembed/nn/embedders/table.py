"""The input layer of the ids-based methods: an ordinary embedding table.

Two methods use it. ByT5 bytes (Xue et al. 2022, google-research/byt5): 259 byte ids in a table
padded to 384 rows. The subword baseline (sentencepiece, Kudo & Richardson 2018, as in T5):
[vocab_size, d_model], the very table the other methods do without; pad is row 0 in both.
"""

import flax.linen as nn
import jax.numpy as jnp

from noembed.nn.embedders.base import Embedded


class TableEmbedder(nn.Module):
  """ids [B, L] int32 -> Embedded(x [B, L, d_model], mask [B, L])."""

  num_rows: int
  d_model: int = 256
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    del deterministic
    embed = nn.Embed(
        self.num_rows, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        name="embedding")
    x_BxLxD = embed(inputs["ids"])
    return Embedded(x=x_BxLxD, mask=inputs["mask"].astype(bool))
