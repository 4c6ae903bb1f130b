"""Encoder-only model: any embedder -> transformer encoder -> unit or pooled head.

With a "units" head, an embedder that downsampled (CANINE, GBST) brings the encoder states back
to its input resolution through its own `upsample`, so masked-unit prediction works for every
input method.
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.models.heads import HeadSpec, PooledHead, UnitHead
from noembed.nn import transformer


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "name": "encoder",
      "d_model": 256,
      "num_layers": 4,
      "num_heads": 4,
      "mlp_dim": 1024,
      "dropout_rate": 0.1,
      "flavour": "t5",        # "t5" (pre-RMSNorm, relative bias) or "bert" (post-LN)
      "activation": "gated-gelu",
  })


class EncoderModel(nn.Module):
  """inputs dict -> logits; `embedder` is the input method's module."""

  embedder: nn.Module
  head: HeadSpec
  num_layers: int
  d_model: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float
  flavour: str
  activation: str
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.encoder = transformer.Encoder(
        num_layers=self.num_layers, d_model=self.d_model, num_heads=self.num_heads,
        mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate, flavour=self.flavour,
        activation=self.activation, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.head.kind == "units":
      self.output = UnitHead(self.head.num_heads, self.head.vocab_size, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    elif self.head.kind == "pooled":
      self.output = PooledHead(self.head.num_classes, dtype=self.dtype,
                               param_dtype=self.param_dtype)
    else:
      raise ValueError(f"encoder model has no head kind {self.head.kind!r}")

  def __call__(self, batch, *, deterministic: bool):
    embedded = self.embedder(batch, deterministic=deterministic)
    x_BxMxD = nn.with_logical_constraint(embedded.x, ("batch", "length", "embed"))
    h_BxMxD = self.encoder(x_BxMxD, embedded.mask, deterministic=deterministic)
    if self.head.kind == "pooled":
      return self.output(h_BxMxD, embedded.mask)
    units_BxL = batch["mask"].shape[1]
    if h_BxMxD.shape[1] != units_BxL:
      h_BxMxD = self.embedder.upsample(h_BxMxD, embedded, deterministic=deterministic)
    return self.output(h_BxMxD)


def build(config: ml_collections.ConfigDict, head: HeadSpec) -> EncoderModel:
  method, method_config = inputs.selected(config.embedder)
  dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
  model = config.model
  return EncoderModel(
      embedder=method.build_embedder(method_config, d_model=model.d_model, dtype=dtype,
                                     param_dtype=param_dtype),
      head=head, num_layers=model.num_layers, d_model=model.d_model, num_heads=model.num_heads,
      mlp_dim=model.mlp_dim, dropout_rate=model.dropout_rate, flavour=model.flavour,
      activation=model.activation, dtype=dtype, param_dtype=param_dtype)
