"""Multi-head attention: full, block-local, and T5's bucketed relative position bias.

Matches BERT self-attention (Devlin et al. 2019; transformers `BertSelfAttention`), T5's
unscaled attention with relative position buckets (Raffel et al. 2020; mesh_tensorflow
`transformer_layers._relative_position_bucket`, transformers `T5Attention`), and CANINE's local
attention with chunk width == stride and no first-position tricks (Clark et al. 2022;
transformers `CanineAttention(local=True)`).
"""

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

# Masked logits are replaced (not offset) by this; softmax runs in float32, so it is safe for
# any compute dtype, and a fully masked row becomes a uniform average instead of NaN.
_MASKED_LOGIT = float(jnp.finfo(jnp.float32).min)


def fan_in_normal(in_axis, out_axis) -> Initializer:
  """T5X's default kernel init: normal with variance 1 / fan_in (fan_in over `in_axis`)."""
  return nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=in_axis,
                                          out_axis=out_axis)


def _scaled(init: Initializer, factor: float) -> Initializer:
  return lambda *args: init(*args) * factor


def _pad_axis(x: jax.Array, axis: int, length: int, value) -> jax.Array:
  padding = [(0, 0)] * x.ndim
  padding[axis] = (0, length - x.shape[axis])
  return jnp.pad(x, padding, constant_values=value)


