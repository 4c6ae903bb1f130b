"""VTR's input layer: rendered text slices -> d_model vectors, plus sinusoidal positions.

Paper: Salesky, Etter & Post 2021, "Robust Open-Vocabulary Translation from Visual Text
Representations". Reference: esalesky/visrep, fairseq/modules/visual.py (DirectOCR, NLayerOCR)
and fairseq/models/visual/visual_transformer.py (VisualTextTransformerEncoder). As there:
pixels are scaled to [0, 1] (torchvision ToTensor: 255 = white = 1.0); `direct` flattens a slice
(row-major, H * W) into one linear layer; `conv1`/`conv2` first apply 1 or 2 blocks of 3x3 conv
(stride 1, zero padding 1, bias) + batch norm + ReLU at full resolution, no pooling, and flatten
channel-major (C, H, W) into the linear layer. visrep's blocks have one channel (`channels=1`)
and batch norm only with --image-embed-normalize (`batch_norm`; the paper's "1layernorm" runs
use it); an optional ReLU after the linear layer is --image-bridge-relu. The encoder then
multiplies by sqrt(d_model) and adds fairseq's sinusoidal positions (sin half then cos half,
timescales 10000^(-i / (d/2 - 1)), first real position 2 = padding_idx + 1, zeros at padding).
Initialisation is PyTorch's default for Linear and Conv2d (uniform +-1/sqrt(fan_in)), batch norm
starts at scale 1, bias 0, running mean 0, variance 1.

Batch norm differs in one way: statistics are taken over real slices only (the mask), so padding
never changes outputs; running averages follow PyTorch (momentum 0.1, unbiased running
variance, eps 1e-5) and are used when deterministic=True.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from noembed.nn.embedders.base import Embedded

VARIANTS = {"direct": 0, "conv1": 1, "conv2": 2}


def torch_uniform(fan_in: int):
  """PyTorch's default init of Linear and Conv2d weights and biases: U(-1/sqrt(fan_in), +)."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def fairseq_sinusoidal_positions(mask_BxN: jax.Array, d_model: int) -> jax.Array:
  """fairseq SinusoidalPositionalEmbedding with padding_idx 1: float32 [B, N, d_model]."""
  half = d_model // 2
  rate = math.log(10000.0) / max(half - 1, 1)
  inv_timescales = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -rate)
  positions_BxN = (jnp.cumsum(mask_BxN, axis=1) + 1).astype(jnp.float32)
  angles_BxNxH = positions_BxN[..., None] * inv_timescales
  table_BxNxD = jnp.concatenate([jnp.sin(angles_BxNxH), jnp.cos(angles_BxNxH)], axis=-1)
  if d_model % 2:
    table_BxNxD = jnp.pad(table_BxNxD, ((0, 0), (0, 0), (0, 1)))
  return jnp.where(mask_BxN[..., None], table_BxNxD, 0.0)


