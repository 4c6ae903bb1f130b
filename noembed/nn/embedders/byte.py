"""ByT5's input layer: an ordinary embedding of the 259 byte ids, padded to 384 rows.

Paper: Xue et al. 2022, "ByT5: Towards a token-free future with pre-trained byte-to-byte
models". Reference: google-research/byt5 (a T5 vocabulary of 256 bytes + 3 specials, embedding
rows padded to a multiple of 128).
"""

import flax.linen as nn
import jax.numpy as jnp

from noembed.nn.embedders.base import Embedded


class ByteEmbedder(nn.Module):
  """ids [B, L] int32 -> Embedded(x [B, L, d_model], mask [B, L])."""

  vocab_rows: int = 384
  d_model: int = 256
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    del deterministic
    embed = nn.Embed(
        self.vocab_rows, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        name="embedding")
    x_BxLxD = embed(inputs["ids"])
    return Embedded(x=x_BxLxD, mask=inputs["mask"].astype(bool))