def _diagonal_blocks(x_xQxK: jax.Array, block_size: int, pad_value) -> jax.Array:
  """[..., Q, K] -> [..., N, Qb, block]: the diagonal blocks, Q == K padded to N * block.

  Q may be 1 (a key-only mask or bias broadcast over queries); then Qb is 1 as well.
  """
  *leading, query_length, key_length = x_xQxK.shape
  num_blocks = -(-key_length // block_size)
  padded = num_blocks * block_size
  x_xQxK = _pad_axis(x_xQxK, -1, padded, pad_value)
  if query_length == 1:
    x_xQxNxK = x_xQxK.reshape(*leading, 1, num_blocks, block_size)
    return jnp.swapaxes(x_xQxNxK, -2, -3)
  x_xQxK = _pad_axis(x_xQxK, -2, padded, pad_value)
  x_xNxQxNxK = x_xQxK.reshape(*leading, num_blocks, block_size, num_blocks, block_size)
  x_xQxKxN = jnp.diagonal(x_xNxQxNxK, axis1=-4, axis2=-2)
  return jnp.moveaxis(x_xQxKxN, -1, -3)


class MultiHeadAttention(nn.Module):
  """Multi-head dot-product attention of queries from x_q over keys/values from x_kv.

  mask_BxQxK: bool, True where a query may attend a key; any shape broadcastable to [B, Q, K]
    (a key padding mask is [B, 1, K]). bias_BxHxQxK: added to the logits (relative positions),
    broadcastable to [B, H, Q, K].
  block_size: block-diagonal local self-attention (CANINE's local layer, chunk width = stride):
    queries in block i attend keys in block i only; needs Q == K; a short last block is padded
    with masked keys. Costs O(L * block_size), never materialising an [L, L] logit matrix.
  scale_logits: False for T5, which folds 1/sqrt(head_dim) into the query init instead.
  kernel_init: None for T5X's fan-in normal; BERT uses truncated_normal(0.02).
  """

  num_heads: int
  head_dim: int
  d_model: int
  use_bias: bool = True
  dropout_rate: float = 0.0
  block_size: int | None = None
  scale_logits: bool = True
  kernel_init: Initializer | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _project_in(self, x_BxLxE: jax.Array, name: str) -> jax.Array:
    init = self.kernel_init or fan_in_normal(0, (1, 2))
    if name == "query" and not self.scale_logits:
      init = _scaled(init, self.head_dim**-0.5)
    init = nn.with_logical_partitioning(init, ("embed", "heads", "kv"))
    kernel_ExHxDh = self.param(
        name, init, (x_BxLxE.shape[-1], self.num_heads, self.head_dim), self.param_dtype)
    x_BxLxHxDh = jnp.einsum("ble,ehk->blhk", x_BxLxE.astype(self.dtype),
                            kernel_ExHxDh.astype(self.dtype))
    if self.use_bias:
      bias_HxDh = self.param(f"{name}_bias", nn.with_logical_partitioning(
          nn.initializers.zeros, ("heads", "kv")), (self.num_heads, self.head_dim),
                            self.param_dtype)
      x_BxLxHxDh = x_BxLxHxDh + bias_HxDh.astype(self.dtype)
    return nn.with_logical_constraint(x_BxLxHxDh, ("batch", "length", "heads", "kv"))

  def _attend(self, q_xQxHxDh, k_xKxHxDh, v_xKxHxDh, mask, bias, deterministic):
    """Softmax attention over the leading batch (and block) axes; mask/bias carry a head axis."""
    logits = jnp.einsum("...qhd,...khd->...hqk", q_xQxHxDh, k_xKxHxDh,
                        preferred_element_type=jnp.float32)
    if self.scale_logits:
      logits = logits * self.head_dim**-0.5
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, _MASKED_LOGIT)
    probs = jax.nn.softmax(logits, axis=-1)
    probs = nn.Dropout(self.dropout_rate)(probs, deterministic=deterministic)
    return jnp.einsum("...hqk,...khd->...qhd", probs.astype(self.dtype), v_xKxHxDh)

  def _attend_blocks(self, q_BxLxHxDh, k_BxLxHxDh, v_BxLxHxDh, mask, bias, deterministic):
    batch, length = q_BxLxHxDh.shape[:2]
    block = self.block_size
    num_blocks = -(-length // block)

    def blocked(x_BxLxHxDh):
      x_BxLxHxDh = _pad_axis(x_BxLxHxDh, 1, num_blocks * block, 0)
      return x_BxLxHxDh.reshape(batch, num_blocks, block, *x_BxLxHxDh.shape[2:])

    mask_BxQxK = jnp.ones((1, 1, length), bool) if mask is None else mask
    mask_BxQxK = mask_BxQxK.reshape((1,) * (3 - mask_BxQxK.ndim) + mask_BxQxK.shape)
    mask_BxNxQbxK = _diagonal_blocks(mask_BxQxK, block, False)
    bias_BxNxHxQbxK = None
    if bias is not None:
      bias = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)
      bias_BxNxHxQbxK = jnp.swapaxes(_diagonal_blocks(bias, block, 0), 1, 2)
    out_BxNxQxHxDh = self._attend(
        blocked(q_BxLxHxDh), blocked(k_BxLxHxDh), blocked(v_BxLxHxDh),
        mask_BxNxQbxK[:, :, None], bias_BxNxHxQbxK, deterministic)
    out_BxLxHxDh = out_BxNxQxHxDh.reshape(batch, num_blocks * block, *out_BxNxQxHxDh.shape[3:])
    return out_BxLxHxDh[:, :length]

  @nn.compact
  def __call__(self, x_q_BxQxD, x_kv_BxKxD, mask_BxQxK=None, *, bias_BxHxQxK=None,
               deterministic: bool) -> jax.Array:
    q_BxQxHxDh = self._project_in(x_q_BxQxD, "query")
    k_BxKxHxDh = self._project_in(x_kv_BxKxD, "key")
    v_BxKxHxDh = self._project_in(x_kv_BxKxD, "value")
    if self.block_size is None:
      mask = None if mask_BxQxK is None else jnp.expand_dims(mask_BxQxK, -3)
      out_BxQxHxDh = self._attend(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, mask, bias_BxHxQxK,
                                 deterministic)
    else:
      if x_q_BxQxD.shape[1] != x_kv_BxKxD.shape[1]:
        raise ValueError(f"block-local attention needs as many queries as keys, got "
                         f"{x_q_BxQxD.shape[1]} queries and {x_kv_BxKxD.shape[1]} keys")
      out_BxQxHxDh = self._attend_blocks(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, mask_BxQxK,
                                        bias_BxHxQxK, deterministic)
    out_kernel_HxDhxD = self.param(
        "out", nn.with_logical_partitioning(self.kernel_init or fan_in_normal((0, 1), 2),
                                            ("heads", "kv", "embed")),
        (self.num_heads, self.head_dim, self.d_model), self.param_dtype)
    y_BxQxD = jnp.einsum("bqhk,hkd->bqd", out_BxQxHxDh, out_kernel_HxDhxD.astype(self.dtype))
    if self.use_bias:
      out_bias_D = self.param("out_bias", nn.with_logical_partitioning(
          nn.initializers.zeros, ("embed",)), (self.d_model,), self.param_dtype)
      y_BxQxD = y_BxQxD + out_bias_D.astype(self.dtype)
    return y_BxQxD


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> jax.Array:
  """T5's bucket of `key_position - query_position` (mesh_tensorflow, float32 as there).

  Half the buckets (per direction, when bidirectional) are exact distances, the rest grow
  logarithmically up to max_distance; farther distances share the last bucket. Unidirectional
  (decoder) buckets treat every future position as distance 0.
  """
  bucket = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (relative_position > 0).astype(relative_position.dtype) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # Distance 0 is always small; the maximum only keeps log(0) out of the unused branch.
  log_ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
  large = max_exact + (log_ratio / math.log(max_distance / max_exact)
                       * (num_buckets - max_exact)).astype(relative_position.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
  """T5's learned per-head scalar bias for each relative position bucket: -> [1, H, Q, K].

  Computed once per stack and shared by all its layers. Init as T5X (fan-avg uniform).
  """

  num_heads: int
  bidirectional: bool = True
  num_buckets: int = 32
  max_distance: int = 128
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, query_length: int, key_length: int) -> jax.Array:
    embedding_UxH = self.param(
        "embedding", nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), (None, "heads")),
        (self.num_buckets, self.num_heads), self.param_dtype)
    relative_QxK = jnp.arange(key_length)[None, :] - jnp.arange(query_length)[:, None]
    bucket_QxK = relative_position_bucket(
        relative_QxK, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
        max_distance=self.max_distance)
    bias_QxKxH = jnp.take(embedding_UxH.astype(self.dtype), bucket_QxK, axis=0)
    return jnp.transpose(bias_QxKxH, (2, 0, 1))[None]