class MaskedBatchNorm(nn.Module):
  """Batch norm over the last axis with statistics from rows where `mask` is True.

  x [M, ..., C], mask [M]. Training: normalise with the masked biased variance and update the
  'batch_stats' running averages PyTorch's way; deterministic: use the running averages.
  """

  features: int
  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask_M, *, deterministic: bool):
    partitioned = lambda init: nn.with_logical_partitioning(init, ("features",))
    scale = self.param("scale", partitioned(nn.initializers.ones), (self.features,),
                       self.param_dtype)
    bias = self.param("bias", partitioned(nn.initializers.zeros), (self.features,),
                      self.param_dtype)
    running_mean = self.variable("batch_stats", "mean", partitioned(jnp.zeros),
                                 (self.features,), jnp.float32)
    running_var = self.variable("batch_stats", "var", partitioned(jnp.ones),
                                (self.features,), jnp.float32)
    if deterministic:
      mean, var = running_mean.value, running_var.value
    else:
      x32 = x.astype(jnp.float32)
      weight = mask_M.astype(jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1))
      reduce_axes = tuple(range(x.ndim - 1))
      count = jnp.sum(weight) * math.prod(x.shape[1:-1])
      safe_count = jnp.maximum(count, 1.0)
      mean = jnp.sum(x32 * weight, axis=reduce_axes) / safe_count
      var = jnp.sum(jnp.square(x32 - mean) * weight, axis=reduce_axes) / safe_count
      if not self.is_initializing():
        unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
        keep = count > 1.0  # no real rows: leave the running averages alone
        running_mean.value = jnp.where(
            keep, (1 - self.momentum) * running_mean.value + self.momentum * mean,
            running_mean.value)
        running_var.value = jnp.where(
            keep, (1 - self.momentum) * running_var.value + self.momentum * unbiased,
            running_var.value)
    inverse = jax.lax.rsqrt(var + self.epsilon) * scale.astype(jnp.float32)
    shift = bias.astype(jnp.float32) - mean * inverse
    return (x.astype(jnp.float32) * inverse + shift).astype(self.dtype)


class VisualEmbedder(nn.Module):
  """{"slices": uint8 [B, N, H, W], "mask": bool [B, N]} -> Embedded(x [B, N, d_model], mask)."""

  variant: str = "conv1"
  channels: int = 1
  batch_norm: bool = True
  bridge_relu: bool = False
  scale_embedding: bool = True
  positions: str = "sinusoidal"
  d_model: int = 256
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    if self.variant not in VARIANTS:
      raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
    if self.positions not in ("sinusoidal", "none"):
      raise ValueError(f"positions must be 'sinusoidal' or 'none', got {self.positions!r}")
    slices_BxNxHxW, mask_BxN = inputs["slices"], inputs["mask"].astype(bool)
    batch, length, height, width = slices_BxNxHxW.shape
    x_MxHxWxC = (slices_BxNxHxW.reshape(batch * length, height, width, 1).astype(self.dtype)
                 / 255.0)
    mask_M = mask_BxN.reshape(batch * length)
    for layer in range(VARIANTS[self.variant]):
      init = torch_uniform(9 * x_MxHxWxC.shape[-1])
      x_MxHxWxC = nn.Conv(
          self.channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
          param_dtype=self.param_dtype,
          kernel_init=nn.with_logical_partitioning(init, (None, None, None, "features")),
          bias_init=nn.with_logical_partitioning(init, ("features",)),
          name=f"conv_{layer}")(x_MxHxWxC)
      if self.batch_norm:
        x_MxHxWxC = MaskedBatchNorm(self.channels, dtype=self.dtype,
                                    param_dtype=self.param_dtype, name=f"norm_{layer}")(
                                        x_MxHxWxC, mask_M, deterministic=deterministic)
      x_MxHxWxC = nn.relu(x_MxHxWxC)
    # Channel-major flattening, as torch's view(M, C * H * W) of an NCHW tensor.
    pixels_MxF = x_MxHxWxC.transpose(0, 3, 1, 2).reshape(batch * length, -1)
    init = torch_uniform(pixels_MxF.shape[-1])
    x_MxD = nn.Dense(
        self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(init, ("features", "embed")),
        bias_init=nn.with_logical_partitioning(init, ("embed",)),
        name="bridge")(pixels_MxF)
    if self.bridge_relu:
      x_MxD = nn.relu(x_MxD)
    x_BxNxD = x_MxD.reshape(batch, length, self.d_model)
    if self.scale_embedding:
      x_BxNxD = x_BxNxD * math.sqrt(self.d_model)
    if self.positions == "sinusoidal":
      x_BxNxD = x_BxNxD + fairseq_sinusoidal_positions(mask_BxN, self.d_model).astype(self.dtype)
    x_BxNxD = jnp.where(mask_BxN[..., None], x_BxNxD, 0).astype(self.dtype)
    return Embedded(x=x_BxNxD, mask=mask_BxN)
