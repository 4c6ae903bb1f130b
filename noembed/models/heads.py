"""Output heads the tasks ask models for."""

import dataclasses

import flax.linen as nn
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """What a task needs from a model.

  kind: "units" (logits [B, L, num_heads, vocab_size] at the input method's unit resolution,
    upsampling where the embedder downsampled), "pooled" (logits [B, num_classes] from the
    masked mean of the final states) or "targets" (an encoder-decoder's logits
    [B, T, vocab_size] over ByT5 byte targets).
  """

  kind: str
  vocab_size: int = 0
  num_heads: int = 1
  num_classes: int = 0


class UnitHead(nn.Module):
  """num_heads independent softmaxes over vocab_size classes at every position.

  The output projection is padded to a multiple of 128 columns (as T5/ByT5 pad their
  vocabulary) so it shards over any model axis; the padding columns are sliced off.
  """

  num_heads: int
  vocab_size: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD):
    outputs = self.num_heads * self.vocab_size
    padded = -(-outputs // 128) * 128
    logits_BxLxP = nn.Dense(
        padded, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                 ("embed", "vocab")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
        name="logits")(x_BxLxD)
    logits = logits_BxLxP[..., :outputs].astype(jnp.float32)
    return logits.reshape(logits.shape[:-1] + (self.num_heads, self.vocab_size))


class PooledHead(nn.Module):
  """Masked mean over real positions, then a linear classifier."""

  num_classes: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD, mask_BxL):
    weights = mask_BxL.astype(jnp.float32)[..., None]
    pooled_BxD = (x_BxLxD.astype(jnp.float32) * weights).sum(1) / jnp.maximum(
        weights.sum(1), 1.0)
    logits = nn.Dense(
        self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                 ("embed", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
        name="classifier")(pooled_BxD.astype(self.dtype))
    return logits.astype(jnp.float32)
