"""PRADO / pQRNN input layer: ternary projection features -> dense bottleneck to d_model.

Papers: Kaliamoorthi et al. 2019 (PRADO), 2021 (pQRNN). Reference: tensorflow/models,
research/seq_flow_lite: `models/pqrnn.py` (Encoder: projection * mask, then
`dense_layers.BaseQDenseVarLen`), `layers/dense_layers.py` (matmul, bias, batch norm, then the
activation, ReLU by default), `layers/normalization_layers.py` (`VarLenBatchNormalization`) and
`layers/base_layers.py` (Glorot-uniform kernel, zero bias, `assign_moving_average`).

The masked batch norm follows the reference exactly, including two things that differ from the
usual batch norm:
- training normalises with the mean and the *second moment* E[x^2] (not the variance) of the
  bottleneck outputs over the real tokens of the whole batch; padding never enters them;
- the running statistics are updated as `old * (1 - ema_decay) + ema_decay * batch` with
  ema_decay = 0.999, i.e. almost entirely the latest batch (seq_flow_lite's
  assign_moving_average); epsilon is 1e-9.
Running statistics live in the 'batch_stats' collection ('mean', 'second_moment', float32):
`deterministic=False` normalises with the batch statistics and updates them (apply with
mutable=['batch_stats']), `deterministic=True` normalises with the running ones. A batch with
no real token leaves them unchanged (the reference would divide by zero). Outputs are zero at
padding. Quantisation (fake-quant) is not reproduced. PRADO uses two such bottlenecks (values
and attention logits); a PRADO model builds two of these modules.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from noembed.nn import projection_codes
from noembed.nn.embedders.base import Embedded

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh, "none": lambda x: x}


class ProjectionEmbedder(nn.Module):
  """{"features": [B, T, F] or "codes": uint32 [B, T, F/16], "mask": [B, T]} -> Embedded."""

  feature_size: int = 512
  d_model: int = 256
  activation: str = "relu"
  batch_norm: bool = True
  ema_decay: float = 0.999
  epsilon: float = 1e-9
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got "
                       f"{self.activation!r}")
    mask_BxT = inputs["mask"].astype(bool)
    if "codes" in inputs:
      features_BxTxF = projection_codes.unpack(inputs["codes"], self.feature_size, self.dtype)
    else:
      features_BxTxF = inputs["features"].astype(self.dtype)
    if features_BxTxF.shape[-1] != self.feature_size:
      raise ValueError(f"features have {features_BxTxF.shape[-1]} per token, expected "
                       f"feature_size={self.feature_size}")
    real_BxTx1 = mask_BxT[..., None].astype(self.dtype)
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(
            nn.initializers.glorot_uniform(), ("features", "embed")),
        (self.feature_size, self.d_model), self.param_dtype)
    bias = self.param(
        "bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)),
        (self.d_model,), self.param_dtype)
    x_BxTxD = jnp.einsum("btf,fd->btd", features_BxTxF * real_BxTx1, kernel.astype(self.dtype))
    x_BxTxD = x_BxTxD + bias.astype(self.dtype)
    if self.batch_norm:
      x_BxTxD = self._masked_batch_norm(x_BxTxD, mask_BxT, deterministic)
    x_BxTxD = ACTIVATIONS[self.activation](x_BxTxD) * real_BxTx1
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ("batch", "length", "embed"))
    return Embedded(x=x_BxTxD, mask=mask_BxT)

  def _masked_batch_norm(self, x_BxTxD, mask_BxT, deterministic):
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        (self.d_model,), self.param_dtype)
    offset = self.param(
        "offset", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)),
        (self.d_model,), self.param_dtype)
    running_mean = self.variable(
        "batch_stats", "mean",
        nn.with_logical_partitioning(jnp.zeros, ("embed",)), (self.d_model,), jnp.float32)
    running_second = self.variable(
        "batch_stats", "second_moment",
        nn.with_logical_partitioning(jnp.ones, ("embed",)), (self.d_model,), jnp.float32)
    real_BxTx1 = mask_BxT[..., None].astype(jnp.float32)
    x_BxTxD = x_BxTxD.astype(jnp.float32) * real_BxTx1
    if deterministic:
      mean, second = running_mean.value, running_second.value
    else:
      count = jnp.sum(real_BxTx1)
      safe_count = jnp.maximum(count, 1.0)
      mean = jnp.sum(x_BxTxD, axis=(0, 1)) / safe_count
      second = jnp.sum(x_BxTxD * x_BxTxD, axis=(0, 1)) / safe_count
      if not self.is_initializing():
        decay = self.ema_decay
        any_real = count > 0
        running_mean.value = jnp.where(
            any_real, running_mean.value * (1 - decay) + decay * mean, running_mean.value)
        running_second.value = jnp.where(
            any_real, running_second.value * (1 - decay) + decay * second,
            running_second.value)
    normalized = (x_BxTxD - mean) * jax.lax.rsqrt(second + self.epsilon)
    normalized = normalized * scale.astype(jnp.float32) + offset.astype(jnp.float32)
    return normalized.astype(self.dtype)
